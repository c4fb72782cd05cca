"""The active-learning simulation as a background job, and reading its results back.

The simulation itself (``selector.simulation.runner``) runs every arm in throw-away SQLite
copies, never in this database; the job only records progress and where the output went.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings

from jobs.models import Job, JobStatus
from selector.services.common import Progress, SelectorError

logger = logging.getLogger(__name__)

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
    from selector.simulation.report import RULE_COMPARISONS
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
        # Each uncertainty rule against uniform and 80/20, when the preset ran it.
        **{key: report[key] for key, *_ in RULE_COMPARISONS if key in report},
        "ceiling": report.get("ceiling"),
        "arms": sorted(report["arms"]),
    }


def simulation_abandoned(*, job: Job) -> None:
    """The jobs registry's hook for a simulation finished without its worker (lost to a kill,
    marked failed, cancelled): its scratch folder (``work/``: database copies, checkpoints)
    goes, since no runner will reach the ``finally`` that removes it."""
    shutil.rmtree(simulation_dir(job=job) / "work", ignore_errors=True)


def simulation_work_sweep() -> list[int]:
    """Remove the ``work/`` folder of every simulation whose job is no longer queued or
    running (or is gone); the ml worker runs it when it starts. Returns those job ids."""
    root = Path(settings.SIMULATION_DIR)
    if not root.is_dir():
        return []
    found = {
        int(path.parent.name): path
        for path in root.glob("*/work")
        if path.parent.name.isdigit() and path.is_dir()
    }
    live = set(
        Job.objects.filter(
            pk__in=list(found), status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
        ).values_list("pk", flat=True)
    )
    swept = sorted(set(found) - live)
    for job_id in swept:
        shutil.rmtree(found[job_id], ignore_errors=True)
        logger.info("simulation %s: removed its abandoned work folder", job_id)
    return swept


def simulation_file(*, job: Job, name: str) -> Path | None:
    """One output file of a finished simulation job, or None: only the plain names the runner
    writes, never a path, so the URL cannot reach outside the job's directory."""
    if not _FILE_NAME.match(name):
        return None
    path = simulation_dir(job=job) / name
    return path if path.is_file() else None


# Below these a run checks the machinery only: its numbers are noise, not a measurement.
MEASUREMENT_MIN_SEEDS = 3
MEASUREMENT_MIN_HELD_OUT_PROBLEMS = 10


def ratio_in_words(data_efficiency: dict[str, Any]) -> str:
    """The data-efficiency ratio as a sentence: ``ratio`` is the labels the baseline arm
    needs to reach the active arm's final quality over the labels the active arm used."""
    ratio = data_efficiency.get("ratio")
    active, baseline = (data_efficiency.get("arms") or ["80/20", "uniform"])[:2]
    active, baseline = str(active).replace("_", "/"), str(baseline).replace("_", "/")
    if not isinstance(ratio, int | float) or math.isnan(ratio) or ratio <= 0:
        return f"No ratio: {baseline} and {active} could not be compared on this run."
    bound = {
        "above": f" at least ({baseline} never got there, so this is a lower bound)",
        "below": " at most (an upper bound)",
    }.get(str(data_efficiency.get("censored") or ""), "")
    if abs(ratio - 1) < 0.05:
        return f"{active} and {baseline} needed about the same number of labels."
    if ratio > 1:
        return (
            f"{active} reached {baseline}'s quality with 1/{ratio:.1f} of the labels{bound}: "
            f"{baseline} needed {ratio:.1f} times as many."
        )
    return (
        f"{active} needed {1 / ratio:.1f} times the labels {baseline} did to reach the same "
        f"quality{bound}: {baseline} got there with 1/{1 / ratio:.1f} of them."
    )


def simulation_page(*, job: Job) -> dict[str, Any]:
    """What the job page shows: the ratio in words with its interval, the PNG names, the
    summary as safe HTML, and whether the run is too small to mean anything."""
    from selector.summary_html import summary_html

    report_path = simulation_file(job=job, name="report.json")
    if report_path is None:
        return {}
    report = json.loads(report_path.read_text(encoding="utf-8"))
    summary = simulation_file(job=job, name="summary.md")
    config = report.get("config") or {}
    pool = report.get("pool") or {}
    seeds = config.get("seeds") or 0
    held_out = pool.get("held_out_problems") or 0
    de = report.get("data_efficiency") or {}
    return {
        "data_efficiency": de,
        "ratio_words": ratio_in_words(de),
        "preset": config.get("preset"),
        "machinery_check": seeds < MEASUREMENT_MIN_SEEDS
        or held_out < MEASUREMENT_MIN_HELD_OUT_PROBLEMS,
        "seeds": seeds,
        "held_out_problems": held_out,
        "plots": sorted(p.name for p in simulation_dir(job=job).glob("*.png")),
        "summary_html": summary_html(summary.read_text(encoding="utf-8")) if summary else "",
        "seconds": report.get("seconds"),
    }
