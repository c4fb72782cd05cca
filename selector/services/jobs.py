"""The selector's background jobs: which kinds it runs, their checks, and the dispatch from a
kind to its service. The generic life of a job (queue, heartbeat, reaper) is ``jobs.services``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from jobs.models import Job, JobKind
from jobs.services import JobProgress, job_create, job_run
from selector.models import SelectorVersion
from selector.services.benchmark import benchmark_evaluate
from selector.services.common import Progress, SelectorError
from selector.services.evaluation import selector_evaluate
from selector.services.generation import GenerationParams, candidates_generate
from selector.services.promotion import selector_promote
from selector.services.queue_fill import queue_fill
from selector.services.scoring import candidates_score
from selector.services.simulation import simulation_execute
from selector.services.training import LabelHygiene, selector_train
from selector.services.versions import (
    selector_active,
    selector_create_base,
    version_require_ready,
)

logger = logging.getLogger(__name__)

SELECTOR_KINDS = {
    JobKind.TRAIN,
    JobKind.EVALUATE,
    JobKind.PROMOTE,
    JobKind.SCORE,
    JobKind.FILL,
    JobKind.BENCHMARK,
    JobKind.SIMULATE,
    JobKind.GENERATE,
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
    """Record a selector Job and enqueue its Celery task once the row is committed."""
    if kind not in SELECTOR_KINDS:
        raise SelectorError(f"kind {kind!r}: not a background selector job")
    if kind in _NEEDS_VERSION and version is None:
        raise SelectorError(f"kind {kind!r}: needs a selector version")
    if version is not None and kind in _NEEDS_VERSION | {JobKind.SCORE}:
        version_require_ready(version)
    if kind == JobKind.GENERATE:
        params = GenerationParams.from_params(params or {}).as_params()
    return job_create(
        kind=kind,
        params=params,
        user=user,
        version_id=version.pk if version is not None else None,
        enqueue=enqueue,
    )


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
    if job.kind == JobKind.SIMULATE:
        return simulation_execute(
            job=job, preset=str(params.get("preset", "test")), progress=progress
        )
    if job.kind == JobKind.GENERATE:
        return candidates_generate(
            params=GenerationParams.from_params(params), job=job, progress=progress
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


def job_execute(*, job_id: int, echo: Progress | None = None) -> Job:
    """Run a selector Job in this process (see ``jobs.services.job_run``)."""
    return job_run(job_id=job_id, runner=_job_run_kind, echo=echo)
