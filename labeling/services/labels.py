"""Submitting an annotator's step ratings: validation, PRM800K-shaped storage, idempotency."""

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from labeling import queries
from labeling.models import FinishReason, Label, Lease, Task, TaskKind
from labeling.services.quality import annotator_screening_update
from labeling.services.queue import TaskNotLeased, TaskUnavailable

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


def _label_for_key(*, annotator: User, task_id: int, idempotency_key: str) -> Label | None:
    label = Label.objects.filter(idempotency_key=idempotency_key).first()
    if label is None:
        return None
    if label.annotator_id != annotator.pk or label.task_id != task_id:
        raise ValidationError({"idempotency_key": ["already used for a different submission"]})
    return label


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

    A submit whose lease already expired is still accepted while the task has a free slot, so
    work is not thrown away. Raises ``ValidationError`` (bad input, nothing written),
    ``TaskNotLeased`` (no such task, or its slots are held by other annotators) or
    ``TaskUnavailable`` (the task has all its labels, or this annotator already labeled it).
    """
    key = idempotency_key.strip()
    if not key or len(key) > 64:
        raise ValidationError({"idempotency_key": ["must be 1 to 64 characters"]})
    flags = list(flags) if flags is not None else [False] * len(ratings)
    human_completion = human_completion if human_completion and human_completion.strip() else None
    try:
        result = _label_create(
            annotator=annotator,
            task_id=task_id,
            key=key,
            ratings=list(ratings),
            flags=flags,
            human_completion=human_completion,
            finish_reason=finish_reason,
            finish_note=finish_note.strip(),
            total_time_ms=total_time_ms,
            started_at=started_at,
        )
    except IntegrityError:
        # The key is already taken: by a twin of this request (hand back its label) or by a
        # different submission (a field error).
        existing = _label_for_key(annotator=annotator, task_id=task_id, idempotency_key=key)
        if existing is None:
            raise
        return SubmitResult(label=existing, created=False)
    if result.created and result.label.task.kind == TaskKind.SCREENING:
        annotator_screening_update(annotator=annotator)
    return result


@transaction.atomic
def _label_create(
    *,
    annotator: User,
    task_id: int,
    key: str,
    ratings: list[int],
    flags: list[bool],
    human_completion: str | None,
    finish_reason: str,
    finish_note: str,
    total_time_ms: int,
    started_at: datetime.datetime | None,
) -> SubmitResult:
    task = (
        Task.objects.select_for_update(of=("self",))
        .select_related("solution")
        .filter(pk=task_id)
        .first()
    )
    if task is None:
        raise TaskNotLeased(f"task {task_id} does not exist")
    steps = task.solution.steps
    label_validate(
        steps=steps,
        ratings=ratings,
        flags=flags,
        human_completion=human_completion,
        finish_reason=finish_reason,
        finish_note=finish_note,
        total_time_ms=total_time_ms,
    )
    # Under the task lock a twin request has either committed its label or not started.
    mine = Label.objects.filter(task=task, annotator=annotator).first()
    if mine is not None:
        if mine.idempotency_key == key:
            return SubmitResult(label=mine, created=False)
        raise TaskUnavailable(f"you have already labeled task {task_id}")
    released, _ = Lease.objects.filter(task=task, annotator=annotator).delete()
    if not released and task.kind == TaskKind.NORMAL:
        if task.label_count >= task.required_labels:
            raise TaskUnavailable(f"task {task_id} already has all its labels")
        if task.label_count + task.lease_count >= task.required_labels:
            raise TaskNotLeased(f"task {task_id} is not leased to you")
    profile = queries.annotator_profile_get(user=annotator)
    label = Label.objects.create(
        task=task,
        annotator=annotator,
        labeler=profile.labeler,
        steps=label_steps_build(
            steps=steps, ratings=ratings, flags=flags, human_completion=human_completion
        ),
        ratings=ratings,
        finish_reason=finish_reason,
        finish_note=finish_note,
        total_time_ms=total_time_ms,
        started_at=started_at,
        created_at=timezone.now(),
        idempotency_key=key,
    )
    Task.objects.filter(pk=task.pk).update(
        label_count=F("label_count") + 1, lease_count=F("lease_count") - released
    )
    return SubmitResult(label=label, created=True)
