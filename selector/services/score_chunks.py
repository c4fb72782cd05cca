"""Scoring a pool across many `ml` workers: a score job, and the scoring inside a promotion
job, split the pending candidates into id ranges (``ScoreChunk`` rows, at most
SELECTOR_SCORE_CHUNK candidates each), and each chunk is one Celery task on `ml`.

- The job's own task plans the chunks, sends them as one Celery ``group`` and hands off
  (``JobContinues``): the job stays running while its chunks run on any number of workers.
- A chunk claims its row (running here, attempt + 1), scores the pending candidates of its
  range in batches, and stores each batch with its count in one transaction, only while it
  still holds the row. A chunk run again skips what is stored, so a rerun scores the rest.
- The job-level counter is the chunk rows: the chunk that finishes last (under the job's row
  lock) finishes the job, after planning the promotion's catch-up round and switching versions
  when the job promotes. So a promotion switches only once every chunk is done.
- The reaper (``score_chunks_reap``, from ``jobs.jobs_reap``) re-queues a chunk whose worker
  went silent, alone; the job's other chunks carry on. It also sends again the message of a
  chunk still queued when no worker has touched its job for a while (a message the broker
  lost, or a send that failed): a duplicate message is skipped at the claim. A cancel marks
  every open chunk cancelled: a running one stops at its next progress write (seconds), a
  queued one at its claim. Decision 0016.

Run in-process (``job_execute`` without ``shard``: the ``--sync`` commands, eager mode), the
same chunks run here one after another.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from celery import group, signature
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs.models import FINISHED, Job, JobKind, JobStatus
from jobs.services import Heartbeat, JobAbandoned, JobContinues, Progress, worker_name
from labeling.models import Solution
from selector.models import CHUNK_OPEN, ChunkState, ScoreChunk, SelectorVersion, SolutionScore
from selector.services.promotion import promotion_switch
from selector.services.scoring import score_row
from selector.services.versions import scorer_load, version_require_ready

logger = logging.getLogger(__name__)

CHUNK_TASK = "selector.score_chunk"
# Candidates stored per transaction inside a chunk: the most a killed worker's chunk loses.
CHUNK_BATCH = 256
# A chunk writes its progress (and checks for a cancel) at most this often, in seconds.
PROGRESS_INTERVAL = 1.0
# The reaper's wait before sending a queued chunk's message again doubles with each send, at
# most this many times (64 x JOBS_LOST_AFTER_SECONDS: 5 h 20 min by default).
RESEND_DOUBLINGS = 6


class ChunkTakenOver(Exception):
    """This worker no longer holds the chunk: the reaper re-queued it, or the job was
    cancelled or failed and its open chunks with it."""


def _pending(version: SelectorVersion) -> QuerySet[Solution]:
    return Solution.objects.filter(
        ~Exists(SolutionScore.objects.filter(version=version, solution=OuterRef("pk")))
    )


def _rounds(job: Job) -> int:
    # A promotion scores once more what was imported while its pool was being scored.
    return 2 if job.kind == JobKind.PROMOTE else 1


# --- Plan and dispatch ----------------------------------------------------------------------


def score_chunks_plan(
    *, job: Job, version: SelectorVersion, round: int = 1, after: int = 0, size: int = 0
) -> int:
    """Split the candidates ``version`` has not scored (ids above ``after``) into id ranges of
    at most ``size`` (default SELECTOR_SCORE_CHUNK) pending candidates; returns how many
    chunks it stored. Streams the ids, so memory holds one range boundary, not the pool."""
    size = size or settings.SELECTOR_SCORE_CHUNK
    ids = (
        _pending(version)
        .filter(pk__gt=after)
        .order_by("pk")
        .values_list("pk", flat=True)
        .iterator(chunk_size=10_000)
    )
    chunks: list[ScoreChunk] = []
    first, count = 0, 0
    for pk in ids:
        if not count:
            first = pk
        count += 1
        if count == size:
            chunks.append(_chunk(job, version, round, first, pk, count))
            count = 0
    if count:
        chunks.append(_chunk(job, version, round, first, pk, count))
    ScoreChunk.objects.bulk_create(chunks, batch_size=1000)
    return len(chunks)


def _chunk(job: Job, version: SelectorVersion, rnd: int, first: int, last: int, n: int) -> Any:
    return ScoreChunk(
        job=job,
        version=version,
        round=rnd,
        first_id=first,
        last_id=last,
        total=n,
        queued_at=timezone.now(),
    )


def _dispatch(chunk_ids: list[int]) -> None:
    """One message per chunk on `ml` (CELERY_TASK_ROUTES), sent as a Celery group. Stamped
    first, so a send that fails leaves the chunks for the reaper to send again."""
    if not chunk_ids:
        return
    for start in range(0, len(chunk_ids), 1000):
        ScoreChunk.objects.filter(pk__in=chunk_ids[start : start + 1000]).update(
            queued_at=timezone.now(), sends=F("sends") + 1
        )
    group(signature(CHUNK_TASK, args=(pk,)) for pk in chunk_ids).apply_async()


def _open_ids(job: Job) -> list[int]:
    return list(
        ScoreChunk.objects.filter(job=job, state__in=CHUNK_OPEN)
        .order_by("round", "first_id")
        .values_list("pk", flat=True)
    )


def score_job_run(
    *, job: Job, version: SelectorVersion, progress: Progress, shard: bool
) -> dict[str, Any]:
    """The body of a score job, or of a promotion job (scoring, then the switch).

    ``shard``: plan the chunks, send them to the `ml` workers and hand the job off to them
    (``JobContinues``); the last chunk finishes it. Otherwise run every chunk here, in order,
    and return the job's result. Run again (a retry, a re-queue) it plans nothing twice: it
    reopens the chunks that failed or were cancelled and adds a chunk for candidates imported
    since the plan.
    """
    version_require_ready(version)
    with transaction.atomic():
        Job.objects.select_for_update().filter(pk=job.pk).first()
        planned = ScoreChunk.objects.filter(job=job)
        if planned.exists():
            planned.filter(state__in=(ChunkState.FAILED, ChunkState.CANCELLED)).update(
                state=ChunkState.QUEUED, attempts=0, error="", queued_at=timezone.now(), sends=0
            )
            last = planned.aggregate(last=Max("last_id"), round=Max("round"))
            score_chunks_plan(job=job, version=version, round=last["round"], after=last["last"])
        else:
            score_chunks_plan(job=job, version=version)
        _job_progress_write(job)
    if shard:
        with transaction.atomic():
            Job.objects.select_for_update().filter(pk=job.pk).first()
            open_ids = _open_ids(job)
            result = None if open_ids else _advance(job, version)
            open_ids = open_ids or _open_ids(job)  # the catch-up round _advance planned
        if result is not None:
            return result
        transaction.on_commit(lambda: _dispatch(open_ids))
        raise JobContinues
    worker = worker_name()
    while True:
        ran = [
            score_chunk_execute(chunk_id=chunk_id, worker=worker, report=progress)
            for chunk_id in _open_ids(job)
        ]
        if ran and "skipped" in ran and _open_ids(job):
            # Other workers hold what is left (a retry while they run): they finish the job.
            raise JobContinues
        with transaction.atomic():
            Job.objects.select_for_update().filter(pk=job.pk).first()
            result = _advance(job, version)
        if result is not None:
            return result


def _advance(job: Job, version: SelectorVersion) -> dict[str, Any] | None:
    """Called under the job's row lock once no chunk of ``job`` is open: plan the next round
    (a promotion's catch-up) and return None, or return the job's result, after the switch
    when it promotes."""
    current = ScoreChunk.objects.filter(job=job).aggregate(round=Coalesce(Max("round"), 1))
    if current["round"] < _rounds(job) and score_chunks_plan(
        job=job, version=version, round=current["round"] + 1
    ):
        return None
    scored = ScoreChunk.objects.filter(job=job).aggregate(n=Coalesce(Sum("scored"), 0))["n"]
    if job.kind == JobKind.PROMOTE:
        return {"scored": scored, **promotion_switch(version=version, job=job)}
    return {"scored": scored}


def _job_progress_write(job: Job) -> int:
    """The job's progress is the sum of its chunks'; a write is also the job's heartbeat.
    Returns 0 when the job was finished meanwhile (cancelled, failed)."""
    sums = ScoreChunk.objects.filter(job=OuterRef("pk")).values("job")
    return (
        Job.objects.filter(pk=job.pk)
        .exclude(status__in=FINISHED)
        .update(
            progress_done=Coalesce(Subquery(sums.annotate(s=Sum("done")).values("s")), 0),
            progress_total=Coalesce(Subquery(sums.annotate(s=Sum("total")).values("s")), 0),
            heartbeat_at=timezone.now(),
        )
    )


# --- One chunk on one worker ----------------------------------------------------------------


def _silent(cutoff: Any) -> Q:
    return Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)


def _chunk_claim(chunk_id: int, worker: str) -> ScoreChunk | None:
    """Mark the chunk running here, or None when it must not run: finished, its job over, or
    held by another worker with a live heartbeat (a duplicate message)."""
    lost_after = timezone.now() - timedelta(seconds=settings.JOBS_LOST_AFTER_SECONDS)
    with transaction.atomic():
        chunk = (
            ScoreChunk.objects.select_for_update(of=("self",))
            .select_related("job", "version")
            .filter(pk=chunk_id)
            .first()
        )
        if chunk is None or chunk.state not in CHUNK_OPEN:
            return None
        now = timezone.now()
        if chunk.job.status in FINISHED:
            chunk.state, chunk.finished_at = ChunkState.CANCELLED, now
            chunk.save(update_fields=["state", "finished_at"])
            return None
        alive = (chunk.heartbeat_at or chunk.started_at or now) > lost_after
        if chunk.state == ChunkState.RUNNING and alive:
            logger.info("chunk %s: already running on %s", chunk_id, chunk.worker)
            return None
        chunk.state = ChunkState.RUNNING
        chunk.attempts += 1
        chunk.worker = worker
        chunk.workers = [*chunk.workers, worker]
        chunk.started_at = chunk.heartbeat_at = now
        chunk.sends = 0
        chunk.save(
            update_fields=[
                "state", "attempts", "worker", "workers", "started_at", "heartbeat_at", "sends"
            ]
        )  # fmt: skip
    return chunk


def _held(chunk: ScoreChunk, worker: str) -> QuerySet[ScoreChunk]:
    return ScoreChunk.objects.filter(pk=chunk.pk, worker=worker, state=ChunkState.RUNNING)


@dataclass
class _ChunkProgress:
    """Writes the chunk's progress (and the job's sum) at most every PROGRESS_INTERVAL: each
    write is a heartbeat, and the check that this worker still holds the chunk and the job
    still runs, so a cancel reaches a running chunk within seconds. With ``report`` (a chunk
    run in the job's own process) the job-level figures go there instead."""

    chunk: ScoreChunk
    worker: str
    report: Progress | None
    before: int = 0  # the job's done, other chunks, when this one started
    job_total: int = 0
    _last: float = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < PROGRESS_INTERVAL:
            return
        self._last = now
        if not _held(self.chunk, self.worker).update(done=done, heartbeat_at=timezone.now()):
            raise ChunkTakenOver(f"{self.chunk} is no longer held by {self.worker}")
        if self.report is not None:
            self.report(self.before + done, self.job_total)
        elif not _job_progress_write(self.chunk.job):
            raise JobAbandoned(f"{self.chunk.job} was finished while {self.chunk} ran")


_scorers: dict[tuple[int, str], Any] = {}


def _scorer(version: SelectorVersion) -> Any:
    """The version's scorer, loaded once per worker process (the last version used)."""
    key = (version.pk, version.checkpoint_path)
    if key not in _scorers:
        _scorers.clear()
        _scorers[key] = scorer_load(version)
    return _scorers[key]


def _chunk_score(chunk: ScoreChunk, worker: str, progress: _ChunkProgress) -> None:
    pending = (
        _pending(chunk.version)
        .filter(pk__gte=chunk.first_id, pk__lte=chunk.last_id)
        .order_by("pk")
        .select_related("problem")
        .only("id", "steps", "problem__problem")
    )
    stored = max(0, chunk.total - pending.count())  # a rerun: what earlier attempts stored
    scorer = _scorer(chunk.version)
    cursor = chunk.first_id - 1
    while True:
        batch = list(pending.filter(pk__gt=cursor)[:CHUNK_BATCH])
        if not batch:
            return
        results = scorer.score(
            [(s.problem.problem, list(s.steps)) for s in batch],
            progress=lambda d, _t, base=stored: progress(base + d),
        )
        with transaction.atomic():
            # The chunk's row first: only the worker that holds it stores, one at a time.
            held = _held(chunk, worker).update(
                scored=F("scored") + len(batch),
                done=stored + len(batch),
                heartbeat_at=timezone.now(),
            )
            if not held:
                raise ChunkTakenOver(f"{chunk} is no longer held by {worker}")
            SolutionScore.objects.bulk_create(
                [
                    score_row(solution_id=s.pk, version_id=chunk.version_id, result=r)
                    for s, r in zip(batch, results, strict=True)
                ],
                ignore_conflicts=True,
                batch_size=1000,
            )
        stored += len(batch)
        cursor = batch[-1].pk


def score_chunk_execute(*, chunk_id: int, worker: str, report: Progress | None = None) -> str:
    """Run one chunk on this worker; returns its state afterwards (for the task's result).

    Without ``report`` (the chunk's own Celery task) it finishes the job when it is the last
    open chunk, and a failure fails the job. With ``report`` (the job's own process running
    every chunk) the caller finishes the job, and exceptions propagate to it.
    """
    chunk = _chunk_claim(chunk_id, worker)
    if chunk is None:
        return "skipped"
    figures = ScoreChunk.objects.filter(job_id=chunk.job_id).exclude(pk=chunk.pk)
    sums = figures.aggregate(done=Coalesce(Sum("done"), 0), total=Coalesce(Sum("total"), 0))
    progress = _ChunkProgress(
        chunk, worker, report, before=sums["done"], job_total=sums["total"] + chunk.total
    )
    try:
        if connection.in_atomic_block:  # a test's transaction: no second connection sees it
            _chunk_score(chunk, worker, progress)
        else:
            with Heartbeat(
                lambda: _chunk_beat(chunk, worker),
                settings.JOBS_HEARTBEAT_SECONDS,
                f"score-chunk-{chunk.pk}-heartbeat",
            ):
                _chunk_score(chunk, worker, progress)
        if report is None:
            return _chunk_finish(chunk, worker)
        _held(chunk, worker).update(
            state=ChunkState.DONE, done=F("total"), finished_at=timezone.now()
        )
        return ChunkState.DONE
    except ChunkTakenOver:
        logger.warning("chunk %s: taken from %s; stopping", chunk.pk, worker)
        return "taken over"
    except JobAbandoned:
        _held(chunk, worker).update(state=ChunkState.CANCELLED, finished_at=timezone.now())
        if report is not None:
            raise
        return ChunkState.CANCELLED
    except Exception as exc:
        logger.exception("chunk %s failed", chunk.pk)
        error = f"chunk {chunk.first_id}..{chunk.last_id}: {type(exc).__name__}: {exc}"
        _held(chunk, worker).update(
            state=ChunkState.FAILED, error=error, finished_at=timezone.now()
        )
        if report is not None:
            raise
        _job_fail(chunk.job_id, error)
        return ChunkState.FAILED


def _chunk_beat(chunk: ScoreChunk, worker: str) -> None:
    if _held(chunk, worker).update(heartbeat_at=timezone.now()):
        Job.objects.filter(pk=chunk.job_id, status=JobStatus.RUNNING).update(
            heartbeat_at=timezone.now()
        )


def _chunk_finish(chunk: ScoreChunk, worker: str) -> str:
    """Mark the chunk done; the last open chunk of the job finishes the job (or plans its
    catch-up round), in the same transaction, under the job's row lock."""
    next_round: list[int] = []
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=chunk.job_id)
        now = timezone.now()
        if not _held(chunk, worker).update(state=ChunkState.DONE, done=F("total"), finished_at=now):
            raise ChunkTakenOver(f"{chunk} is no longer held by {worker}")
        if (
            job.status in FINISHED
            or ScoreChunk.objects.filter(job=job, state__in=CHUNK_OPEN).exists()
        ):
            return ChunkState.DONE
        result = _advance(job, chunk.version)
        if result is None:
            next_round = _open_ids(job)
            transaction.on_commit(lambda: _dispatch(next_round))
            _job_progress_write(job)
            return ChunkState.DONE
        total = (
            job.progress_total
            or ScoreChunk.objects.filter(job=job).aggregate(n=Coalesce(Sum("total"), 0))["n"]
        )
        Job.objects.filter(pk=job.pk).exclude(status__in=FINISHED).update(
            status=JobStatus.SUCCEEDED,
            result=result,
            progress_done=total,
            progress_total=total,
            finished_at=now,
            heartbeat_at=now,
            error="",
        )
    logger.info("job %s: finished by the last chunk, on %s", chunk.job_id, worker)
    return ChunkState.DONE


