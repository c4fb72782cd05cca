"""What every selector service shares: the error type, and the jobs app's progress reporting,
cancel check and JSON cleaning (re-exported here because every selector workflow uses them)."""

from __future__ import annotations

from jobs.services import (
    JobCancelled,
    JobProgress,
    Progress,
    job_cancel_check,
    jsonable,
    progress_for,
)

__all__ = [
    "JobCancelled",
    "JobProgress",
    "Progress",
    "SelectorError",
    "job_cancel_check",
    "jsonable",
    "progress_for",
]


class SelectorError(Exception):
    """A selector operation cannot proceed; the message says why, for the admin and the CLI."""
