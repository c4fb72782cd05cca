"""The life of a job: claim, heartbeat, redelivered messages, the reaper, mark failed, retry."""

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from jobs.models import Job, JobKind, JobStatus
from jobs.registry import JOB_TASKS
from jobs.services import (
    JobError,
    JobProgress,
    job_create,
    job_mark_failed,
    job_retry,
    job_run,
    jobs_reap,
    worker_name,
)

pytestmark = pytest.mark.django_db


def ago(seconds: float) -> Any:
    return timezone.now() - timedelta(seconds=seconds)


def running(kind: str = JobKind.SCORE, *, silent_for: float, attempts: int = 1) -> Job:
    return Job.objects.create(
        kind=kind,
        status=JobStatus.RUNNING,
        started_at=ago(silent_for + 60),
        heartbeat_at=ago(silent_for),
        worker="gone-host:4242",
        attempts=attempts,
    )


def count_runs(calls: list[int]) -> Any:
    def runner(job: Job, progress: JobProgress) -> dict[str, Any]:
        calls.append(job.pk)
        progress(3, 3)
        return {"ran": True}

    return runner


def test_job_create_sends_the_kind_s_task_only_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        job = job_create(kind=JobKind.EXPORT, params={"format": "prm800k"})
    assert job.status == JobStatus.QUEUED and len(callbacks) == 1
    with pytest.raises(JobError, match="no task runs"):
        job_create(kind="sleep", params={})


def test_run_records_success_result_attempt_and_worker():
    job = Job.objects.create(kind=JobKind.FILL)
    calls: list[int] = []
    job = job_run(job_id=job.pk, runner=count_runs(calls))
    assert job.status == JobStatus.SUCCEEDED and job.result == {"ran": True}
    assert (job.progress_done, job.progress_total, job.attempts) == (3, 3, 1)
    assert job.worker == worker_name() and job.heartbeat_at and job.finished_at


def test_run_records_the_error_of_failed_work_without_raising():
    job = Job.objects.create(kind=JobKind.FILL)

    def boom(job: Job, progress: JobProgress) -> dict[str, Any]:
        raise ValueError("line 3: no answer")

    job = job_run(job_id=job.pk, runner=boom)
    assert job.status == JobStatus.FAILED and job.error == "ValueError: line 3: no answer"


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_a_redelivered_message_of_a_finished_job_does_nothing(status):
    job = Job.objects.create(kind=JobKind.SCORE, status=status, result={"x": 1})
    calls: list[int] = []
    assert job_run(job_id=job.pk, runner=count_runs(calls)).status == status
    assert calls == []


def test_a_job_a_live_worker_holds_is_not_run_twice(settings):
    settings.JOBS_LOST_AFTER_SECONDS = 300
    job = running(silent_for=10)
    calls: list[int] = []
    assert job_run(job_id=job.pk, runner=count_runs(calls)).status == JobStatus.RUNNING
    assert calls == []


def test_a_job_whose_worker_went_silent_is_taken_over_by_its_redelivered_message(settings):
    settings.JOBS_LOST_AFTER_SECONDS = 300
    job = running(silent_for=600)
    calls: list[int] = []
    job = job_run(job_id=job.pk, runner=count_runs(calls))
    assert calls == [job.pk] and job.status == JobStatus.SUCCEEDED and job.attempts == 2


def test_progress_writes_are_throttled_but_the_end_is_always_written():
    job = Job.objects.create(kind=JobKind.SCORE)
    progress = JobProgress(job, interval=3600)
    progress(1, 100)  # first write goes through
    progress(50, 100)  # throttled
    job.refresh_from_db()
    assert (job.progress_done, job.progress_total) == (1, 100)
    assert job.heartbeat_at is not None  # each write is a heartbeat too
    progress(100, 100)
    job.refresh_from_db()
    assert job.progress_done == 100


def test_marking_a_running_job_failed_stops_its_work_and_keeps_the_verdict(admin_user):
    job = Job.objects.create(kind=JobKind.SCORE)

    def long_work(job: Job, progress: JobProgress) -> dict[str, Any]:
        progress(1, 10)
        job_mark_failed(job_id=job.pk, user=admin_user)  # the admin, meanwhile
        progress(10, 10)  # the next write notices and stops the work
        raise AssertionError("not reached")

    job = job_run(job_id=job.pk, runner=long_work)
    assert job.status == JobStatus.FAILED
    assert job.error == "marked failed by admin while running"
    assert job.progress_done == 1


