"""What every selector service shares: the error type, and the jobs app's progress reporting and
JSON cleaning (re-exported here because every selector workflow reports through them)."""

from __future__ import annotations

from jobs.services import JobProgress, Progress, jsonable, progress_for

__all__ = ["JobProgress", "Progress", "SelectorError", "jsonable", "progress_for"]


class SelectorError(Exception):
    """A selector operation cannot proceed; the message says why, for the admin and the CLI."""
