"""Submitting an annotator's step ratings: validation, PRM800K-shaped storage, idempotency."""

import datetime
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from labeling import queries, rawsql
from labeling.models import (
    AnnotatorProfile,
    FinishReason,
    Label,
    Lease,
    ReleasedLease,
    Solution,
    Task,
    TaskKind,
    qc_draw_new,
)
from labeling.services.quality import quality_settings_get
from labeling.services.queue import (
    AnnotatorIneligible,
    TaskNotLeased,
    TaskUnavailable,
    one_statement,
)
from labeling.services.screening import annotator_screening_update

logger = logging.getLogger(__name__)

MAX_TOTAL_TIME_MS = 2**31 - 1  # the column is a PositiveIntegerField


@dataclass(frozen=True)
class SubmitResult:
    label: Label
    created: bool  # False when this was a retry of an earlier submit with the same key


def label_validate(
    *,
    steps: Sequence[str],
    ratings: Sequence[int],
    flags: Sequence[bool],
    human_completion: str | None,
    finish_reason: str,
    finish_note: str,
    total_time_ms: int,
) -> None:
    """Raise ``ValidationError({field: [message]})`` unless the submission follows phase 2.

    Ratings cover the steps in order as far as the annotator got: ``found_error`` ends on the
    first -1, ``solution`` rates every step with no -1, ``bad_problem``/``give_up`` stop anywhere
    (a -1 only as the last rating) and need a note.
    """
    errors: dict[str, list[str]] = {}
    if finish_reason not in FinishReason.values:
        errors["finish_reason"] = [f"must be one of {', '.join(FinishReason.values)}"]
    for index, rating in enumerate(ratings):
        if isinstance(rating, bool) or rating not in (-1, 0, 1):
            errors["ratings"] = [f"rating {index + 1} is {rating!r}; each must be -1, 0 or 1"]
            break
    if "ratings" not in errors:
        errors.update(_phase2_errors(steps=steps, ratings=ratings, finish_reason=finish_reason))
    if len(flags) != len(ratings):
        errors["flags"] = [f"has {len(flags)} entries for {len(ratings)} ratings"]
    if human_completion is not None and (not ratings or ratings[-1] != -1):
        errors["human_completion"] = ["a corrected step goes with a -1 rating on the last step"]
    if (
        finish_reason in (FinishReason.BAD_PROBLEM, FinishReason.GIVE_UP)
        and not finish_note.strip()
    ):
        errors["finish_note"] = [f"a reason is required for {finish_reason}"]
    if not 0 <= total_time_ms <= MAX_TOTAL_TIME_MS:
        errors["total_time_ms"] = [f"must be between 0 and {MAX_TOTAL_TIME_MS}"]
    if errors:
        raise ValidationError(errors)


def _phase2_errors(
    *, steps: Sequence[str], ratings: Sequence[int], finish_reason: str
) -> dict[str, list[str]]:
    if len(ratings) > len(steps):
        return {"ratings": [f"has {len(ratings)} ratings for a solution of {len(steps)} steps"]}
    negatives = [index for index, rating in enumerate(ratings) if rating == -1]
    if negatives and negatives[0] != len(ratings) - 1:
        return {
            "ratings": [
                f"step {negatives[0] + 1} is rated -1: rating stops at the first negative step"
            ]
        }
    if finish_reason == FinishReason.FOUND_ERROR and not negatives:
        return {"ratings": ["found_error needs the last rating to be -1"]}
    if finish_reason == FinishReason.SOLUTION:
        if negatives:
            return {"ratings": ["solution cannot contain a -1 rating"]}
        if len(ratings) != len(steps):
            return {"ratings": [f"solution needs all {len(steps)} steps rated, got {len(ratings)}"]}
    return {}


def label_steps_build(
    *,
    steps: Sequence[str],
    ratings: Sequence[int],
    flags: Sequence[bool],
    human_completion: str | None,
) -> list[dict[str, object]]:
    """PRM800K ``label.steps`` for the rated prefix: one completion per step, chosen index 0.

    A corrected step is kept beside the rated model step (as phase-2 records do), so the
    trajectory still reads the original completion.
    """
    built: list[dict[str, object]] = [
        {
            "completions": [{"text": steps[index], "rating": rating, "flagged": bool(flag)}],
            "human_completion": None,
            "chosen_completion": 0,
        }
        for index, (rating, flag) in enumerate(zip(ratings, flags, strict=True))
    ]
    if human_completion is not None and built:
        built[-1]["human_completion"] = {
            "text": human_completion,
            "rating": None,
            "source": "human",
            "flagged": False,
            "corrected_rating": None,
        }
    return built


