"""The 80/20 rule (brief §6) on hand-made scores, on SQLite and PostgreSQL."""

import pytest
from django.utils import timezone

from labeling.models import Grade, Lease, Task, TaskKind
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import SelectorError, queue_fill, queue_open_slots, queue_top_up
from tests.factories import LabelFactory, ProblemFactory, SolutionFactory, TaskFactory, annotator

W, C, U, X = Grade.INCORRECT, Grade.CORRECT, Grade.UNGRADED, Grade.UNGRADABLE


@pytest.fixture
def version(db, settings):
    settings.SELECTOR_EVAL_FRACTION = 0.0  # the 80/20 rule alone (the eval set has its tests)
    return SelectorVersion.objects.create(
        name="v-test", base_model="-", status=VersionStatus.READY, is_active=True
    )


def make_pool(version, spec, problem=None):
    """spec: list of (score, grade); returns the solutions in spec order."""
    problem = problem or ProblemFactory()
    solutions = []
    for score, grade in spec:
        s = SolutionFactory.create(problem=problem, grade=grade)
        SolutionScore.objects.create(solution=s, version=version, score=score, step_scores=[score])
        solutions.append(s)
    return solutions


def queued_ids(generation=None):
    tasks = Task.objects.filter(kind=TaskKind.NORMAL)
    if generation is not None:
        tasks = tasks.filter(generation=generation)
    return set(tasks.values_list("solution_id", flat=True))


def test_picks_top_wrong_for_80_percent_and_top_rest_for_20_percent(version):
    s = make_pool(
        version,
        [(0.9, C), (0.8, W), (0.7, W), (0.6, W), (0.5, W), (0.95, C), (0.1, W)],
    )
    report = queue_fill(per_problem=5, wrong_fraction=0.8)
    # round(5*0.8)=4 wrong: 0.8, 0.7, 0.6, 0.5; 1 rest: the best remaining is the 0.95 correct.
    assert queued_ids() == {s[1].pk, s[2].pk, s[3].pk, s[4].pk, s[5].pk}
    assert (report.created, report.wrong, report.problems) == (5, 4, 1)
    assert report.wrong_share == pytest.approx(0.8)


def test_tasks_record_generation_priority_and_queued_score(version):
    (s,) = make_pool(version, [(0.42, W)])
    report = queue_fill(per_problem=1, wrong_fraction=0.8)
    task = Task.objects.get(solution=s)
    assert report.generation == 1
    assert (task.kind, task.generation, task.priority, task.queued_score) == (
        TaskKind.NORMAL,
        1,
        0.42,
        0.42,
    )
    assert task.required_labels == 1 and task.label_count == 0


def test_too_few_wrong_answers_fill_from_the_remainder(version):
    s = make_pool(version, [(0.9, C), (0.3, W), (0.8, C), (0.7, C), (0.2, C)])
    report = queue_fill(per_problem=4, wrong_fraction=0.8)
    # Only one wrong answer: it is taken, and three of the rest by score.
    assert queued_ids() == {s[1].pk, s[0].pk, s[2].pk, s[3].pk}
    assert report.wrong == 1


def test_rest_part_may_take_a_wrong_answer_when_it_scores_best(version):
    s = make_pool(version, [(0.9, W), (0.8, W), (0.7, W), (0.6, W), (0.5, C)])
    queue_fill(per_problem=4, wrong_fraction=0.8)
    # 3 wrong by the 80% part, then the best remaining is the 0.6 wrong, not the 0.5 correct.
    assert queued_ids() == {s[0].pk, s[1].pk, s[2].pk, s[3].pk}


def test_ties_break_by_solution_id(version):
    s = make_pool(version, [(0.5, W)] * 4 + [(0.5, C)] * 3)
    queue_fill(per_problem=2, wrong_fraction=0.5)
    # 1 wrong (lowest id among tied wrong), 1 rest (lowest id among what remains).
    assert queued_ids() == {s[0].pk, s[1].pk}


