"""Exports as background jobs: one file per job under ``EXPORT_DIR``, one job per user at once.

The formats themselves are ``labeling.services.export``; a job's parameters are
``ExportParams`` (checked by ``jobs.services.job_create`` when the job is created).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from jobs.models import Job, JobKind, JobStatus
from jobs.params import JobParams, bounded
from jobs.services import JobProgress, job_create, job_run
from labeling.models import Label
from labeling.services.export import (
    ExportFilters,
    ExportFormat,
    Neutral,
    StepwiseOptions,
    labels_for_export,
    parse_since,
    prm800k_export,
    stepwise_export,
)


def _since_valid(value: str) -> None:
    try:
        parse_since(value)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("since: ")) from None


@dataclass(frozen=True)
class ExportParams(JobParams):
    """What an export job's row stores: its format, the filters, and (TRL) the options."""

    format: str = bounded("prm800k", choices=("prm800k", "stepwise"))
    token: str = bounded("", max_length=64)  # see ``export_path``
    generation: int | None = bounded(None, low=-(2**31), high=2**31 - 1)  # Task.generation
    since: str | None = bounded(None, max_length=64, check=_since_valid)
    include_qc: bool = False
    include_screening: bool = False
    neutral: str = bounded("positive", choices=("positive", "negative"))
    trajectories_only: bool = False
    include_flagged: bool = False
    include_unreliable: bool = False
    exclude_human_completions: bool = False

    def filters(self) -> ExportFilters:
        return ExportFilters(
            generation=self.generation,
            since=parse_since(self.since) if self.since else None,
            include_qc=self.include_qc,
            include_screening=self.include_screening,
        )

    def stepwise(self) -> StepwiseOptions:
        return StepwiseOptions(
            neutral=cast(Neutral, self.neutral),
            trajectories_only=self.trajectories_only,
            include_flagged=self.include_flagged,
            include_unreliable=self.include_unreliable,
            exclude_human_completions=self.exclude_human_completions,
        )


class ExportJobBusy(Exception):
    """The user already has an export job queued or running."""

    def __init__(self, job: Job) -> None:
        self.job = job
        super().__init__(
            f"Export job #{job.pk} is still {job.get_status_display().lower()}: one export job "
            "per user at a time. Wait for it to finish, then start the next."
        )


def export_job_create(
    *,
    created_by: User | None,
    filters: ExportFilters,
    export_format: ExportFormat = "prm800k",
    stepwise: StepwiseOptions | None = None,
) -> Job:
    """Queue an export that a Celery worker writes under ``settings.EXPORT_DIR``; ``stepwise``
    (TRL only, recorded in the job's params) defaults to ``StepwiseOptions()``.

    Raises ExportJobBusy while ``created_by`` has one queued or running: each job reads the
    whole label table, so an unbounded number of them is a way to starve the workers.
    """
    if export_format not in ("prm800k", "stepwise"):
        raise ValueError(f"format: {export_format!r} is not one of prm800k, stepwise")
    # The params say what the file holds, so a PRM800K job carries no TRL options.
    options = (stepwise or StepwiseOptions()).as_params() if export_format == "stepwise" else {}
    with transaction.atomic():
        if created_by is not None:
            # The user's row is the lock: two simultaneous requests cannot both see no job.
            list(User.objects.select_for_update().filter(pk=created_by.pk).values_list("pk"))
            busy = (
                Job.objects.filter(
                    kind=JobKind.EXPORT,
                    created_by=created_by,
                    status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
                )
                .order_by("id")
                .first()
            )
            if busy is not None:
                raise ExportJobBusy(busy)
        return job_create(
            kind=JobKind.EXPORT,
            user=created_by,
            params={
                "format": export_format,
                "token": uuid.uuid4().hex,
                **filters.as_params(),
                **options,
            },
        )


def export_path(job: Job) -> Path:
    """Where the job's file lives. The random token keeps a file from an earlier database
    (ids start again at 1) from ever being served as this job's."""
    token = job.params.get("token", "")
    return Path(settings.EXPORT_DIR) / f"export-{job.pk}-{token}.jsonl"


def export_job_run(*, job_id: int) -> Job:
    """Run an export job in this process (``jobs.services.job_run``: status, heartbeat)."""
    return job_run(job_id=job_id, runner=_export_write)


def _export_write(job: Job, progress: JobProgress) -> dict[str, Any]:
    """Write the job's file, updating progress as it goes; idempotent (rewrites from scratch),
    so the reaper may re-queue it after a lost worker.

    The file is written under a temporary name and renamed at the end, so a download link only
    ever points at a complete file.
    """
    params = ExportParams.parse(job.params)
    filters = params.filters()
    export_format = params.format
    total = labels_for_export(filters=filters).count()
    progress(0, total)
    path = export_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    try:
        with open(tmp, "wb") as out:
            if export_format == "stepwise":
                written = stepwise_export(
                    out=out,
                    filters=filters,
                    **params.stepwise().as_params(),
                    on_progress=lambda done: progress(done, total),
                )
            else:
                written = prm800k_export(
                    out=out, filters=filters, on_progress=lambda done: progress(done, total)
                )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    result: dict[str, Any] = {
        "lines": written,
        "bytes": path.stat().st_size,
        "filename": f"{export_format}-{job.pk}.jsonl",
    }
    if not written:
        result["empty"] = export_empty_reason(filters=filters) or (
            "The export is empty: every matching label was left out by the TRL options "
            "(labels of unreliable annotators, flagged steps, steps the labeler wrote)."
        )
    return result


def export_empty_reason(*, filters: ExportFilters) -> str | None:
    """Why an export with these filters holds no label, in words for the person who asked;
    None when it holds some. Each filter that alone leaves nothing is named, with what would
    have matched (the latest generation, the newest label)."""
    if labels_for_export(filters=filters).exists():
        return None
    if not Label.objects.exists():
        return "The export is empty: there are no labels yet."
    reasons = []
    generation = filters.generation
    if generation is not None and not Label.objects.filter(task__generation=generation).exists():
        latest = Label.objects.aggregate(latest=Max("task__generation"))["latest"]
        known = (
            f"the latest generation with labels is {latest}"
            if latest is not None
            else "no label belongs to a queue generation"
        )
        reasons.append(f"no label is in generation {generation} ({known})")
    since = filters.since
    if since is not None and not Label.objects.filter(created_at__gte=since).exists():
        newest = Label.objects.aggregate(newest=Max("created_at"))["newest"]
        reasons.append(
            f"no label was made at or after {since.astimezone(UTC):%Y-%m-%d %H:%M} UTC "
            f"(the newest is from {newest:%Y-%m-%d %H:%M} UTC)"
        )
    if not reasons:
        widened = ExportFilters(
            generation=filters.generation,
            since=filters.since,
            include_qc=True,
            include_screening=True,
        )
        if labels_for_export(filters=widened).exists():
            reasons.append(
                "every matching label is a quality-control or screening label, which are left "
                "out unless included"
            )
        else:
            reasons.append("no label matches all the filters together")
    return "The export is empty: " + "; ".join(reasons) + "."
