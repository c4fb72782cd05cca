"""Screening gate and QC mix as the claim applies them, and the agreement arithmetic."""

import itertools

import pytest

from labeling.models import AnnotatorProfile, QualitySettings, Task, TaskKind
from labeling.services.labels import label_submit
from labeling.services.quality import (
    agreement_summarise,
    first_error_index,
    qc_gap,
    qc_min_gap,
    qc_reveal_after,
    qc_reveal_window,
    screening_passes,
    step_agreement,
)
from labeling.services.queue import task_claim_next, task_skip
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, annotator

STEPS = ["a", "b", "c", "# Answer\n\n1"]


def gold_task(kind: str, gold_ratings: list[int], priority: float = 0.5) -> Task:
    task = TaskFactory(kind=kind, solution=SolutionFactory(steps=STEPS), priority=priority)
    gold = LabelFactory(task=task, ratings=gold_ratings, is_gold=True, finish_reason="found_error")
    task.gold_label = gold
    task.save(update_fields=["gold_label"])
    return task


def rate(user, task: Task, ratings: list[int]) -> None:
    reason = "found_error" if ratings and ratings[-1] == -1 else "solution"
    label_submit(
        annotator=user,
        task_id=task.pk,
        idempotency_key=f"{user.pk}-{task.pk}",
        ratings=ratings,
        flags=None,
        human_completion=None,
        finish_reason=reason,
        finish_note="",
        total_time_ms=10,
        started_at=None,
    )


def claim_and_rate(user, ratings: list[int] | None = None) -> Task:
    """Claim the next task and rate it (all +1 unless ratings are given)."""
    claim = task_claim_next(annotator=user)
    assert claim is not None
    rate(user, claim.task, ratings or [1] * len(claim.task.solution.steps))
    return claim.task


# --- arithmetic -----------------------------------------------------------------------------


def test_step_agreement_counts_the_common_rated_prefix():
    assert step_agreement(ratings=[1, 0, -1], gold=[1, 1, 1, -1]) == (
        step_agreement(ratings=[1, 0, -1], gold=[1, 1, 1])
    )
    result = step_agreement(ratings=[1, 0, -1], gold=[1, 1, 1, -1])
    assert (result.matched, result.compared) == (1, 3)
    skipped_none = step_agreement(ratings=[1, None, 1], gold=[1, 1, 0])
    assert (skipped_none.matched, skipped_none.compared) == (1, 2)


def test_first_error_index_and_pooled_summary():
    assert first_error_index([1, 0, -1]) == 2
    assert first_error_index([1, 1]) is None
    summary = agreement_summarise([([1, -1], [1, -1]), ([1, 1, 1], [1, -1])])
    # step: (2 of 2) + (1 of 2) = 3 of 4; first error: first pair agrees, second does not
    assert summary.step_agreement == 0.75
    assert summary.first_error_agreement == 0.5
    assert agreement_summarise([]).step_agreement is None


def test_screening_pass_mark_is_inclusive():
    summary = agreement_summarise([([1, 1, 1, -1], [1, 1, 1, 1])])
    assert summary.step_agreement == 0.75
    assert screening_passes(summary=summary, pass_mark=0.75)
    assert not screening_passes(summary=summary, pass_mark=0.76)


@pytest.mark.parametrize(("rate", "low", "high"), [(0.1, 4, 14), (0.25, 1, 5), (0.2, 2, 6)])
def test_qc_gap_is_uniform_from_the_minimum_gap_with_the_configured_mean(rate, low, high):
    assert qc_min_gap(rate) == low
    draws = [i / 10_000 for i in range(10_000)]
    gaps = [qc_gap(qc_rate=rate, draw=draw) for draw in draws]
    assert (min(gaps), max(gaps)) == (low, high)
    assert set(gaps) == set(range(low, high + 1))
    assert sum(gaps) / len(gaps) == pytest.approx(1 / rate - 1, abs=0.01)


def test_qc_gap_at_the_ends_of_the_rate():
    assert qc_gap(qc_rate=1.0, draw=0.99) == 0  # every task a QC question
    assert qc_gap(qc_rate=0.0, draw=0.5) is None  # QC switched off
    assert qc_min_gap(0.0) is None
    # A rate whose mean gap is not whole keeps its mean to within a fraction of a label.
    gaps = [qc_gap(qc_rate=0.3, draw=i / 10_000) for i in range(10_000)]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 0.3 - 1, abs=0.2)


def test_qc_reveal_delay_is_past_the_minimum_gap_and_varies_by_label():
    delays = [qc_reveal_after(label_id=i, qc_rate=0.2) for i in range(1, 500)]
    assert min(delays) >= qc_min_gap(0.2) + 1
    assert max(delays) <= qc_reveal_window(0.2)
    assert len(set(delays)) >= 4
    assert qc_reveal_after(label_id=7, qc_rate=0.2) == qc_reveal_after(label_id=7, qc_rate=0.2)


