"""What every selector service shares: the error type, progress reporting, JSON cleaning."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selector.models import Job, JobStatus

Progress = Callable[[int, int], None]


class SelectorError(Exception):
    """A selector operation cannot proceed; the message says why, for the admin and the CLI."""


class JobCancelled(SelectorError):
    """The job was cancelled; raised by the loop that noticed, between two chunks of work."""


def job_cancel_check(job: Job | None) -> None:
    """Raise ``JobCancelled`` when someone cancelled ``job`` (one indexed read per call:
    long loops call it between chunks, not per item)."""
    if job is not None and Job.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        raise JobCancelled(f"{job} was cancelled")


class JobProgress:
    """A progress callback that writes to the Job row at most every ``interval`` seconds (and
    always on completion), so a fast loop doesn't turn into a write storm."""

    def __init__(
        self, job: Job | None, *, interval: float = 0.5, echo: Progress | None = None
    ) -> None:
        self.job = job
        self.interval = interval
        self.echo = echo
        self._last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.echo is not None:
            self.echo(done, total)
        if self.job is None:
            return
        now = time.monotonic()
        throttled = self._last is not None and now - self._last < self.interval
        if throttled and done < total and total == self.job.progress_total:
            return
        self._last = now
        self.job.progress_done = max(0, int(done))
        self.job.progress_total = max(0, int(total))
        self.job.save(update_fields=["progress_done", "progress_total"])


def progress_for(job: Job | None, progress: Progress | None) -> Progress:
    if isinstance(progress, JobProgress):
        return progress
    if job is None:
        return progress or (lambda _d, _t: None)
    return JobProgress(job, echo=progress)


def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars from metrics, Paths) for a JSONField."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