def _job_fail(job_id: int, error: str) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status in FINISHED:
            return
        job.status, job.error, job.finished_at = JobStatus.FAILED, error, timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        score_chunks_abandoned(job=job)


# --- The reaper's and the admin's hands (jobs.registry hooks) ------------------------------


def score_chunks_abandoned(*, job: Job) -> None:
    """The job was cancelled, failed or reaped: close its open chunks. A running chunk stops
    at its next progress write; a queued one is skipped when its message arrives."""
    ScoreChunk.objects.filter(job=job, state__in=CHUNK_OPEN).update(
        state=ChunkState.CANCELLED, finished_at=timezone.now()
    )


def score_chunks_reap(*, cutoff: Any) -> list[int]:
    """Re-queue, alone, every running chunk silent since ``cutoff`` (its worker was lost), up
    to JOBS_MAX_ATTEMPTS starts; a chunk lost that often fails its job. Send again the
    messages of stalled jobs' queued chunks (``_chunks_resend``). Then stamp the heartbeat of
    every running job still waiting on open chunks: it is not lost, its parts are queued or
    running. Returns the ids of the chunks re-queued or sent again."""
    requeued: list[int] = []
    lost = ScoreChunk.objects.filter(_silent(cutoff), state=ChunkState.RUNNING)
    for chunk_id, job_id in list(lost.values_list("pk", "job_id")):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            chunk = (
                ScoreChunk.objects.select_for_update(skip_locked=True)
                .filter(_silent(cutoff), pk=chunk_id, state=ChunkState.RUNNING)
                .first()
            )
            if chunk is None:  # it beat, finished, or a worker is storing right now
                continue
            since = (chunk.heartbeat_at or chunk.started_at or timezone.now()).isoformat(
                timespec="seconds"
            )
            lost_msg = f"worker lost: no heartbeat since {since} (worker {chunk.worker or '?'})"
            if job.status in FINISHED:
                chunk.state, chunk.finished_at = ChunkState.CANCELLED, timezone.now()
            elif chunk.attempts < settings.JOBS_MAX_ATTEMPTS:
                chunk.state, chunk.error = ChunkState.QUEUED, f"{lost_msg}; re-queued"
                transaction.on_commit(partial(_dispatch, [chunk.pk]))
                requeued.append(chunk.pk)
            else:
                chunk.state, chunk.error = ChunkState.FAILED, lost_msg
                chunk.finished_at = timezone.now()
            chunk.save(update_fields=["state", "error", "finished_at"])
            logger.warning("score chunk %s: %s", chunk.pk, chunk.error or chunk.state)
        if chunk.state == ChunkState.FAILED:
            _job_fail(job_id, f"chunk {chunk.first_id}..{chunk.last_id}: {lost_msg}")
    requeued.extend(_chunks_resend(cutoff))
    waiting = ScoreChunk.objects.filter(job=OuterRef("pk"), state__in=CHUNK_OPEN)
    Job.objects.filter(status=JobStatus.RUNNING).filter(Exists(waiting)).update(
        heartbeat_at=timezone.now()
    )
    return requeued


