"""Celery tasks for the selector: a job id in, one service call, the Job row carries the outcome.

Each task is named after the service it runs, and ``jobs.registry.JOB_TASKS`` maps job kinds to
these names. The GPU work routes to the ``ml`` queue; the queue top-up and fill stay on
``default`` (CELERY_TASK_ROUTES), so they never wait behind a training run. Tasks are idempotent
(``job_run`` skips a job that finished or that a live worker holds), so ``acks_late``
redelivery is safe; a worker that dies mid-job is handled by the jobs reaper.
"""

import logging
import os
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_ready

from jobs.services import worker_name
from selector import services
from selector.services.simulation import simulation_work_sweep
from stepwise.celery import PERIODIC_TASK

logger = logging.getLogger(__name__)

# Training can take hours on a real pool; the soft limit raises inside the task so the Job is
# marked failed with a message before the hard limit kills the process.
_LONG = {"soft_time_limit": 6 * 3600, "time_limit": 6 * 3600 + 300}
_SHORT = {"soft_time_limit": 1800, "time_limit": 1800 + 60}


@shared_task(name="selector.selector_train", bind=True, acks_late=True, **_LONG)
def selector_train(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.selector_evaluate", bind=True, acks_late=True, **_LONG)
def selector_evaluate(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


def _on_worker(task: Task) -> bool:
    """Sent to a worker (not called as a function, not run eagerly): the score's chunks go
    to the `ml` workers as tasks of their own."""
    return not (task.request.called_directly or task.request.is_eager)


@shared_task(name="selector.selector_promote", bind=True, acks_late=True, **_LONG)
def selector_promote(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id, shard=_on_worker(self)).status


@shared_task(name="selector.candidates_score", bind=True, acks_late=True, **_LONG)
def candidates_score(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id, shard=_on_worker(self)).status


# A chunk holds at most SELECTOR_SCORE_CHUNK candidates, so it ends far inside these limits
# whatever the pool's size (decision 0016).
@shared_task(name="selector.score_chunk", bind=True, acks_late=True, **_LONG)
def score_chunk(self, chunk_id: int) -> str:
    worker = f"{self.request.hostname or worker_name()}:{os.getpid()}"
    return services.score_chunk_execute(chunk_id=chunk_id, worker=worker)


@shared_task(name="selector.benchmark_evaluate", bind=True, acks_late=True, **_LONG)
def benchmark_evaluate(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.simulation_execute", bind=True, acks_late=True, **_LONG)
def simulation_execute(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.candidates_generate", bind=True, acks_late=True, **_LONG)
def candidates_generate(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.selector_import", bind=True, acks_late=True, **_SHORT)
def selector_import(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.queue_fill", bind=True, acks_late=True, **_SHORT)
def queue_fill(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.queue_top_up", **{**PERIODIC_TASK, **_SHORT})
def queue_top_up() -> int:
    """Beat, every two minutes: refill the queue when it runs low (idempotent: the low-water
    check and the fill run under one lock)."""
    report = services.queue_top_up()
    return report.created if report else 0


@worker_ready.connect
def simulation_work_sweep_at_start(**_kwargs: Any) -> None:
    """A worker that starts sweeps the scratch folders simulations killed with a previous one
    left behind (their jobs are finished, or failed by the reaper meanwhile). A sweep that
    fails (a database not up yet) waits for the next start; the reaper's hook covers most."""
    try:
        simulation_work_sweep()
    except Exception:
        logger.warning("the sweep of abandoned simulation folders failed", exc_info=True)
