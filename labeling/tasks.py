"""Celery tasks for labeling: thin wrappers that re-fetch by id and call one service."""

from celery import shared_task

from stepwise.celery import PERIODIC_TASK


@shared_task(name="labeling.export_job_run", acks_late=True, time_limit=6 * 3600)
def export_job_run(job_id: int) -> str:
    """An export Job (``jobs.registry.JOB_TASKS``); the Job row carries the outcome."""
    from labeling.services.export_jobs import export_job_run as run

    return run(job_id=job_id).status


@shared_task(name="labeling.import_job_run", acks_late=True, time_limit=6 * 3600)
def import_job_run(job_id: int) -> str:
    """An import Job sent through the API (``jobs.registry.JOB_TASKS``)."""
    from labeling.services.import_jobs import import_job_run as run

    return run(job_id=job_id).status


@shared_task(name="labeling.leases_release_expired", **PERIODIC_TASK)
def leases_release_expired_task() -> int:
    """Beat, every minute: give the slots of abandoned leases back to the queue (every lease
    past its expiry, so a late run makes up for missed ones)."""
    from labeling.services.queue import leases_release_expired

    return leases_release_expired()


@shared_task(name="labeling.grade_solutions", acks_late=True, time_limit=6 * 3600)
def grade_solutions(problem_ids: list[int] | None = None) -> dict[str, int]:
    """Grade ungraded candidates' final answers (of ``problem_ids``, or all); idempotent."""
    from labeling.services.grading import answers_grade

    report = answers_grade(problem_ids=problem_ids)
    return {"pairs_checked": report.pairs_checked, "solutions_graded": report.solutions_graded}
