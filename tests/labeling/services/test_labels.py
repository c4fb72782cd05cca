"""Submitting labels: PRM800K shape, phase-2 validation per field, idempotency, expired leases."""

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from labeling.models import Label, Lease, Task
from labeling.services.labels import IdempotencyKeyReused, label_submit, label_validate
from labeling.services.queue import (
    TaskNotLeased,
    leases_release_expired,
    task_claim_next,
)
from tests.factories import SolutionFactory, TaskFactory, annotator

pytestmark = pytest.mark.django_db

STARTED_AT = timezone.now() - datetime.timedelta(minutes=1)  # a retry resends the same body
STEPS = ["Let $x = 2$.", "Then $x^2 = 5$.", "So the answer is 5.", "# Answer\n\n5"]


def submission(**overrides):
    values = {
        "idempotency_key": "key-1",
        "ratings": [1, 0, -1],
        "flags": [False, True, False],
        "human_completion": None,
        "finish_reason": "found_error",
        "finish_note": "",
        "total_time_ms": 12_345,
        "started_at": STARTED_AT,
    }
    values.update(overrides)
    return values


@pytest.fixture
def task() -> Task:
    return TaskFactory(solution=SolutionFactory(steps=STEPS), required_labels=1)


@pytest.fixture
def user_with_lease(task):
    user = annotator()
    assert task_claim_next(annotator=user).task == task
    return user


def test_submit_stores_prm800k_steps_and_frees_the_lease(task, user_with_lease):
    result = label_submit(annotator=user_with_lease, task_id=task.pk, **submission())
    assert result.created
    label = result.label
    assert label.steps == [
        {
            "completions": [{"text": STEPS[0], "rating": 1, "flagged": False}],
            "human_completion": None,
            "chosen_completion": 0,
        },
        {
            "completions": [{"text": STEPS[1], "rating": 0, "flagged": True}],
            "human_completion": None,
            "chosen_completion": 0,
        },
        {
            "completions": [{"text": STEPS[2], "rating": -1, "flagged": False}],
            "human_completion": None,
            "chosen_completion": 0,
        },
    ]
    assert label.ratings == [1, 0, -1]
    assert label.labeler == user_with_lease.annotator_profile.labeler
    assert (label.total_time_ms, label.finish_reason) == (12_345, "found_error")
    assert label.idempotency_key == "key-1"
    assert not Lease.objects.filter(task=task).exists()
    task.refresh_from_db()
    assert (task.label_count, task.lease_count) == (1, 0)


def test_corrected_step_is_stored_as_human_completion_beside_the_rated_step(task, user_with_lease):
    label = label_submit(
        annotator=user_with_lease,
        task_id=task.pk,
        **submission(human_completion="Then $x^2 = 4$."),
    ).label
    error_step = label.steps[-1]
    assert error_step["chosen_completion"] == 0
    assert error_step["completions"][0]["rating"] == -1
    assert error_step["human_completion"] == {
        "text": "Then $x^2 = 4$.",
        "rating": None,
        "source": "human",
        "flagged": False,
        "corrected_rating": None,
    }


def test_retry_with_same_key_returns_the_same_label(task, user_with_lease):
    first = label_submit(annotator=user_with_lease, task_id=task.pk, **submission())
    again = label_submit(annotator=user_with_lease, task_id=task.pk, **submission())
    assert (first.created, again.created) == (True, False)
    assert again.label.pk == first.label.pk
    assert Label.objects.count() == 1
    task.refresh_from_db()
    assert task.label_count == 1


def test_key_reused_for_another_task_is_refused(task, user_with_lease):
    label_submit(annotator=user_with_lease, task_id=task.pk, **submission())
    other = TaskFactory(solution=SolutionFactory(steps=STEPS))
    task_claim_next(annotator=user_with_lease)
    with pytest.raises(IdempotencyKeyReused, match="reload the page"):
        label_submit(annotator=user_with_lease, task_id=other.pk, **submission())
    assert Label.objects.count() == 1


def test_key_reused_with_a_different_body_is_refused(task, user_with_lease):
    label_submit(annotator=user_with_lease, task_id=task.pk, **submission())
    for changed in (
        {"ratings": [1, -1]},
        {"flags": [True, True, False]},
        {"total_time_ms": 1},
        {"finish_reason": "give_up", "finish_note": "stuck", "ratings": [1]},
        {"started_at": None},
    ):
        with pytest.raises(IdempotencyKeyReused):
            label_submit(annotator=user_with_lease, task_id=task.pk, **submission(**changed))
    assert Label.objects.get().ratings == [1, 0, -1]


