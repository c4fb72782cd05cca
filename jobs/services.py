"""Background jobs: create and enqueue, run with progress and a heartbeat, reap lost ones.

A job's life: ``job_create`` (queued; its Celery task is sent on commit) → ``job_run`` in a
worker (running; heartbeat every JOBS_HEARTBEAT_SECONDS) → succeeded or failed. When a
worker dies without a word (SIGKILL, OOM, a lost machine), ``jobs_reap`` notices the silent
heartbeat and fails the job, or re-queues it once if its kind is resumable. Decision 0007.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from jobs.models import FINISHED, Job, JobStatus
from jobs.params import job_params_clean
from jobs.registry import JOB_TASKS

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
Runner = Callable[[Job, "JobProgress"], dict[str, Any]]


class JobError(Exception):
    """A job operation cannot proceed; the message says why, for the admin and the CLI."""


class JobLimitReached(JobError):
    """Too many jobs of the limited kinds are queued or running (the API's 409)."""


class JobRetryForbidden(JobError):
    """Retrying this job needs the permission that starts its kind."""


class JobAbandoned(Exception):
    """The job was marked finished by someone else (the admin, the reaper) while it ran."""


class JobCancelled(JobAbandoned):
    """The job was cancelled; raised by the loop that noticed, between two chunks of work."""


class JobContinues(Exception):
    """Raised by a runner that handed the work on to other tasks (a score job's chunks, each a
    Celery task with its own heartbeat): the job stays running, and those tasks finish it."""


def job_cancel_check(job: Job | None) -> None:
    """Raise ``JobCancelled`` when someone cancelled ``job`` (one indexed read per call: long
    loops call it between chunks, and promotion once more under its lock before switching)."""
    if job is not None and Job.objects.filter(pk=job.pk, status=JobStatus.CANCELLED).exists():
        raise JobCancelled(f"{job} was cancelled")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# --- Create and enqueue -------------------------------------------------------------------


def job_create(
    *,
    kind: str,
    params: dict[str, Any] | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    version_id: int | None = None,
    enqueue: bool = True,
) -> Job:
    """Record a queued Job and send its Celery task once the row is committed.

    ``params`` are checked against the kind's parameter class first (``jobs.params``): a bad
    one raises ``JobParamsInvalid`` naming the field, and no row is written. A user's job of a
    limited kind is refused with ``JobLimitReached`` past JOBS_PER_USER or JOBS_GLOBAL.
    """
    if kind not in JOB_TASKS:
        raise JobError(f"kind {kind!r}: no task runs this kind of job")
    cleaned = job_params_clean(kind, params)
    with transaction.atomic():
        job_limits_check(kind=kind, user=user)
        job = Job.objects.create(
            kind=kind,
            params=cleaned,
            version_id=version_id,
            created_by_id=user.pk if user is not None and user.is_authenticated else None,
        )
        if enqueue:
            job_enqueue(job=job)
    return job


def _limited_kinds() -> list[str]:
    return [kind for kind, task in JOB_TASKS.items() if task.limited]


def job_limits_check(
    *, kind: str, user: AbstractBaseUser | AnonymousUser | None, exclude: int | None = None
) -> None:
    """Refuse (``JobLimitReached``) one more queued job of ``kind`` for ``user`` when they, or
    everyone together, already have as many of the limited kinds queued or running as the
    settings allow. Jobs started without a user (a command, the beat) are never refused but
    count toward the global figure. Call it inside the transaction that writes the job: the
    user's row is locked, so one user's simultaneous requests are counted one after another.
    """
    if not JOB_TASKS[kind].limited or user is None or not user.is_authenticated:
        return
    user_model = get_user_model()
    list(user_model._default_manager.select_for_update().filter(pk=user.pk).values_list("pk"))
    live = Job.objects.filter(
        kind__in=_limited_kinds(), status__in=[JobStatus.QUEUED, JobStatus.RUNNING]
    )
    if exclude is not None:
        live = live.exclude(pk=exclude)
    mine = live.filter(created_by_id=user.pk).count()
    if mine >= settings.JOBS_PER_USER:
        raise JobLimitReached(
            f"you already have {mine} queued or running selector job(s), the limit "
            f"(STEPWISE_JOBS_PER_USER={settings.JOBS_PER_USER}): wait for one to finish, "
            "or cancel one"
        )
    everyone = live.count()
    if everyone >= settings.JOBS_GLOBAL:
        raise JobLimitReached(
            f"{everyone} selector jobs are queued or running, the limit for everyone "
            f"(STEPWISE_JOBS_GLOBAL={settings.JOBS_GLOBAL}): try again when some have finished"
        )


def job_enqueue(*, job: Job) -> None:
    """Send the job's task when the current transaction commits (at once outside one)."""
    task_name, job_id = JOB_TASKS[job.kind].task, job.pk
    transaction.on_commit(lambda: _send(task_name, job_id))


def _send(task_name: str, job_id: int) -> None:
    # By name, so this app never imports the apps whose tasks it sends; send_task applies
    # CELERY_TASK_ROUTES like .delay() does. Eager mode (a settings switch for development)
    # needs the task object, which autodiscovery provides.
    if current_app.conf.task_always_eager:
        current_app.loader.import_default_modules()
        current_app.tasks[task_name].apply(args=[job_id])
        return
    current_app.send_task(task_name, args=[job_id])


# --- Run: progress and heartbeat ----------------------------------------------------------


class JobProgress:
    """A progress callback that writes to the Job row at most every ``interval`` seconds (and
    always on completion), so a fast loop doesn't turn into a write storm. Each write is also
    a heartbeat. If the job was marked finished meanwhile (the admin's "mark failed", or the
    reaper), it raises ``JobAbandoned`` so the work stops."""

    def __init__(
        self, job: Job | None, *, interval: float = 0.5, echo: Progress | None = None
    ) -> None:
        self.job = job
        self.interval = interval
        self.echo = echo
        self._last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.echo is not None:
            self.echo(done, total)
        if self.job is None:
            return
        now = time.monotonic()
        throttled = self._last is not None and now - self._last < self.interval
        if throttled and done < total and total == self.job.progress_total:
            return
        self._last = now
        self.job.progress_done = max(0, int(done))
        self.job.progress_total = max(0, int(total))
        self.job.heartbeat_at = timezone.now()
        updated = (
            Job.objects.filter(pk=self.job.pk)
            .exclude(status__in=FINISHED)
            .update(
                progress_done=self.job.progress_done,
                progress_total=self.job.progress_total,
                heartbeat_at=self.job.heartbeat_at,
            )
        )
        if not updated:
            raise JobAbandoned(f"{self.job} was marked finished while it ran")


class DetachedProgress:
    """Progress for work that runs inside one long transaction (an import): a call only notes
    the figures, and a thread with its own database connection writes them every ``interval``
    seconds. Written from inside that transaction they would stay invisible until it commits,
    and would hold the job's row locked against a cancel. When the job is marked finished
    meanwhile (cancelled, or failed by an admin), the next call raises ``JobAbandoned``, so the
    work stops and its transaction rolls back. Use it as a context manager around the work.

    Inside a caller's transaction (a test) no other connection can see the job's row: the
    figures are then written once, at the end, by the caller's connection.
    """

    def __init__(self, job: Job, *, interval: float = 0.5) -> None:
        self.job = job
        self.interval = interval
        self._figures: tuple[int, int] | None = None
        self._written: tuple[int, int] | None = None
        self._abandoned = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._abandoned.is_set():
            raise JobAbandoned(f"{self.job} was marked finished while it ran")
        self._figures = (max(0, int(done)), max(0, int(total)))

    def __enter__(self) -> DetachedProgress:
        if not connection.in_atomic_block:
            self._thread = threading.Thread(
                target=self._write_loop, name=f"job-{self.job.pk}-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        else:
            self._write()

    def _write_loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                self._write_logged()
            self._write_logged()
        finally:
            connections.close_all()

    def _write_logged(self) -> None:
        try:
            self._write()
        except DatabaseError:
            # SQLite: the work's transaction holds the only write lock until it commits.
            logger.info("job %s: progress write failed; next time", self.job.pk, exc_info=True)

    def _write(self) -> None:
        figures = self._figures
        if figures is None or figures == self._written:
            return
        updated = (
            Job.objects.filter(pk=self.job.pk)
            .exclude(status__in=FINISHED)
            .update(
                progress_done=figures[0],
                progress_total=figures[1],
                heartbeat_at=timezone.now(),
            )
        )
        self._written = figures
        if not updated:
            self._abandoned.set()
        self.job.progress_done, self.job.progress_total = figures


class PhasedProgress:
    """One bar for a job that runs in phases (promotion: score the pool, catch up, switch).
    Each phase reports its own (done, total); they map into one range of ``SCALE`` steps, each
    phase its share by ``weights``, so the bar only moves forward: it never restarts at a
    later phase's "1 / 1"."""

    SCALE = 1000

    def __init__(self, progress: Progress, weights: tuple[float, ...]) -> None:
        total = sum(weights)
        self.progress = progress
        self.starts = [sum(weights[:i]) / total for i in range(len(weights))]
        self.widths = [w / total for w in weights]
        self.reached = 0

    def phase(self, index: int) -> Progress:
        return _Phase(self, index)

    def report(self, index: int, done: int, total: int) -> None:
        share = min(1.0, done / total) if total else 1.0
        at = round(self.SCALE * (self.starts[index] + self.widths[index] * share))
        self.reached = max(self.reached, min(self.SCALE, at))
        self.progress(self.reached, self.SCALE)


class _Phase:
    """One phase's progress callback (``progress_for`` passes it through as it is)."""

    def __init__(self, owner: PhasedProgress, index: int) -> None:
        self.owner, self.index = owner, index

    def __call__(self, done: int, total: int) -> None:
        self.owner.report(self.index, done, total)


def progress_for(job: Job | None, progress: Progress | None) -> Progress:
    if isinstance(progress, JobProgress | _Phase):
        return progress
    if job is None:
        return progress or (lambda _d, _t: None)
    return JobProgress(job, echo=progress)


class Heartbeat:
    """A daemon thread that calls ``beat`` (a write that stamps a heartbeat) every ``interval``
    seconds while the work runs, so work that reports no progress for a long time (loading a
    model, one long training epoch) still looks alive. It stops with the process: a SIGKILLed
    worker goes silent, which is the point. Its own database connection, closed when it stops.
    Used by ``job_run`` for the Job row, and by work that runs in parts for each part's row."""

    def __init__(self, beat: Callable[[], object], interval: float, name: str) -> None:
        self.beat, self.interval, self.name = beat, interval, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.daemon = True

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat()
                except DatabaseError:
                    # A busy or briefly unreachable database: the next beat tries again, and
                    # the reaper's threshold is many beats long.
                    logger.warning("%s: heartbeat write failed", self.name, exc_info=True)
        finally:
            connections.close_all()


def _job_heartbeat(job_id: int, worker: str) -> Heartbeat:
    def beat() -> None:
        Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, worker=worker).update(
            heartbeat_at=timezone.now()
        )

    return Heartbeat(beat, settings.JOBS_HEARTBEAT_SECONDS, f"job-{job_id}-heartbeat")


def _last_sign_of_life(job: Job) -> datetime:
    return job.heartbeat_at or job.started_at or job.created_at


def _lost_after() -> timedelta:
    return timedelta(seconds=settings.JOBS_LOST_AFTER_SECONDS)


def _job_claim(job_id: int, worker: str) -> Job | None:
    """Mark the job running here, or None when it must not run: it already finished (a stale
    redelivery of its message), or another worker holds it with a live heartbeat."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        now = timezone.now()
        if job.status in FINISHED:
            return None
        if job.status == JobStatus.RUNNING and _last_sign_of_life(job) > now - _lost_after():
            logger.info("job %s: already running on %s; not starting twice", job_id, job.worker)
            return None
        job.status = JobStatus.RUNNING
        job.started_at = job.heartbeat_at = now
        job.worker = worker
        job.attempts += 1
        job.error = ""
        job.finished_at = None
        job.save(
            update_fields=[
                "status",
                "started_at",
                "heartbeat_at",
                "worker",
                "attempts",
                "error",
                "finished_at",
            ]
        )
    return job


def job_run(*, job_id: int, runner: Runner, echo: Progress | None = None) -> Job:
    """Run a Job in this process: queued → running → succeeded or failed (with the error).

    Safe for redelivered messages: a finished job, or one another live worker holds, is not
    run again. Never raises for a failure of the work itself; the Job row carries it. The
    final write happens only if nobody marked the job finished meanwhile.
    """
    worker = worker_name()
    job = _job_claim(job_id, worker)
    if job is None:
        return Job.objects.get(pk=job_id)
    progress = JobProgress(job, echo=echo)
    # Inside an outer transaction (a test, a caller's atomic block) the row is invisible to
    # other connections, so a second connection's heartbeat could only wait on locks.
    heartbeat = not connection.in_atomic_block
    outcome: dict[str, Any]
    try:
        if heartbeat:
            with _job_heartbeat(job_id, worker):
                result = runner(job, progress)
        else:
            result = runner(job, progress)
    except JobAbandoned:
        logger.warning("job %s: stopped, it was marked finished while it ran", job_id)
        return Job.objects.get(pk=job_id)
    except JobContinues:
        return Job.objects.get(pk=job_id)
    except Exception as exc:
        logger.exception("job %s failed", job_id)
        outcome = {"status": JobStatus.FAILED, "error": f"{type(exc).__name__}: {exc}"}
    else:
        total = job.progress_total or 1
        outcome = {
            "status": JobStatus.SUCCEEDED,
            "result": jsonable(result),
            "progress_done": total,
            "progress_total": total,
        }
    written = (
        Job.objects.filter(pk=job_id, worker=worker)
        .exclude(status__in=FINISHED)
        .update(finished_at=timezone.now(), heartbeat_at=timezone.now(), **outcome)
    )
    if not written:
        logger.warning("job %s: finished here, but it was marked finished meanwhile", job_id)
    return Job.objects.get(pk=job_id)


def jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars from metrics, Paths) for a JSONField."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


# --- Lost workers, and the admin's hands ---------------------------------------------------


@dataclass
class ReapReport:
    failed: list[int] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)
    # Parts re-queued alone (a score job's chunks), by the kinds' ``reap_parts`` hooks.
    parts_requeued: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[int]]:
        return {"failed": self.failed, "requeued": self.requeued, "parts": self.parts_requeued}


def jobs_reap(*, lost_after: float | None = None) -> ReapReport:
    """Fail, or re-queue once if resumable, every running job whose heartbeat is older than
    ``lost_after`` seconds (default JOBS_LOST_AFTER_SECONDS). Beat runs this every minute."""
    cutoff = timezone.now() - (
        timedelta(seconds=lost_after) if lost_after is not None else _lost_after()
    )
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    report = ReapReport()
    # Parts first: a job whose parts are alive or waiting in the queue gets a fresh heartbeat
    # here, so the loop below reaps only a job lost before it handed its work on.
    for hook in sorted({entry.reap_parts for entry in JOB_TASKS.values() if entry.reap_parts}):
        report.parts_requeued.extend(import_string(hook)(cutoff=cutoff))
    ids = Job.objects.filter(silent, status=JobStatus.RUNNING).values_list("pk", flat=True)
    for job_id in list(ids):
        with transaction.atomic():
            job = (
                Job.objects.select_for_update(skip_locked=True)
                .filter(silent, pk=job_id, status=JobStatus.RUNNING)
                .first()
            )
            if job is None:  # it beat, finished, or a worker is claiming it right now
                continue
            since = _last_sign_of_life(job).isoformat(timespec="seconds")
            lost = f"worker lost: no heartbeat since {since} (worker {job.worker or '?'})"
            if JOB_TASKS[job.kind].resumable and job.attempts < settings.JOBS_MAX_ATTEMPTS:
                job.status = JobStatus.QUEUED
                job.error = f"{lost}; re-queued"
                job.save(update_fields=["status", "error"])
                job_enqueue(job=job)
                report.requeued.append(job.pk)
            else:
                job.status = JobStatus.FAILED
                job.error = lost
                job.finished_at = timezone.now()
                job.save(update_fields=["status", "error", "finished_at"])
                _job_abandoned(job)
                report.failed.append(job.pk)
            logger.warning("job %s: %s", job.pk, job.error)
    return report


def _job_abandoned(job: Job) -> None:
    """Run the kind's clean-up for a job finished by someone other than its worker. A worker
    still alive stops at its next progress write and cleans up the same way itself."""
    hook = JOB_TASKS[job.kind].on_abandon
    if hook:
        import_string(hook)(job=job)


def job_mark_failed(*, job_id: int, user: AbstractBaseUser | AnonymousUser | None = None) -> Job:
    """The admin's verdict on a queued or running job. A worker still running it stops at its
    next progress write and does not overwrite this."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status in FINISHED:
            raise JobError(f"{job} already {job.get_status_display().lower()}")
        who = getattr(user, "username", "") or "an admin"
        job.error = f"marked failed by {who} while {job.get_status_display().lower()}"
        job.status = JobStatus.FAILED
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "error", "finished_at"])
        _job_abandoned(job)
    return job


