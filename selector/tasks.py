"""Celery tasks for the selector: a job id in, one service call, the Job row carries the outcome.

Every ``selector.*`` task routes to the ``ml`` queue (CELERY_TASK_ROUTES). Tasks are idempotent
(``job_execute`` skips a job that already succeeded), so ``acks_late`` redelivery after a lost
worker is safe.
"""

from celery import shared_task

from selector import services

# Training can take hours on a real pool; the soft limit raises inside the task so the Job is
# marked failed with a message before the hard limit kills the process.
_LONG = {"soft_time_limit": 6 * 3600, "time_limit": 6 * 3600 + 300}
_SHORT = {"soft_time_limit": 1800, "time_limit": 1800 + 60}


@shared_task(name="selector.train", bind=True, acks_late=True, **_LONG)
def train(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.evaluate", bind=True, acks_late=True, **_LONG)
def evaluate(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.promote", bind=True, acks_late=True, **_LONG)
def promote(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.score_candidates", bind=True, acks_late=True, **_LONG)
def score_candidates(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.benchmark", bind=True, acks_late=True, **_LONG)
def benchmark(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.fill_queue", bind=True, acks_late=True, **_SHORT)
def fill_queue(self, job_id: int) -> str:
    return services.job_execute(job_id=job_id).status


@shared_task(name="selector.queue_top_up", acks_late=True, **_SHORT)
def queue_top_up() -> int:
    report = services.queue_top_up()
    return report.created if report else 0
