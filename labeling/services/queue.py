"""The leased task queue: claim, heartbeat, skip, lease expiry, and enqueueing candidates.

Concurrency model. ``Task.label_count`` and ``Task.lease_count`` are only changed while the
task row is locked (or by a single atomic ``UPDATE``), and every path that touches a task and
its leases locks the task row *first*, then the lease rows — one lock order, so no deadlocks.
A normal task is open while ``label_count + lease_count < required_labels``; the claim locks the
first open row with ``SKIP LOCKED`` so concurrent claimants fan out over different rows instead
of queueing behind one. On SQLite, ``transaction_mode=IMMEDIATE`` serialises writers instead.
Screening and QC questions are per annotator (everyone labels each once), so they have no slot
limit; the unique (task, annotator) lease is what prevents a double claim there.

Round trips (decision 0009). The annotator's state (profile, "QC due?" counter) comes with the
user from the authentication query; one query reads the quality settings together with the
annotator's live leases; on PostgreSQL one statement then picks, locks, counts and leases the
next normal task (a data-modifying CTE), so a claim is four queries with session auth.
"""

import contextlib
import datetime
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from labeling import queries, rawsql
from labeling.models import (
    Label,
    Lease,
    Problem,
    QualitySettings,
    QueuedBy,
    ReleasedLease,
    SelectionRule,
    Skip,
    Solution,
    Task,
    TaskKind,
)
from labeling.services.quality import qc_gap
from labeling.services.screening import annotator_screening_update

logger = logging.getLogger(__name__)

# Must match the predicate of the ``task_open_normal`` partial index, or PostgreSQL cannot use it.
OPEN_NORMAL = Q(kind=TaskKind.NORMAL, label_count__lt=F("required_labels") - F("lease_count"))
MAX_LIVE_LEASES = 2  # the task on screen plus the one the page prefetched
LAZY_RELEASE_LIMIT = 50  # tasks with expired leases freed by a claim that found nothing
CLAIM_ATTEMPTS = 3  # a lost race on the unique lease only happens to one user's twin requests


class QueueError(Exception):
    """Base for queue outcomes the API maps to HTTP statuses; ``code`` tells the page which."""

    code = "refused"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class TaskNotLeased(QueueError):
    """The task does not exist or is not leased to this annotator, nor was it taken back from
    them recently enough for their work to count (404): work on it is not saved."""

    code = "not_leased"


class TaskUnavailable(QueueError):
    """The task cannot take this label: the annotator labeled it already under another key
    (``already_labeled``), or it changed under the submit twice (``task_changed``: send it
    again) (409)."""

    code = "already_labeled"


class LeaseTakenBack(QueueError):
    """A heartbeat on a lease the sweep took back (409). Work on it is still kept (decision
    0003) until ``kept_until``: in the task's free slot (``taken_back``), or, when others hold
    or filled every slot, as a late label beyond the overlap (``held_by_another``)."""

    def __init__(self, message: str, *, code: str, kept_until: datetime.datetime) -> None:
        super().__init__(message, code=code)
        self.kept_until = kept_until


class AnnotatorIneligible(QueueError):
    """The annotator may not label this task: paused, failed screening, screening still to
    answer, or not being screened (403)."""

    code = "ineligible"


@dataclass(frozen=True)
class Claim:
    task: Task  # with solution and problem loaded
    lease: Lease
    resumed: bool  # the annotator already held this lease (a reload, or the prefetched task)


