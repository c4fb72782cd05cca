"""Reads the job pages share."""

from __future__ import annotations

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
