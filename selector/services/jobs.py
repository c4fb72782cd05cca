"""Background jobs: record a Job, enqueue its Celery task on commit, run it in a worker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from selector.models import Job, JobKind, JobStatus, SelectorVersion
from selector.services.benchmark import benchmark_evaluate
from selector.services.common import (
    JobCancelled,
    JobProgress,
    Progress,
    SelectorError,
    jsonable,
)
from selector.services.evaluation import selector_evaluate
from selector.services.promotion import selector_promote
from selector.services.queue_fill import queue_fill
from selector.services.scoring import candidates_score
from selector.services.training import LabelHygiene, selector_train
from selector.services.versions import (
    selector_active,
    selector_create_base,
    version_require_ready,
)

logger = logging.getLogger(__name__)


_TASK_NAMES = {
    JobKind.TRAIN: "selector.train",
    JobKind.EVALUATE: "selector.evaluate",
    JobKind.PROMOTE: "selector.promote",
    JobKind.SCORE: "selector.score_candidates",
    JobKind.FILL: "selector.fill_queue",
    JobKind.BENCHMARK: "selector.benchmark",
}
_NEEDS_VERSION = {JobKind.EVALUATE, JobKind.PROMOTE, JobKind.BENCHMARK}


def job_start(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    version: SelectorVersion | None = None,
    enqueue: bool = True,
) -> Job:
    """Record a Job and enqueue its Celery task once the row is committed."""
    if kind not in _TASK_NAMES:
        raise SelectorError(f"kind {kind!r}: not a background selector job")
    if kind in _NEEDS_VERSION and version is None:
        raise SelectorError(f"kind {kind!r}: needs a selector version")
    if version is not None and kind in _NEEDS_VERSION | {JobKind.SCORE}:
        version_require_ready(version)
    with transaction.atomic():
        job = Job.objects.create(
            kind=kind,
            params=params or {},
            version=version,
            created_by_id=user.pk if user is not None and user.is_authenticated else None,
        )
        if enqueue:
            task_name = _TASK_NAMES[JobKind(kind)]
            transaction.on_commit(lambda: _enqueue(task_name, job.pk))
    return job


def _enqueue(task_name: str, job_id: int) -> None:
    from selector import tasks

    task = {
        "selector.train": tasks.train,
        "selector.evaluate": tasks.evaluate,
        "selector.promote": tasks.promote,
        "selector.score_candidates": tasks.score_candidates,
        "selector.fill_queue": tasks.fill_queue,
        "selector.benchmark": tasks.benchmark,
    }[task_name]
    task.delay(job_id)


def _job_run_kind(job: Job, progress: JobProgress) -> dict[str, Any]:
    params = dict(job.params or {})
    if job.kind == JobKind.TRAIN and params.get("base"):
        version = selector_create_base(name=params.get("name") or None)
        job.version = version
        job.save(update_fields=["version"])
        return {"version_id": version.pk, "version": version.name, "active": version.is_active}
    if job.kind == JobKind.TRAIN:
        base = (
            SelectorVersion.objects.get(pk=params["base_version_id"])
            if params.get("base_version_id")
            else None
        )
        version = selector_train(
            job=job,
            base_version=base,
            epochs=int(params.get("epochs", 3)),
            learning_rate=float(params.get("learning_rate", 5e-5)),
            name=params.get("name") or None,
            hygiene=LabelHygiene(
                exclude_unreliable=bool(params.get("exclude_unreliable", True)),
                combine_overlaps=bool(params.get("combine_overlaps", True)),
                include_flagged=bool(params.get("include_flagged", False)),
            ),
            progress=progress,
        )
        return {"version_id": version.pk, "version": version.name, **version.training_summary}
    if job.kind == JobKind.EVALUATE:
        assert job.version is not None
        return selector_evaluate(version=job.version, progress=progress)
    if job.kind == JobKind.PROMOTE:
        assert job.version is not None
        return selector_promote(version=job.version, job=job, progress=progress)
    if job.kind == JobKind.SCORE:
        scoring = job.version or selector_active()
        if scoring is None:
            raise SelectorError("no active selector version to score with")
        if job.version is None:
            job.version = scoring
            job.save(update_fields=["version"])
        return {"scored": candidates_score(version=scoring, job=job, progress=progress)}
    if job.kind == JobKind.BENCHMARK:
        assert job.version is not None
        return benchmark_evaluate(
            version=job.version,
            path=Path(params["path"]),
            threshold=float(params.get("threshold", 0.5)),
            name=params.get("name"),
            job=job,
            progress=progress,
        )
    if job.kind == JobKind.FILL:
        report = queue_fill(
            per_problem=params.get("per_problem"),
            wrong_fraction=params.get("wrong_fraction"),
            generation=params.get("generation"),
            version=job.version,
        )
        progress(report.created, report.created)
        return report.as_dict()
    raise SelectorError(f"kind {job.kind!r}: not a background selector job")


def job_cancel(*, job: Job) -> bool:
    """Ask a queued or running job to stop; returns whether it was still cancellable. A queued
    job never starts; a running one stops at its loop's next check (scoring and promotion
    check between chunks), keeping what it stored so far."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return False
        locked.status = JobStatus.CANCELLED
        locked.save(update_fields=["status"])
    job.status = JobStatus.CANCELLED
    return True


def job_execute(*, job_id: int, echo: Progress | None = None) -> Job:
    """Run a Job in this process: queued/running → succeeded or failed (with the error).

    Idempotent for ``acks_late`` redelivery: a job that already succeeded is not redone.
    Never raises for a failure of the work itself; the Job row carries it.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
            return job
        job.status = JobStatus.RUNNING
        job.started_at = timezone.now()
        job.error = ""
        job.save(update_fields=["status", "started_at", "error"])
    job.refresh_from_db()
    progress = JobProgress(job, echo=echo)
    try:
        result = _job_run_kind(job, progress)
    except JobCancelled as exc:
        job.status = JobStatus.CANCELLED
        job.error = str(exc)
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        return job
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        job.status = JobStatus.FAILED
        job.error = f"{type(exc).__name__}: {exc}"
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        return job
    job.status = JobStatus.SUCCEEDED
    job.result = jsonable(result)
    job.finished_at = timezone.now()
    if job.progress_total == 0:
        job.progress_total = job.progress_done = 1
    job.progress_done = job.progress_total
    job.save(update_fields=["status", "result", "finished_at", "progress_done", "progress_total"])
    return job