def job_cancel(*, job: Job) -> bool:
    """Ask a queued or running job to stop; returns whether it was still cancellable. A queued
    job never starts; a running one stops at its next progress write or cancel check (scoring
    and promotion check between chunks), keeping what it stored so far."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status in FINISHED:
            return False
        locked.error = f"cancelled while {locked.get_status_display().lower()}"
        locked.status = JobStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "error", "finished_at"])
        _job_abandoned(locked)
    job.status = JobStatus.CANCELLED
    return True


def job_start_permission(job: Job) -> str:
    """The permission that starts a job of this one's kind (and so retries it)."""
    task = JOB_TASKS[job.kind]
    if task.permission_for:
        return str(import_string(task.permission_for)(job=job))
    return task.permission


def job_retry(*, job_id: int, user: Any = None) -> Job:
    """Queue a failed job again, with its original parameters, or re-send a queued one whose
    message was lost. A running job with a live heartbeat is refused: it is not lost.

    With ``user`` (the admin, an API), retrying needs the permission that starts the job's
    kind (``JobRetryForbidden``), and a limited kind counts toward that user's job limit.
    """
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if user is not None:
            needed = job_start_permission(job)
            if not user.has_perm(needed):
                raise JobRetryForbidden(f"retrying {job} needs the {needed} permission")
            if job.status != JobStatus.QUEUED:
                job_limits_check(kind=job.kind, user=user, exclude=job.pk)
        if job.status == JobStatus.SUCCEEDED:
            raise JobError(f"{job} succeeded; start a new job instead")
        if job.status == JobStatus.RUNNING and _last_sign_of_life(job) > (
            timezone.now() - _lost_after()
        ):
            raise JobError(f"{job} is running on {job.worker or 'a worker'} (live heartbeat)")
        job.status = JobStatus.QUEUED
        job.error = ""
        job.finished_at = None
        job.progress_done = 0
        job.save(update_fields=["status", "error", "finished_at", "progress_done"])
        job_enqueue(job=job)
    return job