class IdempotencyKeyReused(Exception):
    """The key already names a different submission (422): never a retry. The page makes one
    key per task, so this is the same task labeled twice (a second tab or a restored draft);
    the message is the annotator's, the key and label ids go to the log."""

    code = "already_submitted"


def _same_submission(
    label: Label,
    *,
    task_id: int,
    ratings: list[int],
    flags: list[bool],
    human_completion: str | None,
    finish_reason: str,
    finish_note: str,
    total_time_ms: int,
    started_at: datetime.datetime | None,
) -> bool:
    """Whether a retry carries what the stored label was made from (field by field)."""
    steps: list[dict] = label.steps or []
    last_human = steps[-1].get("human_completion") if steps else None
    return (
        label.task_id == task_id
        and list(label.ratings) == ratings
        and [bool(step["completions"][0].get("flagged")) for step in steps] == flags
        and (last_human or {}).get("text") == human_completion
        and label.finish_reason == finish_reason
        and label.finish_note == finish_note
        and label.total_time_ms == total_time_ms
        and label.started_at == started_at
    )


# A page makes one key per task; another task's key means a broken client, not a person.
_KEY_CLASH = (
    "this label was sent under the name of another one, so it was not saved; reload the page "
    "and label the task again"
)


def _retry_result(label: Label, *, key: str, **submission: Any) -> SubmitResult:
    if not _same_submission(label, **submission):
        logger.info(
            "submit refused: key %r already names label %s on task %s (a different submission)",
            key,
            label.pk,
            label.task_id,
        )
        if label.task_id != submission["task_id"]:
            raise IdempotencyKeyReused(_KEY_CLASH)
        raise IdempotencyKeyReused(
            f"you already submitted task {label.task_id} (perhaps in another tab or window); "
            "the label saved first is kept and this one was not saved"
        )
    return SubmitResult(label=label, created=False)


def label_submit(
    *,
    annotator: User,
    task_id: int,
    idempotency_key: str,
    ratings: Sequence[int],
    flags: Sequence[bool] | None,
    human_completion: str | None,
    finish_reason: str,
    finish_note: str = "",
    total_time_ms: int,
    started_at: datetime.datetime | None,
) -> SubmitResult:
    """Store the annotator's label for the task and free their lease, exactly once per key.

    Only the holder of the task's lease may submit: a live lease, one past its expiry that the
    sweep has not taken back yet, or one it took back (``ReleasedLease``, kept for
    RELEASED_LEASE_HOURS), so work done on a sleeping laptop is not thrown away. Late work is
    kept (decision 0003): in a free slot if the task has one, otherwise as a *late* label
    beyond the overlap (``Label.late``, counted in ``Task.late_count``). The annotator must be
    eligible: not paused, not failed at screening, and screening questions only while being
    screened (or, for staff, while the question has no gold label yet).

    Raises ``ValidationError`` (bad input, nothing written), ``TaskNotLeased`` (no such task,
    or not leased to this annotator, nor taken back from them within RELEASED_LEASE_HOURS),
    ``TaskUnavailable`` (this annotator already labeled the task under another key),
    ``AnnotatorIneligible``, or ``IdempotencyKeyReused`` (the key names a different submission).
    """
    key = idempotency_key.strip()
    if not key or len(key) > 64:
        raise ValidationError({"idempotency_key": ["must be 1 to 64 characters"]})
    flags = [bool(flag) for flag in flags] if flags is not None else [False] * len(ratings)
    human_completion = human_completion if human_completion and human_completion.strip() else None
    submission: dict[str, Any] = {
        "task_id": task_id,
        "ratings": list(ratings),
        "flags": flags,
        "human_completion": human_completion,
        "finish_reason": finish_reason,
        "finish_note": finish_note.strip(),
        "total_time_ms": total_time_ms,
        "started_at": started_at,
    }
    try:
        result = _label_create(annotator=annotator, key=key, submission=submission)
    except IntegrityError:
        # The key is already taken: by a twin of this request (hand back its label) or by a
        # different submission (refused).
        existing = Label.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        if existing.annotator_id != annotator.pk:
            logger.warning(
                "submit refused: key %r already names label %s of another annotator",
                key,
                existing.pk,
            )
            raise IdempotencyKeyReused(_KEY_CLASH) from None
        return _retry_result(existing, key=key, **submission)
    if result.created and result.label.task.kind == TaskKind.SCREENING:
        annotator_screening_update(annotator=annotator)
    return result


