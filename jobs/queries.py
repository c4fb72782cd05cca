"""Reads the job pages share."""

from __future__ import annotations

import json
from typing import Any

from jobs.models import Job, JobStatus


def job_progress(job: Job) -> dict[str, Any]:
    """What the admin's progress bar polls."""
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "done": job.progress_done,
        "total": job.progress_total,
        "percent": job.progress_percent,
        "finished": job.finished,
        "error": job.error,
    }


# A kind that finds problems in its input (an import's invalid lines) lists them under this key
# of its result, each ``{"line", "field", "message"}``, whether it failed or skipped them.
RESULT_ERRORS = "errors"


def job_errors(job: Job) -> list[dict[str, Any]]:
    """What went wrong, as ``{"line", "field", "message"}`` rows: the input's named errors,
    then the job's own failure (line and field null) when it failed or was cancelled."""
    result = job.result if isinstance(job.result, dict) else {}
    errors = [dict(error) for error in result.get(RESULT_ERRORS) or [] if isinstance(error, dict)]
    if job.error and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        errors.append({"line": None, "field": None, "message": job.error})
    return errors


def job_summary(job: Job) -> dict[str, Any]:
    """A job as the API shows it: kind, status, progress, result (less its errors) and errors."""
    result = job.result if isinstance(job.result, dict) else {}
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "progress": {"done": job.progress_done, "total": job.progress_total},
        "result": {key: value for key, value in result.items() if key != RESULT_ERRORS},
        "errors": job_errors(job),
        "version": job.version_id,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def job_visible_to(job: Job, user: Any) -> bool:
    """Whoever may view jobs in the admin sees every job; anyone sees the jobs they started."""
    return bool(user.has_perm("jobs.view_job") or job.created_by_id == user.pk)


def job_cancellable_by(job: Job, user: Any) -> bool:
    """Those who may steer jobs in the admin (``jobs.change_job``), or the job's creator."""
    return bool(user.has_perm("jobs.change_job") or job.created_by_id == user.pk)


# --- Results as a table ----------------------------------------------------------------------

# key (the last part of a dotted path) → (plain-language label, unit). Apps add their own
# keys with ``result_labels_register`` (the jobs app never imports them); others read as words.
RESULT_LABELS: dict[str, tuple[str, str]] = {
    "seconds": ("Time taken", "s"),
    "created": ("Tasks created", "tasks"),
    "errors": ("Problems found", ""),
}
_LIST_SHOWN = 8  # a longer list is counted here and shown in full in the raw data


def result_labels_register(labels: dict[str, tuple[str, str]]) -> None:
    RESULT_LABELS.update(labels)


def _words(key: str) -> str:
    text = key.replace("_", " ").replace("@", " at ").strip()
    return text[:1].upper() + text[1:]


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    if isinstance(value, list):
        if len(value) <= _LIST_SHOWN and all(not isinstance(v, dict | list) for v in value):
            return ", ".join(_shown(v) for v in value) or "none"
        return f"{len(value)} entries (in the raw data)"
    return str(value)


def result_rows(data: Any, *, prefix: str = "") -> list[tuple[str, str, str]]:
    """(label, value, unit) rows for a job's result, a training summary or any JSON object:
    nested objects flatten into "Parent: child" labels, long lists are counted."""
    if not isinstance(data, dict):
        return []
    rows: list[tuple[str, str, str]] = []
    for key, value in data.items():
        label, unit = RESULT_LABELS.get(str(key), (_words(str(key)), ""))
        label = f"{prefix}: {label}" if prefix else label
        if isinstance(value, dict) and value:
            rows.extend(result_rows(value, prefix=label))
        else:
            rows.append((label, _shown(value), unit))
    return rows


def raw_json(data: Any) -> str:
    """The stored JSON, indented, for the page's "raw data" toggle."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)
