"""The one map from job kind to the Celery task that runs it.

Task names and hook paths, not objects: the jobs app enqueues by name and never imports the
apps whose services the tasks run. Each task is named after the service it runs (``grep queue_fill``
finds the service, the task and this entry).
"""

from dataclasses import dataclass

from jobs.models import JobKind


@dataclass(frozen=True)
class JobTask:
    task: str
    # The reaper may re-queue a job of this kind once after its worker was lost: running it
    # again neither repeats finished work nor duplicates rows (see docs/decisions/0007).
    resumable: bool = False
    # Dotted path of ``fn(*, job)``, called in the transaction that finishes a job its worker
    # will not finish (the reaper's "worker lost", the admin's mark failed or cancel), so the
    # kind's own rows never stay half-done: a version left "training" forever, say.
    on_abandon: str = ""
    # Dotted path of the kind's ``jobs.params.JobParams`` dataclass; none: it takes no params.
    params: str = ""
    # The permission that starts a job of this kind, which retrying one needs too; or the
    # dotted path of ``fn(*, job) -> str`` naming it, for a kind whose front doors differ.
    permission: str = "jobs.add_job"
    permission_for: str = ""
    # Counted against JOBS_PER_USER and JOBS_GLOBAL (queued plus running, see
    # ``jobs.services.job_create``): the kinds that share the one ml worker.
    limited: bool = False
    # Dotted path of ``fn(*, cutoff) -> list[int]`` for a kind whose running job waits on parts
    # with their own heartbeats (a score job's chunks, decision 0016). The reaper calls it on
    # every run: it re-queues each part silent since ``cutoff`` alone (or fails the job when a
    # part ran out of attempts), stamps the heartbeat of a job still waiting on live or queued
    # parts, and returns the ids of the parts it re-queued.
    reap_parts: str = ""


_SELECTOR_PARAMS = "selector.services.job_params"
_SCORE_CHUNKS = "selector.services.score_chunks"

JOB_TASKS: dict[str, JobTask] = {
    JobKind.TRAIN: JobTask(
        "selector.selector_train",
        limited=True,
        on_abandon="selector.services.training.training_abandoned",
        params=f"{_SELECTOR_PARAMS}.TrainParams",
    ),
    JobKind.EVALUATE: JobTask("selector.selector_evaluate", limited=True),
    JobKind.PROMOTE: JobTask(
        "selector.selector_promote",
        limited=True,
        on_abandon=f"{_SCORE_CHUNKS}.score_chunks_abandoned",
        reap_parts=f"{_SCORE_CHUNKS}.score_chunks_reap",
    ),
    JobKind.SCORE: JobTask(
        "selector.candidates_score",
        resumable=True,
        limited=True,
        on_abandon=f"{_SCORE_CHUNKS}.score_chunks_abandoned",
        reap_parts=f"{_SCORE_CHUNKS}.score_chunks_reap",
    ),
    JobKind.FILL: JobTask(
        "selector.queue_fill", params=f"{_SELECTOR_PARAMS}.FillParams", limited=True
    ),
    JobKind.EXPORT: JobTask(
        "labeling.export_job_run",
        resumable=True,
        permission="labeling.export_labels",
        params="labeling.services.export_jobs.ExportParams",
    ),
    JobKind.BENCHMARK: JobTask(
        "selector.benchmark_evaluate",
        resumable=True,
        limited=True,
        on_abandon="selector.services.benchmark.benchmark_abandoned",
        params=f"{_SELECTOR_PARAMS}.BenchmarkParams",
    ),
    # Not resumable: a re-run would start the whole simulation over in a fresh directory.
    JobKind.SIMULATE: JobTask(
        "selector.simulation_execute",
        params=f"{_SELECTOR_PARAMS}.SimulateParams",
        limited=True,
        on_abandon="selector.services.simulation.simulation_abandoned",
    ),
    # Resumable: an import is one transaction (a lost worker's is rolled back) and
    # deduplicated, so running the file again writes exactly what the first run would have.
    JobKind.IMPORT: JobTask(
        "labeling.import_job_run",
        resumable=True,
        permission_for="labeling.services.import_jobs.import_permission",
        on_abandon="labeling.services.import_jobs.import_abandoned",
        params="labeling.services.import_jobs.ImportParams",
    ),
    # Resumable: a run that did not finish wrote no row (its checkpoint folder is replaced).
    JobKind.IMPORT_PRM: JobTask(
        "selector.selector_import",
        resumable=True,
        limited=True,
        permission="selector.change_selectorversion",
        params=f"{_SELECTOR_PARAMS}.ImportPrmParams",
    ),
    # Not resumable: a re-run samples every problem again (the import keeps what is stored).
    JobKind.GENERATE: JobTask(
        "selector.candidates_generate",
        params=f"{_SELECTOR_PARAMS}.GenerationParams",
        limited=True,
    ),
}