def test_ungraded_and_ungradable_only_enter_through_the_rest(version):
    s = make_pool(version, [(0.99, U), (0.98, X), (0.4, W), (0.3, W), (0.2, C)])
    queue_fill(per_problem=3, wrong_fraction=0.67)
    # round(3*0.67)=2 wrong: both wrong ones despite the higher-scoring ungraded/ungradable;
    # the 1 rest slot goes to the best remaining: the ungraded 0.99.
    assert queued_ids() == {s[0].pk, s[2].pk, s[3].pk}
    report = queue_fill(per_problem=2, wrong_fraction=1.0)  # next generation, no wrong left
    assert queued_ids(report.generation) == {s[1].pk, s[4].pk}
    assert report.wrong == 0


def test_k_larger_than_pool_takes_everything(version):
    s = make_pool(version, [(0.1, W), (0.2, C), (0.3, U)])
    report = queue_fill(per_problem=10, wrong_fraction=0.8)
    assert queued_ids() == {x.pk for x in s}
    assert report.created == 3


def test_labeled_and_queued_candidates_are_excluded(version):
    s = make_pool(version, [(0.9, W), (0.8, W), (0.7, W), (0.6, W)])
    LabelFactory(task=TaskFactory(solution=s[0], generation=None))  # labeled (imported)
    TaskFactory(solution=s[1], kind=TaskKind.QUALITY_CONTROL, generation=3)  # a QC item
    report = queue_fill(per_problem=4, wrong_fraction=1.0, generation=7)
    assert queued_ids(7) == {s[2].pk, s[3].pk}
    assert report.created == 2
    again = queue_fill(per_problem=4, wrong_fraction=1.0, generation=8)
    assert again.created == 0  # everything left is already queued


def test_problems_already_at_budget_get_none(version):
    full = make_pool(version, [(0.9, W), (0.8, W), (0.7, W)])
    half = make_pool(version, [(0.9, W), (0.8, W), (0.7, W)])
    other = SolutionFactory.create(problem=full[0].problem, grade=W)  # unscored: never a candidate
    TaskFactory(solution=other, generation=2)
    TaskFactory(solution=SolutionFactory.create(problem=full[0].problem, grade=C), generation=2)
    TaskFactory(solution=SolutionFactory.create(problem=half[0].problem, grade=C), generation=2)
    TaskFactory(solution=SolutionFactory.create(problem=half[0].problem, grade=C), generation=1)
    before = queued_ids(2)
    report = queue_fill(per_problem=2, wrong_fraction=1.0, generation=2)
    # `full` has 2 tasks in generation 2 → at budget; `half` has 1 there (generation 1 doesn't
    # count) → one more.
    assert queued_ids(2) - before == {half[0].pk}
    assert report.created == 1 and report.problems == 1


def test_each_problem_is_filled_independently(version):
    a = make_pool(version, [(0.2, W), (0.9, C), (0.1, W)])
    b = make_pool(version, [(0.6, C), (0.5, C)])
    c = make_pool(version, [(0.3, W), (0.4, W)])
    report = queue_fill(per_problem=2, wrong_fraction=0.5)
    assert queued_ids() == {a[0].pk, a[1].pk, b[0].pk, b[1].pk, c[1].pk, c[0].pk}
    assert (report.created, report.wrong, report.problems) == (6, 3, 3)


def test_new_generation_is_one_past_the_highest(version):
    make_pool(version, [(0.5, W), (0.4, W)])
    TaskFactory(generation=5)
    report = queue_fill(per_problem=1)
    assert report.generation == 6


def test_only_scores_of_the_given_version_count(version):
    other = SelectorVersion.objects.create(name="v-other", base_model="-", status="ready")
    s = make_pool(other, [(0.9, W)])
    assert queue_fill(per_problem=4).created == 0
    assert queue_fill(per_problem=4, version=other).created == 1
    assert queued_ids() == {s[0].pk}


def test_bad_settings_fail_clearly_and_write_nothing(version):
    make_pool(version, [(0.9, W)])
    with pytest.raises(SelectorError, match="wrong_fraction"):
        queue_fill(wrong_fraction=1.5)
    with pytest.raises(SelectorError, match="per_problem"):
        queue_fill(per_problem=-1)
    assert not Task.objects.exists()