def _eligibility_check(*, profile: AnnotatorProfile, task: Task, annotator: User) -> None:
    if profile.is_paused:
        raise AnnotatorIneligible("your labeling is paused; ask an admin", code="paused")
    if profile.screening_passed is False:
        raise AnnotatorIneligible("you did not pass screening", code="screening_failed")
    if (
        task.kind == TaskKind.SCREENING
        and task.gold_label_id is not None
        and profile.screening_passed is not None
    ):
        raise AnnotatorIneligible(
            "screening questions are only for annotators being screened", code="not_screening"
        )
    if (
        profile.screening_passed is None
        and task.screening_open  # type: ignore[attr-defined]
        and (
            task.kind == TaskKind.NORMAL
            or (task.kind == TaskKind.QUALITY_CONTROL and task.gold_label_id is not None)
        )
    ):
        _screening_pending_check(annotator=annotator)


def _screening_pending_check(*, annotator: User) -> None:
    """Screening blocks a submit as it blocks a claim: a lease taken before screening was
    switched on is not a way around it. Decided now if it can be (every question answered,
    or an author of gold labels); otherwise refused until the screening questions are done."""
    quality = quality_settings_get()
    if not queries.screening_tasks_required(quality=quality):
        return
    verdict = annotator_screening_update(annotator=annotator, quality=quality)
    if verdict is None:
        raise AnnotatorIneligible(
            "answer the screening questions first: your labels are taken once you pass screening",
            code="screening_pending",
        )
    if verdict is False:
        raise AnnotatorIneligible("you did not pass screening", code="screening_failed")


def _label_create(*, annotator: User, key: str, submission: dict[str, Any]) -> SubmitResult:
    if connection.vendor == "postgresql":
        # Two round trips and no transaction: an unlocked read to validate against, then
        # one statement that re-checks the lease under the task's row lock and writes.
        prepared = _submit_prepare(annotator=annotator, key=key, submission=submission)
        if isinstance(prepared, SubmitResult):
            return prepared
        if not _label_write_one_statement(prepared):
            return _lost_race(annotator=annotator, key=key, submission=submission)
    else:
        with transaction.atomic():
            prepared = _submit_prepare(annotator=annotator, key=key, submission=submission)
            if isinstance(prepared, SubmitResult):
                return prepared
            _label_write(prepared)
    return _written(prepared)


def _written(prepared: "_Prepared") -> SubmitResult:
    # The same change the write made to the row, on the copy this request goes on using.
    profile = prepared.profile
    if prepared.task.kind == TaskKind.QUALITY_CONTROL:
        profile.labels_since_qc = 0
        profile.qc_draw = prepared.qc_draw
    elif prepared.task.kind == TaskKind.NORMAL:
        profile.labels_since_qc += 1
    return SubmitResult(label=prepared.label, created=True)


@dataclass(frozen=True)
class _Prepared:
    task: Task
    label: Label  # not saved yet
    profile: AnnotatorProfile
    holds_lease: bool
    # The annotator's next QC position, taken up when this label is a QC question's.
    qc_draw: float = field(default_factory=qc_draw_new)


_TASK_FOR_SUBMIT_SQL = f"""
SELECT {rawsql.columns(Task, "t")}, s.steps,
    (SELECT id FROM labeling_label WHERE task_id = t.id AND annotator_id = %s),
    EXISTS (SELECT 1 FROM labeling_lease WHERE task_id = t.id AND annotator_id = %s),
    EXISTS (SELECT 1 FROM labeling_releasedlease WHERE task_id = t.id AND annotator_id = %s),
    EXISTS (SELECT 1 FROM labeling_task WHERE kind = 'screening' AND gold_label_id IS NOT NULL)
FROM labeling_task t JOIN labeling_solution s ON s.id = t.solution_id
WHERE t.id = %s
"""