def _commit_without_flush() -> None:
    """Let this transaction's COMMIT return before its WAL reaches disk (PostgreSQL only).

    Only for lease bookkeeping: a crash can at worst forget a lease, which returns the task to
    the queue. Labels are never written this way. Saves a disk flush per claim.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


def lease_expiry(now: datetime.datetime | None = None) -> datetime.datetime:
    return (now or timezone.now()) + datetime.timedelta(minutes=settings.LEASE_MINUTES)


def task_claim_next(*, annotator: User, exclude: Iterable[int] = ()) -> Claim | None:
    """The annotator's next task with a fresh lease, or their own live lease back; None if none.

    Order of service: a live lease the annotator already holds (not in ``exclude``); screening
    questions until screening is decided; a QC question once the annotator has made their
    randomly drawn ``qc_gap`` of normal labels since the last; then the highest-priority open
    normal task they have not labeled, leased or skipped.
    """
    exclude_ids = {int(task_id) for task_id in exclude}
    claim = _claim_next(annotator=annotator, exclude=exclude_ids)
    # Expired leases are returned lazily only when they stand between this annotator and work:
    # the beat task frees the rest every minute, and a busy queue saves the query.
    if claim is None and leases_release_expired(limit=LAZY_RELEASE_LIMIT):
        claim = _claim_next(annotator=annotator, exclude=exclude_ids)
    return claim


@dataclass(frozen=True)
class _ClaimState:
    quality: QualitySettings
    live: int  # live leases the annotator holds
    resumable: int | None  # the oldest of them not in ``exclude``
    holds_qc: bool
    screening_open: bool  # some screening question has a gold label
    qc_open: bool  # some QC question has a gold label


_CLAIM_STATE_SQL = """
SELECT {quality_columns},
    (SELECT count(*) FROM labeling_lease WHERE annotator_id = %s AND expires_at > %s),
    (SELECT task_id FROM labeling_lease WHERE annotator_id = %s AND expires_at > %s {not_excluded}
     ORDER BY created_at, id LIMIT 1),
    EXISTS (SELECT 1 FROM labeling_lease l JOIN labeling_task t ON t.id = l.task_id
            WHERE l.annotator_id = %s AND l.expires_at > %s AND t.kind = 'quality_control'),
    EXISTS (SELECT 1 FROM labeling_task
            WHERE kind = 'screening' AND gold_label_id IS NOT NULL),
    EXISTS (SELECT 1 FROM labeling_task
            WHERE kind = 'quality_control' AND gold_label_id IS NOT NULL)
