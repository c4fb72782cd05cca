"""The selector jobs on real Celery worker processes, tiny model on CPU: a run end to end, a
worker SIGKILLed mid-job (the reaper re-queues or fails the job), and the top-up on `default`
while a training job holds the `ml` worker."""

import base64
import json
import os
import signal
import subprocess

import pytest
from django.conf import settings
from django.utils import timezone

from jobs.models import Job, JobKind, JobStatus
from jobs.services import jobs_reap
from jobs.tasks import jobs_reap as jobs_reap_task
from labeling.models import Grade, Solution, Task
from selector.models import ChunkState, ScoreChunk, SolutionScore
from selector.services import job_start, selector_create_base
from selector.services.job_params import MAX_EPOCHS
from selector.tasks import queue_top_up
from tests.factories import ProblemFactory, SolutionFactory
from tests.selector.test_pipeline import build_world

# The workers stamp a heartbeat twice a second, so a few silent seconds mean a lost worker.
FAST_HEARTBEAT = {"STEPWISE_JOBS_HEARTBEAT_SECONDS": "0.5"}
LOST_AFTER = 3.0


@pytest.fixture
def worker_env(tiny_base_model, tmp_path, monkeypatch, selector_settings):
    # The worker is a separate process: it reads its settings from the environment.
    monkeypatch.setitem(os.environ, "SELECTOR_BASE_MODEL", str(tiny_base_model))
    monkeypatch.setitem(
        os.environ, "SELECTOR_CHECKPOINT_DIR", str(selector_settings.SELECTOR_CHECKPOINT_DIR)
    )
    monkeypatch.setitem(os.environ, "SELECTOR_DEVICE", "cpu")
    monkeypatch.setitem(os.environ, "SELECTOR_MAX_LENGTH", "128")
    # Counts below are of the 80/20 fill alone: no problem is reserved for the evaluation set
    # (which of the factories' problems would be depends on the test order).
    monkeypatch.setitem(os.environ, "SELECTOR_EVAL_FRACTION", "0")
    selector_settings.SELECTOR_EVAL_FRACTION = 0.0
    return selector_settings


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_score_and_fill_jobs_run_on_a_real_worker(worker_env, celery_worker_process, wait_until):
    version = selector_create_base(name="worker-base")
    for _ in range(4):
        problem = ProblemFactory()
        for i in range(5):
            SolutionFactory.create(
                problem=problem, grade=Grade.INCORRECT if i % 2 else Grade.CORRECT
            )

    job = job_start(kind=JobKind.SCORE, params={}, version=version)
    seen: list[str] = []

    def finished() -> bool:
        job.refresh_from_db()
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        return job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    wait_until(finished, timeout=240, message="the score job to finish")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert seen[0] in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert (job.progress_done, job.progress_total) == (20, 20)
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at <= job.finished_at
    assert job.result == {"scored": 20}
    assert SolutionScore.objects.filter(version=version).count() == 20

    fill = job_start(kind=JobKind.FILL, params={"per_problem": 2})
    wait_until(
        lambda: Job.objects.get(pk=fill.pk).status in (JobStatus.SUCCEEDED, JobStatus.FAILED),
        timeout=60,
        message="the fill job to finish",
    )
    fill.refresh_from_db()
    assert fill.status == JobStatus.SUCCEEDED, fill.error
    assert Task.objects.count() == 8 and fill.result["created"] == 8


def sigkill(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def finished(job: Job) -> bool:
    job.refresh_from_db()
    return job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)


def silent_for(job: Job, seconds: float) -> bool:
    job.refresh_from_db()
    assert job.heartbeat_at is not None
    return (timezone.now() - job.heartbeat_at).total_seconds() > seconds


def on_redis() -> bool:
    return settings.CELERY_BROKER_URL.startswith("redis")


