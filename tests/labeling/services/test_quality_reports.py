"""QC reports on hand-made cases whose kappa, alpha and agreements were worked out by hand."""

import pytest

from labeling.models import AnnotatorProfile, Label, Task, TaskKind
from labeling.services.quality_reports import (
    GoldLabelMissing,
    annotators_pause_set,
    cohen_kappa,
    krippendorff_alpha,
    quality_report_build,
    quality_tasks_create,
    task_gold_set,
)
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, UserFactory, annotator

pytestmark = pytest.mark.django_db


def label(task: Task, user, ratings: list[int | None], ms: int = 10_000) -> Label:
    profile = AnnotatorProfile.objects.get_or_create(user=user)[0]
    return LabelFactory(
        task=task, annotator=user, labeler=profile.labeler, ratings=ratings, total_time_ms=ms
    )


def by_name(report):
    return {r.username: r for r in report.annotators if r.username}


def test_kappa_and_alpha_match_hand_computation() -> None:
    # Pairs (1,1) (1,0) (-1,-1) (1,1) (0,0): p_o = 4/5; marginals A {1:3, 0:1, -1:1},
    # B {1:2, 0:2, -1:1}: p_e = (6 + 2 + 1) / 25 = 9/25; kappa = (0.8 - 0.36) / 0.64 = 0.6875.
    pairs = [(1, 1), (1, 0), (-1, -1), (1, 1), (0, 0)]
    assert cohen_kappa(pairs) == pytest.approx(0.6875)
    # Pooled values n=10 {1:5, 0:3, -1:2}; D_o = 2/10; D_e = (100 - 38) / 90;
    # alpha = 1 - 0.2 / (62/90) = 44/62.
    units = [[0, 0, 2], [0, 1, 1], [2, 0, 0], [0, 0, 2], [0, 2, 0]]
    assert krippendorff_alpha(units) == pytest.approx(44 / 62)


def test_agreement_is_none_when_undefined() -> None:
    assert cohen_kappa([]) is None
    assert cohen_kappa([(1, 1), (1, 1)]) is None  # one category: chance agreement is 1
    assert krippendorff_alpha([]) is None
    assert krippendorff_alpha([[0, 0, 2], [0, 0, 3]]) is None
    assert krippendorff_alpha([[0, 0, 1]]) is None  # a unit rated once carries no pair


def test_report_aligns_overlapping_labels_by_task_and_step() -> None:
    ada, bob, cy = annotator("ada"), annotator("bob"), annotator("cy")
    t1, t2 = TaskFactory(required_labels=2), TaskFactory(required_labels=2)
    label(t1, ada, [1, 1, -1], ms=10_000)
    label(t1, bob, [1, 0, -1, 1])  # bob's extra 4th step has no counterpart: not compared
    label(t2, ada, [1, 0], ms=40_000)
    label(t2, bob, [1, 0])
    label(TaskFactory(), ada, [1], ms=20_000)  # no overlap: counts as a label only
    label(TaskFactory(), cy, [None, 1])

    report = quality_report_build()
    rows = by_name(report)
    assert rows["ada"].labels == 3
    assert rows["ada"].median_time_ms == pytest.approx(20_000)
    assert rows["ada"].overlap_pairs == rows["bob"].overlap_pairs == 5
    assert rows["ada"].kappa == pytest.approx(0.6875)
    assert rows["bob"].kappa == pytest.approx(0.6875)
    assert rows["ada"].alpha == pytest.approx(44 / 62)
    assert report.alpha == pytest.approx(44 / 62)
    assert (report.overlap_tasks, report.overlap_steps) == (2, 5)
    assert rows["cy"].kappa is None and rows["cy"].overlap_pairs == 0
    assert rows["cy"].labels == 1