FROM labeling_qualitysettings q WHERE q.id = 1
"""


def _placeholders(values: list[int]) -> str:
    return ", ".join(["%s"] * len(values))


def _claim_state(*, annotator: User, exclude: set[int], now: datetime.datetime) -> _ClaimState:
    """The quality settings and the annotator's live leases, in one query (hand-written: see
    labeling.rawsql)."""
    excluded = sorted(exclude)
    sql = _CLAIM_STATE_SQL.format(
        quality_columns=rawsql.columns(QualitySettings, "q"),
        not_excluded=f"AND task_id NOT IN ({', '.join(['%s'] * len(excluded))})"
        if excluded
        else "",
    )
    at = rawsql.datetime_param(now)
    params = [annotator.pk, at, annotator.pk, at, *excluded, annotator.pk, at]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:  # the singleton is created on first use
        QualitySettings.objects.get_or_create(pk=1)
        return _claim_state(annotator=annotator, exclude=exclude, now=now)
    width = rawsql.width(QualitySettings)
    live, resumable, holds_qc, screening_open, qc_open = row[width:]
    return _ClaimState(
        quality=rawsql.instance(QualitySettings, row[:width]),
        live=int(live),
        resumable=resumable,
        holds_qc=bool(holds_qc),
        screening_open=bool(screening_open),
        qc_open=bool(qc_open),
    )


def _claim_next(*, annotator: User, exclude: set[int]) -> Claim | None:
    now = timezone.now()
    profile = queries.annotator_profile_get(user=annotator)
    if profile.is_paused:
        return None
    state = _claim_state(annotator=annotator, exclude=exclude, now=now)
    if state.resumable is not None:
        lease = (
            Lease.objects.filter(annotator=annotator, task_id=state.resumable)
            .select_related("task__solution__problem")
            .first()
        )
        # Screening switched on while the annotator held other work: the screening questions
        # come first (their submit on that work is refused until screening is decided).
        waits = (
            profile.screening_passed is None
            and state.screening_open
            and lease is not None
            and lease.task.kind != TaskKind.SCREENING
            and bool(queries.screening_tasks_required(quality=state.quality))
        )
        if lease is not None and not waits:
            return Claim(task=lease.task, lease=lease, resumed=True)
    if state.live >= MAX_LIVE_LEASES:
        return None

    if queries.user_may_author_gold(annotator):
        # Gold-less QC and screening questions count for nothing until someone writes their
        # answer key: staff who may set gold labels get them first.
        claim = _claim_per_annotator(
            annotator=annotator,
            candidates=Task.objects.filter(
                kind__in=(TaskKind.QUALITY_CONTROL, TaskKind.SCREENING), gold_label__isnull=True
            ),
            exclude=exclude,
        )
        if claim is not None:
            return claim

    quality = state.quality
    passed = profile.screening_passed
    if passed is None and state.screening_open:
        required = queries.screening_tasks_required(quality=quality)
        if required:
            # Authors of gold labels are exempt (they wrote the answer key); decided here.
            passed = (
                annotator_screening_update(annotator=annotator, quality=quality)
                if annotator.is_staff
                else None
            )
        if required and passed is None:
            claim = _claim_per_annotator(
                annotator=annotator,
                candidates=Task.objects.filter(id__in=required),
                exclude=exclude,
            )
            if claim is not None:
                return claim
            # Nothing left to claim: either all are labeled (decide now) or the last ones are
            # leased to this annotator already (wait for their submit).
            passed = annotator_screening_update(annotator=annotator, quality=quality)
            if passed is None:
                return None
    if passed is False:
        return None

    gap = qc_gap(qc_rate=quality.qc_rate, draw=profile.qc_draw)
    if gap is not None and state.qc_open and not state.holds_qc and profile.labels_since_qc >= gap:
        claim = _claim_per_annotator(
            annotator=annotator,
            candidates=Task.objects.filter(kind=TaskKind.QUALITY_CONTROL, gold_label__isnull=False),
            exclude=exclude,
        )
        if claim is not None:
            return claim
    if connection.vendor == "postgresql":
        return _claim_normal_one_statement(annotator=annotator, exclude=exclude)
    return _claim_normal(annotator=annotator, exclude=exclude)


def _not_seen_by(annotator: User) -> Q:
    """Tasks the annotator has not labeled, leased or skipped (each an index probe)."""
    return (
        ~Q(Exists(Label.objects.filter(task=OuterRef("pk"), annotator=annotator)))
        & ~Q(Exists(Lease.objects.filter(task=OuterRef("pk"), annotator=annotator)))
        & ~Q(Exists(Skip.objects.filter(task=OuterRef("pk"), annotator=annotator)))
    )


def _claim_normal(*, annotator: User, exclude: set[int]) -> Claim | None:
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with transaction.atomic():
                candidates = Task.objects.filter(OPEN_NORMAL).filter(_not_seen_by(annotator))
                if exclude:
                    candidates = candidates.exclude(pk__in=exclude)
                task = (
                    candidates.select_related("solution__problem")
                    .select_for_update(skip_locked=True, of=("self",))
                    .order_by("-priority", "id")
                    .first()
                )
                if task is None:
                    return None
                _commit_without_flush()
                return _lease_create(task=task, annotator=annotator)
        except IntegrityError:
            # The same annotator's concurrent request leased this task first; try the next.
            continue
    return None


_TASK_COLUMNS = [str(field.column) for field in Task._meta.concrete_fields]
_CLAIM_SQL = """
WITH picked AS ({pick}),
bumped AS (
    UPDATE labeling_task SET lease_count = lease_count + 1
    WHERE id IN (SELECT id FROM picked) RETURNING {task_columns}
),
leased AS (
    INSERT INTO labeling_lease (task_id, annotator_id, created_at, expires_at)
    SELECT id, %s, %s, %s FROM picked RETURNING id, task_id, created_at, expires_at
),
-- Lease bookkeeping only: see _commit_without_flush.
relaxed AS (SELECT set_config('synchronous_commit', 'off', true))
SELECT {bumped_columns}, leased.id, leased.created_at, leased.expires_at,
       s.steps, s.problem_id, p.problem, p.answer