def _task_for_submit(*, task_id: int, annotator: User) -> Task | None:
    """The task with its steps and this annotator's label id, lease and released lease on it
    (hand-written: see labeling.rawsql). Not locked: the write re-checks under the lock
    (PostgreSQL) or runs in the same IMMEDIATE transaction (SQLite)."""
    with connection.cursor() as cursor:
        cursor.execute(_TASK_FOR_SUBMIT_SQL, [annotator.pk, annotator.pk, annotator.pk, task_id])
        row = cursor.fetchone()
    if row is None:
        return None
    width = rawsql.width(Task)
    task = rawsql.instance(Task, row[:width])
    steps, label_id, lease, released, screening_open = row[width:]
    steps_field: Any = Solution._meta.get_field("steps")
    task.solution = Solution.from_db(
        connection.alias,
        ["id", "problem_id", "steps"],
        [task.solution_id, None, steps_field.from_db_value(steps, None, connection)],
    )
    task.my_label_id = label_id  # type: ignore[attr-defined]
    task.my_lease = bool(lease)  # type: ignore[attr-defined]
    task.my_released_lease = bool(released)  # type: ignore[attr-defined]
    task.screening_open = bool(screening_open)  # type: ignore[attr-defined]
    return task


def _submit_prepare(
    *, annotator: User, key: str, submission: dict[str, Any]
) -> _Prepared | SubmitResult:
    """Read the task with this annotator's label, lease and released lease on it (one query),
    check them, validate the ratings, and build the label; or the earlier label of a retry."""
    task_id = submission["task_id"]
    task = _task_for_submit(task_id=task_id, annotator=annotator)
    if task is None:
        raise TaskNotLeased(f"task {task_id} does not exist")
    # A twin request's committed label shows here; one still in flight meets the write's
    # checks (SQLite: the same IMMEDIATE transaction; PostgreSQL: the task lock and lease).
    if task.my_label_id is not None:  # type: ignore[attr-defined]
        label = Label.objects.get(pk=task.my_label_id)  # type: ignore[attr-defined]
        if label.idempotency_key != key:
            raise TaskUnavailable(f"you have already labeled task {task_id}")
        return _retry_result(label, key=key, **submission)
    profile = queries.annotator_profile_get(user=annotator)
    holds_lease: bool = task.my_lease  # type: ignore[attr-defined]
    if not holds_lease and not task.my_released_lease:  # type: ignore[attr-defined]
        raise TaskNotLeased(f"task {task_id} is not leased to you")
    _eligibility_check(profile=profile, task=task, annotator=annotator)
    steps = task.solution.steps
    label_validate(
        steps=steps,
        ratings=submission["ratings"],
        flags=submission["flags"],
        human_completion=submission["human_completion"],
        finish_reason=submission["finish_reason"],
        finish_note=submission["finish_note"],
        total_time_ms=submission["total_time_ms"],
    )
    label = Label(
        task=task,
        annotator=annotator,
        labeler=profile.labeler,
        steps=label_steps_build(
            steps=steps,
            ratings=submission["ratings"],
            flags=submission["flags"],
            human_completion=submission["human_completion"],
        ),
        ratings=submission["ratings"],
        finish_reason=submission["finish_reason"],
        finish_note=submission["finish_note"],
        total_time_ms=submission["total_time_ms"],
        started_at=submission["started_at"],
        created_at=timezone.now(),
        idempotency_key=key,
        late=not holds_lease and _no_free_slot(task),
    )
    return _Prepared(task=task, label=label, profile=profile, holds_lease=holds_lease)


def _no_free_slot(task: Task) -> bool:
    """A taken-back lease's work goes in a free slot when there is one, else it is late.
    Screening and QC questions have no slot limit (everyone answers each once)."""
    return (
        task.kind == TaskKind.NORMAL and task.label_count + task.lease_count >= task.required_labels
    )


def _lost_race(*, annotator: User, key: str, submission: dict[str, Any]) -> SubmitResult:
    """The write found the lease gone since the read: a twin request, a skip, or the sweep,
    whose released lease this statement's snapshot could not see yet. Read again and write
    once more; a second miss means the task changed under us twice, which is refused."""
    prepared = _submit_prepare(annotator=annotator, key=key, submission=submission)
    if isinstance(prepared, SubmitResult):
        return prepared  # the twin's label
    if _label_write_one_statement(prepared):
        return _written(prepared)
    raise TaskUnavailable(
        f"task {prepared.task.pk} changed while saving; submit again", code="task_changed"
    )