def drop_parked_redis_messages(job_id: int) -> int:
    """Remove (and count) the messages for ``job_id`` that a Redis consumer took and never
    acked. Left alone, the killed worker's message would come back after the 7 h visibility
    timeout, into whatever database a later test run uses."""
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    dropped = 0
    for tag, raw in client.hgetall("unacked").items():
        payload = json.loads(raw)[0]  # kombu stores [message, exchange, routing key]
        if json.loads(base64.b64decode(payload["body"]))[0] == [job_id]:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
            dropped += 1
    return dropped


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_score_job_whose_worker_is_sigkilled_has_its_chunk_requeued_and_resumed(
    worker_env, celery_worker_factory, wait_until
):
    version = selector_create_base(name="kill-base")
    problem = ProblemFactory()
    n = 3000  # one chunk (SELECTOR_SCORE_CHUNK) of a dozen batches, committed one by one
    Solution.objects.bulk_create([SolutionFactory.build(problem=problem) for _ in range(n)])
    worker = celery_worker_factory(queues="ml", name="ml", env=FAST_HEARTBEAT)
    job = job_start(kind=JobKind.SCORE, params={}, version=version)
    wait_until(
        lambda: SolutionScore.objects.filter(version=version).exists(),
        timeout=300,
        message="the first batch of scores",
    )
    sigkill(worker)

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.attempts == 1, job.error
    chunk = ScoreChunk.objects.get(job=job)
    assert chunk.state == ChunkState.RUNNING and chunk.attempts == 1
    scored_before = SolutionScore.objects.filter(version=version).count()
    assert 0 < scored_before < n
    if on_redis():
        # Redis parks the dead worker's message until the visibility timeout; nothing but the
        # reaper brings the chunk back within minutes.
        assert drop_parked_redis_messages(chunk.pk) == 1

    assert jobs_reap(lost_after=LOST_AFTER).parts_requeued == []  # its heartbeat is fresh

    def reaped() -> bool:
        report = jobs_reap(lost_after=LOST_AFTER)
        assert report.requeued == report.failed == []  # the job waits on its chunk
        return report.parts_requeued == [chunk.pk]

    wait_until(reaped, timeout=30, message="the reaper to re-queue the silent chunk")
    chunk.refresh_from_db()
    assert chunk.state == ChunkState.QUEUED
    assert chunk.error.startswith("worker lost: no heartbeat since ")

    celery_worker_factory(queues="ml", name="ml-again", env=FAST_HEARTBEAT)
    wait_until(lambda: finished(job), timeout=300, message="the re-queued chunk to finish")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1 and job.result == {"scored": n}
    chunk.refresh_from_db()
    # Resumed, not redone: the scores stored before the kill were kept, the rest added once.
    assert chunk.attempts == 2 and chunk.scored == n and chunk.state == ChunkState.DONE
    assert SolutionScore.objects.filter(version=version).count() == n


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_top_up_runs_on_default_while_training_holds_ml_and_a_killed_training_fails(
    worker_env, celery_worker_factory, wait_until, monkeypatch
):
    build_world(n_problems=12, per_problem=4)
    version = selector_create_base(name="busy-base")
    SolutionScore.objects.bulk_create(
        SolutionScore(solution=s, version=version, score=0.5, step_scores=[0.5])
        for s in Solution.objects.all()
    )
    monkeypatch.setitem(os.environ, "SELECTOR_LOW_WATER", "1000")  # always top up
    ml = celery_worker_factory(queues="ml", name="ml", env=FAST_HEARTBEAT)
    celery_worker_factory(
        queues="default",
        name="default",
        env={**FAST_HEARTBEAT, "STEPWISE_JOBS_LOST_AFTER_SECONDS": str(LOST_AFTER)},
    )
    # As many epochs as a job may ask for: it is still training when the worker is killed.
    train = job_start(kind=JobKind.TRAIN, params={"epochs": MAX_EPOCHS, "name": "endless"})
    wait_until(
        lambda: Job.objects.filter(pk=train.pk, progress_done__gt=0).exists(),
        timeout=300,
        message="the training job to be under way on the ml worker",
    )
    before = Task.objects.filter(generation=1).count()
    queue_top_up.delay()
    wait_until(
        lambda: Task.objects.filter(generation=1).count() > before,
        timeout=120,
        message="the top-up to create tasks",
    )
    train.refresh_from_db()
    assert train.status == JobStatus.RUNNING  # the top-up did not wait for the training

    sigkill(ml)
    if on_redis():
        assert drop_parked_redis_messages(train.pk) == 1
    wait_until(lambda: silent_for(train, LOST_AFTER + 0.5), timeout=30, message="silence")
    jobs_reap_task.delay()  # the beat's reaper task, on the default worker
    wait_until(lambda: finished(train), timeout=120, message="the reaper to fail the job")
    assert train.status == JobStatus.FAILED
    assert train.error.startswith("worker lost: no heartbeat since ")
    assert train.attempts == 1 and train.finished_at is not None
