"""Sharded scoring in one process: the plan (bounded id ranges that cover the pending pool
once), a job run chunk by chunk, the last chunk finishing a job and switching a promotion,
cancel, the reaper re-queueing a lost chunk alone and sending a lost message again. Real
Celery workers:
``test_score_scaleout_worker.py``."""

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import Job, JobKind, JobStatus
from jobs.services import job_cancel, jobs_reap
from labeling.models import Solution
from selector.models import ChunkState, ScoreChunk, SolutionScore
from selector.services import (
    candidates_score,
    job_execute,
    job_start,
    score_chunk_execute,
    selector_active,
    selector_create_base,
)
from selector.services.score_chunks import (
    ChunkTakenOver,
    _chunk_claim,
    _ChunkProgress,
    score_chunks_plan,
)
from tests.factories import ProblemFactory, SolutionFactory


@pytest.fixture
def pool(db, selector_settings):
    selector_settings.SELECTOR_EVAL_FRACTION = 0.0
    selector_settings.SELECTOR_SCORE_CHUNK = 7
    version = selector_create_base(name="chunked")
    problem = ProblemFactory()
    Solution.objects.bulk_create([SolutionFactory.build(problem=problem) for _ in range(20)])
    return version


def test_the_plan_covers_each_pending_candidate_once_in_bounded_ranges(pool):
    ids = list(Solution.objects.order_by("pk").values_list("pk", flat=True))
    candidates_score(version=pool, solution_ids=ids[3:6])  # already scored: left out
    job = job_start(kind=JobKind.SCORE, version=pool, enqueue=False)
    assert score_chunks_plan(job=job, version=pool, size=7) == 3
    chunks = list(ScoreChunk.objects.filter(job=job).order_by("first_id"))
    assert [c.total for c in chunks] == [7, 7, 3]
    pending = [pk for pk in ids if pk not in ids[3:6]]
    covered = [pk for c in chunks for pk in pending if c.first_id <= pk <= c.last_id]
    assert covered == pending  # each pending candidate in exactly one range, in id order
    assert {c.state for c in chunks} == {ChunkState.QUEUED}


def test_a_score_job_run_in_process_scores_chunk_by_chunk(pool):
    job = job_start(kind=JobKind.SCORE, version=pool, enqueue=False)
    seen: list[tuple[int, int]] = []
    job = job_execute(job_id=job.pk, echo=lambda d, t: seen.append((d, t)))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"scored": 20}
    assert (job.progress_done, job.progress_total) == (20, 20)
    chunks = ScoreChunk.objects.filter(job=job)
    assert sorted(c.scored for c in chunks) == [6, 7, 7]
    assert {c.state for c in chunks} == {ChunkState.DONE}
    assert all(c.attempts == 1 and len(c.workers) == 1 for c in chunks)
    assert SolutionScore.objects.filter(version=pool).count() == 20
    assert seen and all(t == 20 for _, t in seen)


def test_a_promotion_switches_only_when_its_last_chunk_finishes(
    pool, django_capture_on_commit_callbacks
):
    old = selector_active()
    new = selector_create_base(name="next")
    job = job_start(kind=JobKind.PROMOTE, version=new, enqueue=False)
    with django_capture_on_commit_callbacks() as sent:
        job = job_execute(job_id=job.pk, shard=True)  # on a worker: plan, send, hand off
    assert job.status == JobStatus.RUNNING and len(sent) == 1  # one group of chunk tasks
    chunk_ids = list(ScoreChunk.objects.filter(job=job).values_list("pk", flat=True))
    assert len(chunk_ids) == 3
    for i, chunk_id in enumerate(chunk_ids):
        assert selector_active() == old  # not while a chunk is open
        assert score_chunk_execute(chunk_id=chunk_id, worker=f"w{i % 2}") == ChunkState.DONE
        if i == 0:  # the job's bar is the sum of its chunks'
            job.refresh_from_db()
            assert (job.progress_done, job.progress_total) == (7, 20)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert selector_active() == new
    assert job.result["scored"] == 20 and job.progress_done == job.progress_total == 20
    # A duplicate message for a finished chunk does nothing.
    assert score_chunk_execute(chunk_id=chunk_ids[0], worker="w9") == "skipped"