FROM bumped
JOIN leased ON leased.task_id = bumped.id
JOIN labeling_solution s ON s.id = bumped.solution_id
JOIN labeling_problem p ON p.id = s.problem_id
CROSS JOIN relaxed
"""


def one_statement() -> Any:
    """No transaction for a single statement (it is atomic by itself): a BEGIN and a COMMIT
    are two round trips. Inside an outer transaction (tests, callers) a savepoint keeps a
    failed statement from poisoning it."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


# OPEN_NORMAL and _not_seen_by as SQL; the first two conditions are the partial index's
# predicate, written the same way so PostgreSQL uses task_open_normal.
_PICK_SQL = """
SELECT t.id FROM labeling_task t
WHERE t.kind = 'normal' AND t.label_count < (t.required_labels - t.lease_count)
  AND NOT EXISTS (SELECT 1 FROM labeling_label WHERE task_id = t.id AND annotator_id = %s)
  AND NOT EXISTS (SELECT 1 FROM labeling_lease WHERE task_id = t.id AND annotator_id = %s)
  AND NOT EXISTS (SELECT 1 FROM labeling_skip WHERE task_id = t.id AND annotator_id = %s)
  {not_excluded}
ORDER BY t.priority DESC, t.id
LIMIT 1
FOR UPDATE OF t SKIP LOCKED
"""


def _claim_normal_one_statement(*, annotator: User, exclude: set[int]) -> Claim | None:
    """PostgreSQL: pick (``FOR UPDATE SKIP LOCKED``), count, lease and read in one statement,
    with no transaction around it (it is atomic by itself).

    The same rows and locks as :func:`_claim_normal`, which SQLite uses (it has no
    data-modifying CTEs).
    """
    excluded = sorted(exclude)
    pick = _PICK_SQL.format(
        not_excluded=f"AND t.id NOT IN ({_placeholders(excluded)})" if excluded else ""
    )
    sql = _CLAIM_SQL.format(
        pick=pick,
        task_columns=", ".join(_TASK_COLUMNS),
        bumped_columns=", ".join(f"bumped.{column}" for column in _TASK_COLUMNS),
    )
    now = timezone.now()
    params = [annotator.pk, annotator.pk, annotator.pk, *excluded]
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with one_statement(), connection.cursor() as cursor:
                cursor.execute(sql, [*params, annotator.pk, now, lease_expiry(now)])
                row = cursor.fetchone()
        except IntegrityError:
            continue  # the same annotator's twin request leased this task first
        if row is None:
            return None
        return _claim_from_row(row, annotator=annotator)
    return None