def test_no_active_version_is_an_error(db):
    with pytest.raises(SelectorError, match="no active selector"):
        queue_fill()


def test_top_up_fills_below_low_water_and_not_above(version, settings):
    settings.SELECTOR_LOW_WATER = 3
    settings.SELECTOR_PER_PROBLEM = 2
    pools = [make_pool(version, [(0.9, W), (0.8, C), (0.7, W)]) for _ in range(3)]
    report = queue_top_up()
    assert report is not None and report.created == 6 and report.generation == 1
    assert report.wrong == 6  # round(2 * 0.8) = 2 wrong per problem
    assert queue_open_slots() == 6
    assert queue_top_up() is None  # 6 open slots ≥ 3
    # Labels and leases use up slots; the current generation is at budget everywhere, so the
    # top-up opens generation 2 with what is left.
    user = annotator()
    tasks = list(Task.objects.all())
    for t in tasks[:4]:
        t.label_count = 1
        t.save(update_fields=["label_count"])
    Lease.objects.create(task=tasks[4], annotator=user, expires_at=timezone.now())
    tasks[4].lease_count = 1
    tasks[4].save(update_fields=["lease_count"])
    assert queue_open_slots() == 1
    report = queue_top_up()
    assert report is not None and report.generation == 2 and report.created == 3
    assert queued_ids(2) == {p[1].pk for p in pools}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_fill_on_postgres_matches_the_rule(version):
    s = make_pool(version, [(0.9, C), (0.8, W), (0.7, W), (0.6, W), (0.5, W), (0.95, C)])
    report = queue_fill(per_problem=5, wrong_fraction=0.8)
    assert queued_ids() == {s[1].pk, s[2].pk, s[3].pk, s[4].pk, s[5].pk}
    assert report.wrong == 4


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_fills_never_queue_a_candidate_twice(version):
    import threading

    from django.db import connection

    for _ in range(20):
        make_pool(version, [(0.9, W), (0.8, C), (0.7, W), (0.6, C), (0.5, W)])
    barrier = threading.Barrier(2)
    reports = []

    def fill():
        try:
            barrier.wait()
            reports.append(queue_fill(per_problem=3))
        finally:
            connection.close()

    threads = [threading.Thread(target=fill) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    solution_ids = list(Task.objects.values_list("solution_id", flat=True))
    assert len(solution_ids) == len(set(solution_ids))
    # The advisory lock serialises them: one takes 3 per problem, the next the 2 left.
    assert sorted(r.created for r in reports) == [40, 60]
    assert sorted(r.generation for r in reports) == [1, 2]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_top_ups_at_once_fill_once(version, settings):
    """Beat's top-up beside a retried or late one (issue 21): the second finds the queue
    refilled and does nothing, rather than opening the next generation."""
    import threading

    from django.db import connection

    settings.SELECTOR_LOW_WATER = 5
    settings.SELECTOR_PER_PROBLEM = 2
    for _ in range(10):
        first, *_ = make_pool(version, [(0.9, W), (0.8, C), (0.7, W), (0.6, C)])
        # Generation 1 has room for one more task per problem; its one task is done.
        TaskFactory(solution=first, generation=1, label_count=1)
    barrier = threading.Barrier(2)
    reports = []

    def top_up():
        try:
            barrier.wait()
            reports.append(queue_top_up())
        finally:
            connection.close()

    threads = [threading.Thread(target=top_up) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.created if r else 0 for r in reports) == [0, 10]
    assert set(Task.objects.values_list("generation", flat=True)) == {1}
    assert Task.objects.count() == 20


def test_beat_top_up_task_reports_what_it_queued(version, settings):
    from selector import tasks

    settings.SELECTOR_LOW_WATER = 10
    settings.SELECTOR_PER_PROBLEM = 2
    make_pool(version, [(0.9, W), (0.8, C), (0.7, W)])
    assert tasks.queue_top_up() == 2
    assert Task.objects.count() == 2
