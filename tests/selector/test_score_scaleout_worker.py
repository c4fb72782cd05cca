"""One score job across two real `ml` Celery worker processes (tiny model, CPU): every
candidate scored once and both workers did work; one worker SIGKILLed mid-chunk, whose
chunk the reaper re-queues alone and the other worker finishes; and a chunk whose message
the broker lost, which the reaper sends again. Runs on SQLite with the filesystem broker and
on PostgreSQL + Redis alike."""

from collections.abc import Callable
from pathlib import Path

import pytest
from celery import signature
from django.db.models import Count, Sum

from jobs.models import Job, JobKind, JobStatus
from jobs.services import jobs_reap
from labeling.models import Solution
from selector.models import ChunkState, ScoreChunk, SolutionScore
from selector.services import job_execute, job_start, score_chunks, selector_create_base
from stepwise.celery import app
from tests.conftest import ARTIFACTS
from tests.factories import ProblemFactory, SolutionFactory
from tests.selector.test_worker import (
    FAST_HEARTBEAT,
    LOST_AFTER,
    drop_parked_redis_messages,
    finished,
    on_redis,
    sigkill,
    worker_env,  # noqa: F401 (a fixture)
)

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.usefixtures("worker_env")]


def start_ml_workers(factory: Callable[..., object], chunk: int, wait_until: Callable[..., None]):
    """Two `ml` workers, one torch thread each; returns them once both are ready to consume,
    so neither gets the whole job for having started first."""
    env = {**FAST_HEARTBEAT, "SELECTOR_SCORE_CHUNK": str(chunk), "OMP_NUM_THREADS": "1"}
    logs: list[tuple[Path, int]] = []
    workers = []
    for name in ("ml-a", "ml-b"):
        log = ARTIFACTS / f"celery-{name}.log"
        logs.append((log, log.stat().st_size if log.exists() else 0))
        workers.append(factory(queues="ml", name=name, env=env))

    def ready() -> bool:
        return all(log.exists() and b" ready." in log.read_bytes()[offset:] for log, offset in logs)

    wait_until(ready, timeout=120, message="both ml workers to be ready")
    return workers


def pool(n: int) -> None:
    problem = ProblemFactory()
    Solution.objects.bulk_create([SolutionFactory.build(problem=problem) for _ in range(n)])


def assert_scored_once(job: Job, n: int) -> None:
    version = job.version
    assert SolutionScore.objects.filter(version=version).count() == n
    assert not (
        SolutionScore.objects.filter(version=version)
        .values("solution")
        .annotate(k=Count("id"))
        .filter(k__gt=1)
        .exists()
    )
    # Each chunk counts the scores it stored, in the transaction that stores them: the sum
    # is what was computed and kept, so no candidate was stored by two runs.
    chunks = ScoreChunk.objects.filter(job=job)
    assert chunks.aggregate(s=Sum("scored"))["s"] == n
    assert set(chunks.values_list("state", flat=True)) == {ChunkState.DONE}


@pytest.mark.timeout(600)
def test_two_ml_workers_share_one_score_job(celery_worker_factory, wait_until) -> None:
    n, chunk = 600, 25
    start_ml_workers(celery_worker_factory, chunk, wait_until)
    version = selector_create_base(name="scale-out")
    pool(n)
    job = job_start(kind=JobKind.SCORE, params={}, version=version)
    wait_until(lambda: finished(job), timeout=400, message="the score job to finish")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"scored": n}
    assert (job.progress_done, job.progress_total) == (n, n)
    assert_scored_once(job, n)
    chunks = ScoreChunk.objects.filter(job=job)
    assert chunks.count() == n // chunk
    by_worker: dict[str, int] = {}
    for workers, scored in chunks.values_list("workers", "scored"):
        assert len(workers) == 1  # nobody died: one run per chunk
        host = workers[0].split("@")[0]
        by_worker[host] = by_worker.get(host, 0) + scored
    assert set(by_worker) == {"ml-a-0", "ml-b-1"}, by_worker  # both workers did work
    assert sum(by_worker.values()) == n


