"""Celery tasks of the jobs app (the `default` queue)."""

from celery import shared_task

from jobs import services
from stepwise.celery import PERIODIC_TASK


@shared_task(name="jobs.jobs_reap", **PERIODIC_TASK)
def jobs_reap() -> dict[str, list[int]]:
    """Beat, every minute: fail or re-queue running jobs whose worker went silent (all of
    them, so a late run makes up for missed ones)."""
    return services.jobs_reap().as_dict()
