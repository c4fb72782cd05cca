"""The active-learning simulation as a background job, and reading its results back.

The simulation itself (``selector.simulation.runner``) runs every arm in throw-away SQLite
copies, never in this database; the job only records progress and where the output went.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.conf import settings

from jobs.models import Job
from selector.services.common import Progress, SelectorError

# The presets a job may run from the admin: `full` needs a GPU host and a chosen base model,
# so it stays a command-line run.
JOB_PRESETS = ("test", "ci")
_FILE_NAME = re.compile(r"^[a-z0-9_]+\.(png|md|json)$")


def simulation_dir(*, job: Job) -> Path:
    return Path(settings.SIMULATION_DIR) / str(job.pk)


def simulation_execute(
    *, job: Job, preset: str, progress: Progress | None = None
) -> dict[str, Any]:
    """Run the simulation with ``preset`` into ``SIMULATION_DIR/<job id>/``; progress counts
    the template, then every arm x seed x round. Returns what the job page shows."""
    from selector.simulation.runner import SimulationError, config_for, simulation_run

    if preset not in JOB_PRESETS:
        raise SelectorError(f"preset {preset!r}: choose one of {', '.join(JOB_PRESETS)}")
    out_dir = simulation_dir(job=job)
    try:
        report = simulation_run(config=config_for(preset), out_dir=out_dir, progress=progress)
    except SimulationError as exc:
        raise SelectorError(str(exc)) from exc
    return {
        "preset": preset,
        "out_dir": str(out_dir),
        "seconds": report["seconds"],
        "data_efficiency": report["data_efficiency"],
        "data_efficiency_prm": report.get("data_efficiency_prm"),
        "ceiling": report.get("ceiling"),
        "arms": sorted(report["arms"]),
    }


def simulation_file(*, job: Job, name: str) -> Path | None:
    """One output file of a finished simulation job, or None: only the plain names the runner
    writes, never a path, so the URL cannot reach outside the job's directory."""
    if not _FILE_NAME.match(name):
        return None
    path = simulation_dir(job=job) / name
    return path if path.is_file() else None


def simulation_page(*, job: Job) -> dict[str, Any]:
    """What the job page shows: the ratio with its interval, the PNG names and summary.md."""
    report_path = simulation_file(job=job, name="report.json")
    if report_path is None:
        return {}
    report = json.loads(report_path.read_text(encoding="utf-8"))
    summary = simulation_file(job=job, name="summary.md")
    return {
        "data_efficiency": report.get("data_efficiency") or {},
        "plots": sorted(p.name for p in simulation_dir(job=job).glob("*.png")),
        "summary": summary.read_text(encoding="utf-8") if summary else "",
        "seconds": report.get("seconds"),
    }