@pytest.mark.timeout(600)
def test_a_worker_killed_mid_chunk_has_its_chunk_finished_by_the_other(
    celery_worker_factory, wait_until
) -> None:
    # Three chunks of eight stored batches each: several seconds mid-chunk, so the poll below
    # sees it even on a loaded machine (with four batches it once missed the whole job).
    n, chunk = 6000, 2000
    a, _b = start_ml_workers(celery_worker_factory, chunk, wait_until)
    version = selector_create_base(name="kill-one")
    pool(n)
    job = job_start(kind=JobKind.SCORE, params={}, version=version)

    def a_is_mid_chunk() -> bool:
        return ScoreChunk.objects.filter(
            job__pk=job.pk, state=ChunkState.RUNNING, worker__startswith="ml-a-0@", scored__gt=0
        ).exists()

    wait_until(a_is_mid_chunk, timeout=300, message="worker a to store part of a chunk")
    sigkill(a)
    killed = ScoreChunk.objects.get(job=job, state=ChunkState.RUNNING, worker__startswith="ml-a-0@")
    assert killed.state == ChunkState.RUNNING and 0 < killed.scored < killed.total
    stored_before = killed.scored
    if on_redis():
        # Redis parks the dead worker's message until the visibility timeout; the reaper, not
        # the broker, brings the chunk back.
        assert drop_parked_redis_messages(killed.pk) == 1

    def requeued() -> bool:
        return jobs_reap(lost_after=LOST_AFTER).parts_requeued == [killed.pk]

    wait_until(requeued, timeout=60, message="the reaper to re-queue the killed chunk")
    wait_until(lambda: finished(job), timeout=400, message="the score job to finish")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"scored": n}
    assert_scored_once(job, n)
    killed.refresh_from_db()
    assert killed.attempts == 2
    assert [w.split("@")[0] for w in killed.workers] == ["ml-a-0", "ml-b-1"]
    # The second run stored only what the first had not: the rest of the chunk.
    assert killed.scored == killed.total and stored_before < killed.total
    # The other chunks ran once each (the job itself was never re-queued).
    others = ScoreChunk.objects.filter(job=job).exclude(pk=killed.pk)
    assert set(others.values_list("attempts", flat=True)) == {1}
    assert job.attempts == 1


@pytest.mark.timeout(600)
def test_a_chunk_whose_message_was_lost_is_sent_again_by_the_reaper_and_scored_once(
    celery_worker_factory, wait_until, selector_settings, monkeypatch
) -> None:
    n, chunk = 300, 100
    selector_settings.SELECTOR_SCORE_CHUNK = chunk  # the plan is made here, in the test process
    env = {**FAST_HEARTBEAT, "SELECTOR_SCORE_CHUNK": str(chunk), "OMP_NUM_THREADS": "1"}
    # Messages earlier tests left for chunk ids that this database reuses would stand in for
    # the lost one.
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("ml")
    celery_worker_factory(queues="ml", name="ml", env=env)
    version = selector_create_base(name="lost-message")
    pool(n)
    job = job_start(kind=JobKind.SCORE, params={}, version=version, enqueue=False)
    # The job's own task, run here: it plans three chunks and sends their group, whose last
    # message the broker loses.
    lost: list[int] = []
    send_group = score_chunks.group

    def lossy_group(signatures):
        signatures = list(signatures)
        lost.append(signatures[-1].args[0])
        return send_group(signatures[:-1])

    monkeypatch.setattr(score_chunks, "group", lossy_group)
    job = job_execute(job_id=job.pk, shard=True)
    monkeypatch.setattr(score_chunks, "group", send_group)
    assert job.status == JobStatus.RUNNING and len(lost) == 1

    def others_done() -> bool:
        return ScoreChunk.objects.filter(job=job, state=ChunkState.DONE).count() == 2

    wait_until(others_done, timeout=300, message="the worker to score the chunks it was sent")
    missing = ScoreChunk.objects.get(pk=lost[0])
    assert missing.state == ChunkState.QUEUED and missing.attempts == 0
    assert not finished(job)  # it waits on a message that will never come

    def sent_again() -> bool:
        report = jobs_reap(lost_after=LOST_AFTER)
        assert report.requeued == report.failed == []  # the job waits on its chunk
        return report.parts_requeued == [missing.pk]

    wait_until(sent_again, timeout=60, message="the reaper to send the lost chunk again")
    # The lost message turns up after all: the chunk now has two, and runs once.
    signature(score_chunks.CHUNK_TASK, args=(missing.pk,)).apply_async()
    wait_until(lambda: finished(job), timeout=300, message="the score job to finish")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"scored": n}
    assert_scored_once(job, n)
    missing.refresh_from_db()
    assert missing.attempts == 1 and len(missing.workers) == 1
    assert set(ScoreChunk.objects.filter(job=job).values_list("attempts", flat=True)) == {1}