def test_submit_after_lease_expired_is_accepted_while_a_slot_is_free(task, user_with_lease):
    Lease.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=5))
    assert leases_release_expired() == 1
    result = label_submit(annotator=user_with_lease, task_id=task.pk, **submission())
    assert result.created
    task.refresh_from_db()
    assert (task.label_count, task.lease_count) == (1, 0)
    # and a retry after that is still idempotent
    assert not label_submit(annotator=user_with_lease, task_id=task.pk, **submission()).created


def test_submit_on_a_task_held_by_someone_else_is_not_found(task, user_with_lease):
    with pytest.raises(TaskNotLeased):
        label_submit(annotator=annotator(), task_id=task.pk, **submission())
    assert not Label.objects.exists()


def test_submit_to_unknown_task_is_not_found():
    with pytest.raises(TaskNotLeased):
        label_submit(annotator=annotator(), task_id=424242, **submission())


def test_solution_needs_every_step_rated(task, user_with_lease):
    with pytest.raises(ValidationError) as error:
        label_submit(
            annotator=user_with_lease,
            task_id=task.pk,
            **submission(ratings=[1, 1, 1], flags=None, finish_reason="solution"),
        )
    assert "all 4 steps" in error.value.message_dict["ratings"][0]
    result = label_submit(
        annotator=user_with_lease,
        task_id=task.pk,
        **submission(ratings=[1, 1, 0, 1], flags=None, finish_reason="solution"),
    )
    assert result.label.ratings == [1, 1, 0, 1]
    assert [s["completions"][0]["flagged"] for s in result.label.steps] == [False] * 4


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"ratings": [1, 0]}, "ratings", "last rating to be -1"),
        ({"ratings": [-1, 0, -1], "flags": [False] * 3}, "ratings", "step 1 is rated -1"),
        ({"ratings": [1, 1, 1, -1, 1], "flags": [False] * 5}, "ratings", "5 ratings"),
        ({"ratings": [1, 2, -1]}, "ratings", "rating 2 is 2"),
        (
            {"ratings": [1, 1, 1, -1], "flags": [False] * 4, "finish_reason": "solution"},
            "ratings",
            "cannot contain a -1",
        ),
        ({"flags": [False]}, "flags", "1 entries for 3 ratings"),
        ({"finish_reason": "bored"}, "finish_reason", "must be one of"),
        ({"finish_reason": "give_up", "finish_note": "  "}, "finish_note", "reason is required"),
        (
            {
                "ratings": [1, 0],
                "flags": [False, False],
                "finish_reason": "bad_problem",
                "human_completion": "x",
            },
            "human_completion",
            "-1 rating",
        ),
        ({"total_time_ms": -5}, "total_time_ms", "between 0"),
    ],
)
def test_invalid_submission_names_the_field_and_writes_nothing(
    task, user_with_lease, overrides, field, fragment
):
    with pytest.raises(ValidationError) as error:
        label_submit(annotator=user_with_lease, task_id=task.pk, **submission(**overrides))
    assert fragment in " ".join(error.value.message_dict[field])
    assert not Label.objects.exists()
    assert Lease.objects.filter(task=task, annotator=user_with_lease).exists()
    task.refresh_from_db()
    assert (task.label_count, task.lease_count) == (0, 1)


@pytest.mark.parametrize(
    ("ratings", "reason", "valid"),
    [
        ([], "give_up", True),
        ([1, 0], "bad_problem", True),
        ([1, -1], "give_up", True),
        ([-1, 1], "give_up", False),
        ([1, 1, 1, 1], "solution", True),
        ([-1], "found_error", True),
        ([], "found_error", False),
    ],
)
def test_phase2_prefix_rules(ratings, reason, valid):
    call = {
        "steps": STEPS,
        "ratings": ratings,
        "flags": [False] * len(ratings),
        "human_completion": None,
        "finish_reason": reason,
        "finish_note": "the statement is ambiguous",
        "total_time_ms": 1,
    }
    if valid:
        label_validate(**call)
    else:
        with pytest.raises(ValidationError):
            label_validate(**call)