# --- the gate in the claim ------------------------------------------------------------------


@pytest.mark.django_db
def test_new_annotator_gets_screening_first_and_passes_at_the_mark():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    normal = TaskFactory(priority=1.0)
    first = gold_task(TaskKind.SCREENING, [1, 1, 1, 1], priority=0.9)
    second = gold_task(TaskKind.SCREENING, [1, 1, -1], priority=0.1)
    user = annotator()
    assert task_claim_next(annotator=user).task == first
    rate(user, first, [1, 1, 1, 1])  # 4 of 4
    assert AnnotatorProfile.objects.get(user=user).screening_passed is None
    assert task_claim_next(annotator=user).task == second
    rate(user, second, [1, 0, -1])  # 2 of 3 -> pooled 6 of 7 = 0.857
    assert AnnotatorProfile.objects.get(user=user).screening_passed is True
    assert task_claim_next(annotator=user).task == normal


@pytest.mark.django_db
def test_annotator_below_the_mark_fails_and_gets_no_normal_tasks():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    TaskFactory(priority=1.0)
    screening = gold_task(TaskKind.SCREENING, [1, 1, 1, 1])
    user = annotator()
    assert task_claim_next(annotator=user).task == screening
    rate(user, screening, [1, 0, -1])  # 1 of 3
    assert AnnotatorProfile.objects.get(user=user).screening_passed is False
    assert task_claim_next(annotator=user) is None


@pytest.mark.django_db
def test_screening_required_limits_how_many_are_asked():
    QualitySettings.objects.create(pk=1, qc_rate=0.0, screening_required=1)
    normal = TaskFactory(priority=0.0)
    gold_task(TaskKind.SCREENING, [1, 1, 1, 1], priority=0.9)
    gold_task(TaskKind.SCREENING, [1, 1, 1, 1], priority=0.5)
    user = annotator()
    claim_and_rate(user, [1, 1, 1, 1])
    assert AnnotatorProfile.objects.get(user=user).screening_passed is True
    assert task_claim_next(annotator=user).task == normal


@pytest.mark.django_db
def test_screening_tasks_without_gold_do_not_gate():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    TaskFactory(kind=TaskKind.SCREENING)  # no gold label
    normal = TaskFactory()
    assert task_claim_next(annotator=annotator()).task == normal


@pytest.mark.django_db
def test_screening_questions_are_per_annotator_regardless_of_overlap():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    screening = gold_task(TaskKind.SCREENING, [1, 1, 1, 1])
    users = [annotator() for _ in range(3)]
    for user in users:
        assert task_claim_next(annotator=user).task == screening
        rate(user, screening, [1, 1, 1, 1])
    screening.refresh_from_db()
    assert screening.label_count == 3


@pytest.mark.django_db
def test_skipped_screening_question_comes_back():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    screening = gold_task(TaskKind.SCREENING, [1, 1, 1, 1])
    user = annotator()
    assert task_claim_next(annotator=user).task == screening
    task_skip(annotator=user, task_id=screening.pk)
    assert task_claim_next(annotator=user).task == screening


@pytest.mark.django_db
def test_qc_questions_are_mixed_in_at_the_configured_rate():
    QualitySettings.objects.create(pk=1, qc_rate=0.25)  # one in four
    for index in range(12):
        TaskFactory(priority=1.0 - index / 100)
    qc_tasks = [gold_task(TaskKind.QUALITY_CONTROL, [1, 1, 1, 1]) for _ in range(3)]
    user = annotator()
    user.annotator_profile.screening_passed = True
    user.annotator_profile.save()
    user.annotator_profile.qc_draw = 0.5  # a gap of 1 + floor(0.5 * 5) = 3
    user.annotator_profile.save()
    served = [claim_and_rate(user).kind for _ in range(4)]
    assert served == ["normal", "normal", "normal", "quality_control"]
    profile = AnnotatorProfile.objects.get(user=user)
    assert profile.labels_since_qc == 0
    assert profile.qc_draw != 0.5  # the QC label drew the next position
    served += [claim_and_rate(user).kind for _ in range(8)]
    qc_at = [i for i, kind in enumerate(served) if kind == "quality_control"]
    assert all(b - a > qc_min_gap(0.25) for a, b in itertools.pairwise(qc_at))
    assert {t.pk for t in qc_tasks} >= set(
        Task.objects.filter(labels__annotator=user, kind=TaskKind.QUALITY_CONTROL).values_list(
            "pk", flat=True
        )
    )


@pytest.mark.django_db
def test_qc_rate_zero_serves_no_qc():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    TaskFactory.create_batch(3)
    gold_task(TaskKind.QUALITY_CONTROL, [1, 1, 1, 1], priority=9.0)
    user = annotator()
    served = [claim_and_rate(user).kind for _ in range(3)]
    assert served == ["normal"] * 3
