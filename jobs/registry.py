"""The one map from job kind to the Celery task that runs it.

Task names, not task objects: the jobs app enqueues by name and never imports the apps whose
services the tasks run. Each task is named after the service it runs (``grep queue_fill``
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


JOB_TASKS: dict[str, JobTask] = {
    JobKind.TRAIN: JobTask("selector.selector_train"),
    JobKind.EVALUATE: JobTask("selector.selector_evaluate"),
    JobKind.PROMOTE: JobTask("selector.selector_promote"),
    JobKind.SCORE: JobTask("selector.candidates_score", resumable=True),
    JobKind.FILL: JobTask("selector.queue_fill"),
    JobKind.EXPORT: JobTask("labeling.export_job_run", resumable=True),
}
