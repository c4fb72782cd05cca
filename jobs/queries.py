"""Reads the job pages share."""

from __future__ import annotations

from typing import Any

from jobs.models import Job


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