def test_a_promotion_catches_up_on_candidates_imported_while_it_scored(
    pool, django_capture_on_commit_callbacks
):
    new = selector_create_base(name="next")
    job = job_start(kind=JobKind.PROMOTE, version=new, enqueue=False)
    with django_capture_on_commit_callbacks():
        job_execute(job_id=job.pk, shard=True)
    first_round = list(ScoreChunk.objects.filter(job=job).values_list("pk", flat=True))
    for chunk_id in first_round[:-1]:
        score_chunk_execute(chunk_id=chunk_id, worker="w")
    SolutionFactory.create_batch(2, problem=Solution.objects.first().problem)  # mid-scoring
    with django_capture_on_commit_callbacks() as sent:
        score_chunk_execute(chunk_id=first_round[-1], worker="w")
    assert len(sent) == 1  # the catch-up round's chunk, sent by the last chunk of round 1
    catch_up = ScoreChunk.objects.get(job=job, round=2)
    assert catch_up.total == 2 and selector_active() != new
    score_chunk_execute(chunk_id=catch_up.pk, worker="w")
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and selector_active() == new
    assert job.result["scored"] == 22 == SolutionScore.objects.filter(version=new).count()


def test_cancel_reaches_every_chunk(pool, django_capture_on_commit_callbacks):
    job = job_start(kind=JobKind.SCORE, version=pool, enqueue=False)
    with django_capture_on_commit_callbacks():
        job_execute(job_id=job.pk, shard=True)
    first, running, *rest = ScoreChunk.objects.filter(job=job).order_by("first_id")
    score_chunk_execute(chunk_id=first.pk, worker="w")
    claimed = _chunk_claim(running.pk, "busy:1")
    assert claimed is not None
    progress = _ChunkProgress(claimed, "busy:1", None)
    progress(1)  # still held: the write goes through
    assert job_cancel(job=Job.objects.get(pk=job.pk))
    with pytest.raises(ChunkTakenOver):  # the running chunk's next progress write stops it
        progress._last = 0.0
        progress(2)
    closed = ScoreChunk.objects.filter(pk__in=[running.pk, *(c.pk for c in rest)])
    assert {c.state for c in closed} == {ChunkState.CANCELLED}
    for chunk in rest:  # their messages arrive: nothing runs
        assert score_chunk_execute(chunk_id=chunk.pk, worker="w") == "skipped"
    assert SolutionScore.objects.filter(version=pool).count() == first.total
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


def test_the_reaper_requeues_a_lost_chunk_alone_and_keeps_the_waiting_job_alive(
    pool, django_capture_on_commit_callbacks
):
    job = job_start(kind=JobKind.SCORE, version=pool, enqueue=False)
    with django_capture_on_commit_callbacks():
        job_execute(job_id=job.pk, shard=True)
    lost, running, _queued = ScoreChunk.objects.filter(job=job).order_by("first_id")
    long_ago = timezone.now() - timedelta(hours=1)
    ScoreChunk.objects.filter(pk=lost.pk).update(
        state=ChunkState.RUNNING, attempts=1, worker="gone:1", workers=["gone:1"],
        heartbeat_at=long_ago, started_at=long_ago,
    )  # fmt: skip
    ScoreChunk.objects.filter(pk=running.pk).update(
        state=ChunkState.RUNNING, attempts=1, worker="alive:2", heartbeat_at=timezone.now()
    )
    Job.objects.filter(pk=job.pk).update(heartbeat_at=long_ago)  # no chunk stamped it lately
    # Queued long ago, but a worker is on the job: its message is waiting, not sent again.
    ScoreChunk.objects.filter(pk=_queued.pk).update(queued_at=long_ago)

    with django_capture_on_commit_callbacks(execute=False) as sent:
        report = jobs_reap(lost_after=60)
    assert report.parts_requeued == [lost.pk] and report.failed == report.requeued == []
    assert len(sent) == 1  # one message: that chunk's
    lost.refresh_from_db()
    assert lost.state == ChunkState.QUEUED and lost.error.startswith("worker lost")
    assert ScoreChunk.objects.get(pk=running.pk).worker == "alive:2"  # untouched
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING and job.heartbeat_at > long_ago  # waiting, not lost

    # Re-run on another worker: attempt 2, the first worker's name kept.
    assert score_chunk_execute(chunk_id=lost.pk, worker="other:3") == ChunkState.DONE
    lost.refresh_from_db()
    assert lost.attempts == 2 and lost.workers == ["gone:1", "other:3"]
    assert lost.scored == lost.total