def test_gold_agreement_and_threshold() -> None:
    boss = UserFactory(username="boss", is_staff=True)
    ada, bob = annotator("ada"), annotator("bob")
    task = TaskFactory(kind=TaskKind.QUALITY_CONTROL, required_labels=1)
    label(task, boss, [1, 1, 1, -1])
    task_gold_set(task_id=task.pk, user=boss)
    label(task, ada, [1, 1, -1])  # 2 of 3 common steps agree; first error at 2, gold at 3
    label(task, bob, [1, 1, 1, -1])
    report = quality_report_build()
    rows = by_name(report)
    assert report.pass_mark == 0.75
    assert rows["ada"].gold.labels == 1
    assert rows["ada"].gold.step_agreement == pytest.approx(2 / 3)
    assert rows["ada"].gold.first_error_agreement == 0.0
    assert rows["ada"].below_threshold is True
    assert rows["bob"].gold.step_agreement == 1.0
    assert rows["bob"].gold.first_error_agreement == 1.0
    assert rows["bob"].below_threshold is False
    assert rows["boss"].gold.labels == 0  # the gold label is not compared with itself


def test_failed_screening_is_below_threshold_and_annotators_without_labels_listed() -> None:
    user = annotator("newbie")
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=False)
    row = by_name(quality_report_build())["newbie"]
    assert (row.labels, row.median_time_ms, row.below_threshold) == (0, None, True)


def test_use_my_label_as_gold_needs_the_admins_own_label() -> None:
    boss = UserFactory(username="boss", is_staff=True)
    task = TaskFactory(kind=TaskKind.QUALITY_CONTROL)
    with pytest.raises(GoldLabelMissing, match=f"task {task.pk}: boss has no label"):
        task_gold_set(task_id=task.pk, user=boss)
    task.refresh_from_db()
    assert task.gold_label is None
    other = label(task, annotator("ada"), [1, 1, 1])
    task_gold_set(task_id=task.pk, user=UserFactory(username="ada"))
    mine = label(task, boss, [1, 1, 1])
    task_gold_set(task_id=task.pk, user=boss)
    task.refresh_from_db()
    other.refresh_from_db()
    mine.refresh_from_db()
    assert task.gold_label == mine and mine.is_gold
    assert other.is_gold is False  # the replaced gold label is no longer gold


def test_quality_tasks_create_uses_screening_generation_and_current_round() -> None:
    TaskFactory(generation=4)
    solutions = [SolutionFactory(), SolutionFactory()]
    ids = [s.pk for s in solutions]
    assert quality_tasks_create(solution_ids=ids, kind=TaskKind.SCREENING) == 2
    assert quality_tasks_create(solution_ids=ids, kind=TaskKind.QUALITY_CONTROL) == 2
    assert quality_tasks_create(solution_ids=ids, kind=TaskKind.SCREENING) == 0  # already there
    generations = set(Task.objects.filter(solution__in=solutions).values_list("kind", "generation"))
    assert generations == {(TaskKind.SCREENING, -1), (TaskKind.QUALITY_CONTROL, 4)}
    with pytest.raises(ValueError, match="kind: 'normal'"):
        quality_tasks_create(solution_ids=ids, kind=TaskKind.NORMAL)


def test_pause_and_resume_keep_labels() -> None:
    user = annotator("ada")
    label(TaskFactory(), user, [1])
    profile = AnnotatorProfile.objects.get(user=user)
    assert annotators_pause_set(profile_ids=[profile.pk], paused=True) == 1
    profile.refresh_from_db()
    assert profile.is_paused and Label.objects.filter(annotator=user).count() == 1
    annotators_pause_set(profile_ids=[profile.pk], paused=False)
    profile.refresh_from_db()
    assert not profile.is_paused


def test_a_paused_annotator_is_served_nothing_until_resumed() -> None:
    from labeling.services.queue import task_claim_next

    user = annotator("ada")
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=True)
    TaskFactory()
    profile = AnnotatorProfile.objects.get(user=user)
    annotators_pause_set(profile_ids=[profile.pk], paused=True)
    assert task_claim_next(annotator=user) is None
    annotators_pause_set(profile_ids=[profile.pk], paused=False)
    assert task_claim_next(annotator=user) is not None