def _chunks_resend(cutoff: Any) -> list[int]:
    """Send again the message of each queued chunk of a running job that has stalled: none of
    its chunks started, beat or finished since ``cutoff``, so no worker is on it, yet chunks
    wait, queued since before ``cutoff``. Their message was lost (a broker restart, a dropped
    message, a send that failed) or waits behind other work (a long training on `ml`). A
    duplicate costs nothing: the claim skips a chunk that is running or done, and only its
    holder stores scores. The wait before each further send doubles (up to 2**RESEND_DOUBLINGS
    times ``now - cutoff``), so a chunk waiting behind hours of other work adds a few messages,
    not one a minute. Returns the ids sent again."""
    now = timezone.now()
    lost_after = now - cutoff
    lively = ScoreChunk.objects.filter(job=OuterRef("job")).filter(
        Q(started_at__gte=cutoff) | Q(heartbeat_at__gte=cutoff) | Q(finished_at__gte=cutoff)
    )
    waiting = (
        ScoreChunk.objects.filter(state=ChunkState.QUEUED, job__status=JobStatus.RUNNING)
        .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=cutoff))
        .exclude(Exists(lively))
        .order_by("job", "round", "first_id")
    )
    due = [
        pk
        for pk, queued_at, sends in waiting.values_list("pk", "queued_at", "sends")
        if queued_at is None
        or queued_at < now - lost_after * 2 ** min(max(sends - 1, 0), RESEND_DOUBLINGS)
    ]
    if due:
        logger.warning("score chunks %s: queued, no worker on their job; sent again", due)
        _dispatch(due)
    return due