def test_a_chunk_lost_on_its_last_attempt_fails_the_job_and_closes_the_rest(
    pool, django_capture_on_commit_callbacks
):
    job = job_start(kind=JobKind.SCORE, version=pool, enqueue=False)
    with django_capture_on_commit_callbacks():
        job_execute(job_id=job.pk, shard=True)
    lost = ScoreChunk.objects.filter(job=job).order_by("first_id").first()
    assert lost is not None
    long_ago = timezone.now() - timedelta(hours=1)
    ScoreChunk.objects.filter(pk=lost.pk).update(
        state=ChunkState.RUNNING, attempts=2, worker="gone:1", heartbeat_at=long_ago
    )
    assert jobs_reap(lost_after=60).parts_requeued == []
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error.startswith(f"chunk {lost.first_id}..{lost.last_id}: worker lost")
    assert set(ScoreChunk.objects.filter(job=job).values_list("state", flat=True)) == {
        ChunkState.FAILED,
        ChunkState.CANCELLED,
    }


def test_a_retried_job_reopens_its_unfinished_chunks_and_resumes(pool):
    job = job_start(kind=JobKind.SCORE, version=pool, enqueue=False)
    score_chunks_plan(job=job, version=pool)
    first = ScoreChunk.objects.filter(job=job).order_by("first_id").first()
    assert first is not None
    ScoreChunk.objects.filter(job=job).exclude(pk=first.pk).update(state=ChunkState.CANCELLED)
    candidates_score(version=pool, solution_ids=range(first.first_id, first.last_id + 1))
    ScoreChunk.objects.filter(pk=first.pk).update(state=ChunkState.DONE, scored=first.total)
    job = job_execute(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"scored": 20}
    assert ScoreChunk.objects.filter(job=job).count() == 3  # nothing planned twice


def _age(job: Job, seconds: float) -> None:
    """Move every timestamp of the job's chunks ``seconds`` into the past."""
    for chunk in ScoreChunk.objects.filter(job=job):
        for name in ("queued_at", "started_at", "heartbeat_at", "finished_at"):
            if getattr(chunk, name) is not None:
                setattr(chunk, name, getattr(chunk, name) - timedelta(seconds=seconds))
        chunk.save()


def test_the_reaper_sends_again_a_queued_chunk_whose_message_was_lost_and_scores_it_once(
    pool, django_capture_on_commit_callbacks
):
    job = job_start(kind=JobKind.SCORE, version=pool, enqueue=False)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        job_execute(job_id=job.pk, shard=True)
    assert len(sent) == 1
    with django_capture_on_commit_callbacks():
        sent[0]()  # the group goes out; the broker then loses the last chunk's message
    first, second, lost = ScoreChunk.objects.filter(job=job).order_by("first_id")
    assert lost.sends == 1 and lost.queued_at is not None
    for chunk in (first, second):
        assert score_chunk_execute(chunk_id=chunk.pk, worker="w") == ChunkState.DONE
    assert jobs_reap(lost_after=60).parts_requeued == []  # a worker was on it a moment ago

    _age(job, 120)  # nobody has touched the job since
    report = jobs_reap(lost_after=60)
    assert report.parts_requeued == [lost.pk] and report.failed == report.requeued == []
    lost.refresh_from_db()
    assert lost.state == ChunkState.QUEUED and lost.sends == 2
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # waiting on its chunk, not lost
    # Sent again only after twice the wait: a message waiting behind other work does not
    # multiply by one a minute.
    _age(job, 90)
    assert jobs_reap(lost_after=60).parts_requeued == []
    _age(job, 60)
    assert jobs_reap(lost_after=60).parts_requeued == [lost.pk]

    # The re-sent message and the lost one turning up late: the chunk runs once.
    assert score_chunk_execute(chunk_id=lost.pk, worker="w2") == ChunkState.DONE
    assert score_chunk_execute(chunk_id=lost.pk, worker="w3") == "skipped"
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result == {"scored": 20}
    assert SolutionScore.objects.filter(version=pool).count() == 20
    lost.refresh_from_db()
    assert lost.attempts == 1 and lost.scored == lost.total and lost.sends == 0