def test_reaper_fails_a_silent_job_that_is_not_resumable(settings):
    settings.JOBS_LOST_AFTER_SECONDS = 300
    train = running(JobKind.TRAIN, silent_for=301)
    report = jobs_reap()
    assert report.as_dict() == {"failed": [train.pk], "requeued": [], "parts": []}
    train.refresh_from_db()
    assert train.status == JobStatus.FAILED and train.finished_at is not None
    assert train.error.startswith("worker lost: no heartbeat since ")
    assert "gone-host:4242" in train.error


def test_reaper_requeues_a_resumable_job_once_then_fails_it(
    settings, django_capture_on_commit_callbacks
):
    settings.JOBS_LOST_AFTER_SECONDS = 300
    settings.JOBS_MAX_ATTEMPTS = 2
    assert JOB_TASKS[JobKind.SCORE].resumable
    score = running(JobKind.SCORE, silent_for=400, attempts=1)
    with django_capture_on_commit_callbacks() as callbacks:
        assert jobs_reap().requeued == [score.pk]
    assert len(callbacks) == 1  # its task is sent again
    score.refresh_from_db()
    assert score.status == JobStatus.QUEUED and "re-queued" in score.error
    Job.objects.filter(pk=score.pk).update(
        status=JobStatus.RUNNING, attempts=2, heartbeat_at=ago(400)
    )
    assert jobs_reap().failed == [score.pk]


def test_reaper_leaves_live_queued_and_finished_jobs_alone(settings):
    settings.JOBS_LOST_AFTER_SECONDS = 300
    live = running(silent_for=5)
    queued = Job.objects.create(kind=JobKind.TRAIN, created_at=ago(10_000))
    done = Job.objects.create(kind=JobKind.TRAIN, status=JobStatus.SUCCEEDED)
    assert jobs_reap().as_dict() == {"failed": [], "requeued": [], "parts": []}
    for job, status in [(live, JobStatus.RUNNING), (queued, JobStatus.QUEUED), (done, "succeeded")]:
        job.refresh_from_db()
        assert job.status == status


def test_reaper_uses_started_at_for_jobs_without_a_heartbeat(settings):
    """Rows from before heartbeats existed (a deploy restarts every worker)."""
    settings.JOBS_LOST_AFTER_SECONDS = 300
    old = Job.objects.create(kind=JobKind.TRAIN, status=JobStatus.RUNNING, started_at=ago(900))
    assert jobs_reap().failed == [old.pk]


def test_mark_failed_and_retry_refuse_what_makes_no_sense(settings):
    settings.JOBS_LOST_AFTER_SECONDS = 300
    done = Job.objects.create(kind=JobKind.FILL, status=JobStatus.SUCCEEDED)
    with pytest.raises(JobError, match="already succeeded"):
        job_mark_failed(job_id=done.pk)
    with pytest.raises(JobError, match="succeeded; start a new job"):
        job_retry(job_id=done.pk)
    with pytest.raises(JobError, match="live heartbeat"):
        job_retry(job_id=running(silent_for=1).pk)


def test_retry_queues_a_failed_job_again_with_its_parameters(django_capture_on_commit_callbacks):
    job = Job.objects.create(
        kind=JobKind.TRAIN,
        status=JobStatus.FAILED,
        params={"epochs": 2},
        error="worker lost: no heartbeat since …",
        progress_done=5,
        finished_at=timezone.now(),
    )
    with django_capture_on_commit_callbacks() as callbacks:
        job = job_retry(job_id=job.pk)
    assert len(callbacks) == 1
    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at, job.progress_done) == ("queued", "", None, 0)
    assert job.params == {"epochs": 2}


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_beats_while_the_work_reports_no_progress(settings):
    settings.JOBS_HEARTBEAT_SECONDS = 0.05
    job = Job.objects.create(kind=JobKind.FILL)
    seen: list[Any] = []

    def quiet_work(job: Job, progress: JobProgress) -> dict[str, Any]:
        started = Job.objects.get(pk=job.pk).heartbeat_at
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            beat = Job.objects.get(pk=job.pk).heartbeat_at
            if beat != started:
                seen.append(beat)
                break
            time.sleep(0.02)
        return {}

    job = job_run(job_id=job.pk, runner=quiet_work)
    assert job.status == JobStatus.SUCCEEDED and len(seen) == 1
    assert not any(t.name.startswith(f"job-{job.pk}-") for t in threading.enumerate())