def _label_write(prepared: _Prepared) -> None:
    label, task, holds_lease = prepared.label, prepared.task, prepared.holds_lease
    label.save(force_insert=True)
    mine = {"task": task, "annotator_id": label.annotator_id}
    released = Lease.objects.filter(**mine).delete()[0] if holds_lease else 0
    if not holds_lease:
        ReleasedLease.objects.filter(**mine).delete()
    counter = "late_count" if label.late else "label_count"
    Task.objects.filter(pk=task.pk).update(
        **{counter: F(counter) + 1}, lease_count=F("lease_count") - released
    )
    profiles = AnnotatorProfile.objects.filter(user=label.annotator)
    if task.kind == TaskKind.QUALITY_CONTROL:
        profiles.update(labels_since_qc=0, qc_draw=prepared.qc_draw)
    elif task.kind == TaskKind.NORMAL:
        profiles.update(labels_since_qc=F("labels_since_qc") + 1)


# Lock order as everywhere in the queue: the task row (``locked``), then the lease rows. Each
# sub-statement reads the one before it, which fixes the order they run in. ``locked`` reads
# the row as it is once locked (FOR UPDATE returns the newest version), so whether the task has
# a free slot is decided on current counts.
_SUBMIT_SQL = """
WITH locked AS (
    SELECT id, kind = 'normal' AND label_count + lease_count >= required_labels AS no_free_slot
    FROM labeling_task WHERE id = %(task)s FOR UPDATE
),
gone AS (
    DELETE FROM labeling_lease
    WHERE task_id = (SELECT id FROM locked) AND annotator_id = %(user)s RETURNING id
),
-- The lease holder, or the one it was taken back from: in a free slot, else late.
admitted AS (
    SELECT id, NOT EXISTS (SELECT 1 FROM gone) AND no_free_slot AS late
    FROM locked
    WHERE EXISTS (SELECT 1 FROM gone)
       OR EXISTS (SELECT 1 FROM labeling_releasedlease
                  WHERE task_id = %(task)s AND annotator_id = %(user)s)
),
counted AS (
    UPDATE labeling_task t
    SET label_count = t.label_count + CASE WHEN a.late THEN 0 ELSE 1 END,
        late_count = t.late_count + CASE WHEN a.late THEN 1 ELSE 0 END,
        lease_count = t.lease_count - (SELECT count(*) FROM gone)
    FROM admitted a WHERE t.id = a.id
    RETURNING t.id, a.late
),
labeled AS (
    INSERT INTO labeling_label (task_id, annotator_id, labeler, steps, ratings, finish_reason,
        finish_note, total_time_ms, started_at, created_at, idempotency_key, is_gold, late)
    SELECT id, %(user)s, %(labeler)s, %(steps)s::jsonb, %(ratings)s::jsonb, %(finish_reason)s,
        %(finish_note)s, %(total_time_ms)s, %(started_at)s, %(created_at)s, %(key)s, false, late
    FROM counted
    RETURNING id, late
),
forgotten AS (
    DELETE FROM labeling_releasedlease
    WHERE task_id = %(task)s AND annotator_id = %(user)s AND EXISTS (SELECT 1 FROM labeled)
),
spaced AS (
    UPDATE labeling_annotatorprofile SET labels_since_qc = CASE %(kind)s
        WHEN 'quality_control' THEN 0 WHEN 'normal' THEN labels_since_qc + 1
        ELSE labels_since_qc END,
        qc_draw = CASE %(kind)s WHEN 'quality_control' THEN %(qc_draw)s ELSE qc_draw END
    WHERE user_id = %(user)s AND EXISTS (SELECT 1 FROM labeled)
)
SELECT (SELECT id FROM labeled), (SELECT late FROM labeled)
"""


def _label_write_one_statement(prepared: _Prepared) -> bool:
    """PostgreSQL: what :func:`_label_write` does, as one statement that also re-checks that
    the annotator still holds the lease or had it taken back, and decides under the task's lock
    whether the label is late. False when neither holds: nothing was written."""
    label, task = prepared.label, prepared.task
    with one_statement(), connection.cursor() as cursor:
        cursor.execute(
            _SUBMIT_SQL,
            {
                "task": task.pk,
                "user": label.annotator_id,
                "kind": task.kind,
                "labeler": label.labeler,
                "steps": json.dumps(label.steps),
                "ratings": json.dumps(label.ratings),
                "finish_reason": label.finish_reason,
                "finish_note": label.finish_note,
                "total_time_ms": label.total_time_ms,
                "started_at": label.started_at,
                "created_at": label.created_at,
                "key": label.idempotency_key,
                "qc_draw": prepared.qc_draw,
            },
        )
        label_id, late = cursor.fetchone()
    if label_id is None:
        return False
    label.pk = label_id
    label.late = bool(late)
    label._state.adding = False
    return True
