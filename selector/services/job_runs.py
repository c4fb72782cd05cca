"""Running a selector Job: the dispatch from its kind to the service that does the work.

Every workflow module is imported here, and none imports this one back; ``job_start``
(``selector.services.jobs``) lives apart so that workflows may start jobs themselves.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from jobs.models import Job, JobKind
from jobs.services import JobProgress, job_run
from selector.models import SelectorVersion
from selector.services.benchmark import benchmark_job_evaluate
from selector.services.common import Progress, SelectorError
from selector.services.evaluation import selector_evaluate
from selector.services.generation import candidates_generate
from selector.services.job_params import (
    BenchmarkParams,
    FillParams,
    GenerationParams,
    ImportPrmParams,
    SimulateParams,
    TrainParams,
)
from selector.services.queue_fill import queue_fill
from selector.services.score_chunks import score_job_run
from selector.services.simulation import simulation_execute
from selector.services.training import LabelHygiene, selector_train
from selector.services.versions import selector_active, selector_create_base, selector_import

logger = logging.getLogger(__name__)


def _train(job: Job, progress: JobProgress) -> dict[str, Any]:
    params = TrainParams.parse(job.params)
    if params.base:
        version = selector_create_base(name=params.name or None)
        job.version = version
        job.save(update_fields=["version"])
        return {"version_id": version.pk, "version": version.name, "active": version.is_active}
    base = (
        SelectorVersion.objects.get(pk=params.base_version_id) if params.base_version_id else None
    )
    version = selector_train(
        job=job,
        base_version=base,
        epochs=params.epochs,
        learning_rate=params.learning_rate,
        name=params.name or None,
        hygiene=LabelHygiene(
            exclude_unreliable=params.exclude_unreliable,
            combine_overlaps=params.combine_overlaps,
            include_flagged=params.include_flagged,
            exclude_human_completions=params.exclude_human_completions,
        ),
        progress=progress,
    )
    return {"version_id": version.pk, "version": version.name, **version.training_summary}


def _score(job: Job, progress: JobProgress, *, shard: bool) -> dict[str, Any]:
    scoring = job.version or selector_active()
    if scoring is None:
        raise SelectorError("no active selector version to score with")
    if job.version is None:
        job.version = scoring
        job.save(update_fields=["version"])
    return score_job_run(job=job, version=scoring, progress=progress, shard=shard)


def _benchmark(job: Job, progress: JobProgress) -> dict[str, Any]:
    params = BenchmarkParams.parse(job.params)
    return benchmark_job_evaluate(
        job=job,
        path=Path(params.path),
        threshold=params.threshold,
        name=params.name,
        progress=progress,
    )


class PrmImportFailed(SelectorError):
    """One message for every way an import can fail (no such path, no such hub id, a layout
    that does not fit, unreadable files): the job's page never tells an existing path from a
    missing one. The worker's log has the details."""


def _import_prm(job: Job, progress: JobProgress) -> dict[str, Any]:
    params = ImportPrmParams.parse(job.params)
    progress(0, 1)
    try:
        version = selector_import(
            model=params.model, adapter=params.adapter, name=params.name, activate=params.activate
        )
    except SelectorError as exc:
        logger.warning("job %s: importing %r failed: %s", job.pk, params.model, exc)
        raise PrmImportFailed(
            f"{params.model}: cannot be imported with the {params.adapter} adapter: it is not a "
            "readable model of that layout on the ml worker (a local directory, or a hub id in "
            "its cache). The worker's log says more."
        ) from None
    job.version = version
    job.save(update_fields=["version"])
    return {"version": version.name, "version_id": version.pk, "active": version.is_active}


def _fill(job: Job, progress: JobProgress) -> dict[str, Any]:
    params = FillParams.parse(job.params)
    report = queue_fill(
        per_problem=params.per_problem,
        wrong_fraction=params.wrong_fraction,
        generation=params.generation,
        version=job.version,
        rule=params.rule,
    )
    progress(report.created, report.created)
    return report.as_dict()


def _job_run_kind(job: Job, progress: JobProgress, *, shard: bool) -> dict[str, Any]:
    if job.kind in (JobKind.SCORE, JobKind.PROMOTE):
        # Scoring runs in chunks (decision 0016); a promotion switches after the last one.
        return _score(job, progress, shard=shard)
    if job.kind == JobKind.TRAIN:
        return _train(job, progress)
    if job.kind == JobKind.EVALUATE:
        assert job.version is not None
        return selector_evaluate(version=job.version, progress=progress)
    if job.kind == JobKind.BENCHMARK:
        return _benchmark(job, progress)
    if job.kind == JobKind.SIMULATE:
        preset = SimulateParams.parse(job.params).preset
        return simulation_execute(job=job, preset=preset, progress=progress)
    if job.kind == JobKind.FILL:
        return _fill(job, progress)
    if job.kind == JobKind.IMPORT_PRM:
        return _import_prm(job, progress)
    if job.kind == JobKind.GENERATE:
        params = GenerationParams.parse(job.params)
        return candidates_generate(params=params, job=job, progress=progress)
    raise SelectorError(f"kind {job.kind!r}: not a background selector job")


def job_execute(*, job_id: int, echo: Progress | None = None, shard: bool = False) -> Job:
    """Run a selector Job in this process (see ``jobs.services.job_run``).

    ``shard`` (the job's Celery task on a worker): a score or promotion job sends its chunks
    to the `ml` workers and returns with the job still running; the last chunk finishes it.
    Otherwise every chunk runs here, in order.
    """
    return job_run(
        job_id=job_id,
        runner=lambda job, progress: _job_run_kind(job, progress, shard=shard),
        echo=echo,
    )