def _json_value(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _claim_from_row(row: tuple[Any, ...], *, annotator: User) -> Claim:
    width = len(_TASK_COLUMNS)
    task = Task.from_db(
        connection.alias, [f.attname for f in Task._meta.concrete_fields], row[:width]
    )
    lease_id, created_at, expires_at, steps, problem_id, problem_text, answer = row[width:]
    problem = Problem.from_db(
        connection.alias, ["id", "problem", "answer"], [problem_id, problem_text, answer]
    )
    solution = Solution.from_db(
        connection.alias,
        ["id", "problem_id", "steps"],
        [task.solution_id, problem_id, _json_value(steps)],
    )
    solution.problem = problem
    task.solution = solution
    lease = Lease(
        id=lease_id, task=task, annotator=annotator, created_at=created_at, expires_at=expires_at
    )
    lease._state.adding = False
    return Claim(task=task, lease=lease, resumed=False)


def _claim_per_annotator(
    *, annotator: User, candidates: QuerySet[Task], exclude: set[int]
) -> Claim | None:
    # No row lock: these questions have no slot limit, and the unique (task, annotator) lease
    # stops one annotator's twin requests from both taking the same one.
    for _ in range(CLAIM_ATTEMPTS):
        available = candidates.filter(_not_seen_by(annotator))
        if exclude:
            available = available.exclude(pk__in=exclude)
        task = available.select_related("solution__problem").order_by("-priority", "id").first()
        if task is None:
            return None
        try:
            with transaction.atomic():
                _commit_without_flush()
                return _lease_create(task=task, annotator=annotator)
        except IntegrityError:
            continue
    return None


def _lease_create(*, task: Task, annotator: User) -> Claim:
    lease = Lease.objects.create(task=task, annotator=annotator, expires_at=lease_expiry())
    Task.objects.filter(pk=task.pk).update(lease_count=F("lease_count") + 1)
    task.lease_count += 1
    return Claim(task=task, lease=lease, resumed=False)


def lease_heartbeat(*, annotator: User, task_id: int) -> datetime.datetime:
    """Extend the annotator's lease on the task; returns the new expiry.

    A lease past its expiry that has not been released yet still holds its slot, so it is
    extended too. Without a lease, says why (``_lease_lost``): ``TaskUnavailable`` (labeled
    already), ``LeaseTakenBack`` (taken back; a submit is still kept, decision 0003) or
    ``TaskNotLeased`` (a submit would be refused).
    """
    expires_at = lease_expiry()
    if not Lease.objects.filter(task_id=task_id, annotator=annotator).update(expires_at=expires_at):
        _lease_lost(annotator=annotator, task_id=task_id)
    return expires_at


def _lease_lost(*, annotator: User, task_id: int) -> None:
    """Why the annotator no longer holds the task, as the exception the page acts on: they
    labeled it already (in another tab, say), it was taken back but their work still counts,
    or it is gone for good."""
    if Label.objects.filter(task_id=task_id, annotator=annotator).exists():
        raise TaskUnavailable(f"you have already labeled task {task_id}")
    # The submit's rule: a taken-back lease counts until the sweep forgets it.
    released = ReleasedLease.objects.filter(task_id=task_id, annotator=annotator).first()
    task = Task.objects.filter(pk=task_id).first()
    if task is None:
        raise TaskNotLeased(f"task {task_id} does not exist")
    if released is None:
        raise TaskNotLeased(
            f"your hold on task {task_id} ran out too long ago: a label for it would not be saved"
        )
    kept_until = released.released_at + datetime.timedelta(hours=settings.RELEASED_LEASE_HOURS)
    if task.kind == TaskKind.NORMAL and task.label_count + task.lease_count >= task.required_labels:
        raise LeaseTakenBack(
            f"your hold on task {task_id} ran out and another annotator has it now; your "
            "work is still kept: submit it and it is saved as an extra label",
            code="held_by_another",
            kept_until=kept_until,
        )
    raise LeaseTakenBack(
        f"your hold on task {task_id} ran out, but the task still needs a label: submit it "
        "and your work is saved",
        code="taken_back",
        kept_until=kept_until,
    )


@transaction.atomic
def task_skip(*, annotator: User, task_id: int) -> None:
    """Give the task back; the annotator is not offered it again (screening ones excepted)."""
    task = Task.objects.select_for_update().filter(pk=task_id).first()
    if task is None:
        raise TaskNotLeased(f"task {task_id} is not leased to you")
    _commit_without_flush()
    deleted, _ = Lease.objects.filter(task=task, annotator=annotator).delete()
    if not deleted:
        raise TaskNotLeased(f"task {task_id} is not leased to you")
    Task.objects.filter(pk=task.pk).update(lease_count=F("lease_count") - deleted)
    # Screening questions must all be answered, so skipping one only postpones it.
    if task.kind != TaskKind.SCREENING:
        Skip.objects.get_or_create(task=task, annotator=annotator)


def leases_release_expired(*, now: datetime.datetime | None = None, limit: int = 10_000) -> int:
    """Delete leases past their expiry and give their slots back; returns leases released.

    One short transaction per task, locking the task row first (the queue's lock order); a task
    locked by someone else right now is left for the next pass rather than waited on.
    """
    now = now or timezone.now()
    task_ids = sorted(
        set(
            Lease.objects.filter(expires_at__lte=now)
            .order_by("expires_at")
            .values_list("task_id", flat=True)[:limit]
        )
    )
    released = 0
    for task_id in task_ids:
        with transaction.atomic():
            locked = Task.objects.select_for_update(skip_locked=True).filter(pk=task_id)
            if not locked.values_list("pk", flat=True).first():
                continue
            _commit_without_flush()
            expired = Lease.objects.filter(task_id=task_id, expires_at__lte=now)
            holders = list(expired.values_list("annotator_id", flat=True))
            deleted, _ = expired.delete()
            if deleted:
                Task.objects.filter(pk=task_id).update(lease_count=F("lease_count") - deleted)
                released += deleted
                # Their work may still arrive (a laptop waking up): remember whose it was.
                ReleasedLease.objects.bulk_create(
                    [
                        ReleasedLease(task_id=task_id, annotator_id=holder, released_at=now)
                        for holder in holders
                    ],
                    ignore_conflicts=True,
                )
    forget_before = now - datetime.timedelta(hours=settings.RELEASED_LEASE_HOURS)
    ReleasedLease.objects.filter(released_at__lt=forget_before).delete()
    if released:
        logger.info("released %d expired leases on %d tasks", released, len(task_ids))
    return released


PriorityFrom = Literal["score", "zero"]
ENQUEUE_BATCH = 5_000


def tasks_enqueue(
    *,
    solution_ids: Iterable[int],
    generation: int | None,
    overlap: int = 1,
    kind: str = TaskKind.NORMAL,
    priority_from: PriorityFrom = "score",
    scores: queries.ScoreLookup | None = None,
    queued_by: str = QueuedBy.MANUAL,
) -> int:
    """Queue candidate solutions for labeling; returns how many tasks were created.

    A solution already queued with the same kind and generation is left as it is. ``scores``
    gives each solution's score, asked per batch of ids (the front doors pass
    ``queries.queue_scores``: the active selector's); it is recorded as ``queued_score`` and,
    with ``priority_from="score"``, is the priority too; with ``"zero"`` every task gets
    priority 0. Without ``scores`` tasks are queued unscored, at priority 0.
    ``queued_by`` says how the ids were chosen: by hand unless the caller drew them uniformly
    (only uniform tasks on reserved problems feed the evaluation set; their ``rule`` says
    ``uniform`` too, a hand-picked task's stays blank).
    Unknown solution ids are an error and nothing is queued.
    """
    if overlap < 1:
        raise ValidationError({"overlap": ["must be at least 1"]})
    if kind not in TaskKind.values:
        raise ValidationError({"kind": [f"must be one of {', '.join(TaskKind.values)}"]})
    if priority_from not in ("score", "zero"):
        raise ValidationError({"priority_from": ["must be 'score' or 'zero'"]})
    if queued_by not in QueuedBy.values:
        raise ValidationError({"queued_by": [f"must be one of {', '.join(QueuedBy.values)}"]})
    wanted = sorted({int(solution_id) for solution_id in solution_ids})
    created = 0
    with transaction.atomic():
        for start in range(0, len(wanted), ENQUEUE_BATCH):
            batch = wanted[start : start + ENQUEUE_BATCH]
            found = set(Solution.objects.filter(pk__in=batch).values_list("pk", flat=True))
            missing = [solution_id for solution_id in batch if solution_id not in found]
            if missing:
                shown = ", ".join(map(str, missing[:10]))
                raise ValidationError({"solution_ids": [f"no such solution: {shown}"]})
            queued = Task.objects.filter(solution_id__in=batch, kind=kind)
            queued = (
                queued.filter(generation__isnull=True)
                if generation is None
                else queued.filter(generation=generation)
            )
            already = set(queued.values_list("solution_id", flat=True))
            known = scores(batch) if scores is not None else {}
            tasks = [
                Task(
                    solution_id=solution_id,
                    kind=kind,
                    generation=generation,
                    required_labels=overlap if kind == TaskKind.NORMAL else 1,
                    queued_score=known.get(solution_id),
                    priority=known.get(solution_id, 0.0) if priority_from == "score" else 0.0,
                    queued_by=queued_by,
                    # A uniform draw is a selection rule too; by hand, nothing chose a rule.
                    rule=SelectionRule.UNIFORM if queued_by == QueuedBy.UNIFORM else "",
                )
                for solution_id in batch
                if solution_id not in already
            ]
            Task.objects.bulk_create(tasks, ignore_conflicts=True)
            created += len(tasks)
    return created
