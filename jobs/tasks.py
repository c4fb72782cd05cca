"""Celery tasks of the jobs app (the `default` queue)."""

from celery import shared_task

from jobs import services


@shared_task(name="jobs.jobs_reap", acks_late=True, time_limit=300)
def jobs_reap() -> dict[str, list[int]]:
    """Beat, every minute: fail or re-queue running jobs whose worker went silent."""
    return services.jobs_reap().as_dict()
