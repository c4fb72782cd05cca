"""The frozen evaluation set: which problems are reserved, how they are queued, what is frozen."""

import pytest

from labeling.models import Grade, Problem, Task, TaskKind
from selector.ml.training import split_by_problem
from selector.models import EvalSet, SelectorVersion, SolutionScore, VersionStatus
from selector.services import queue_fill, trajectories_split
from selector.services.eval_set import (
    eval_queue_fill,
    eval_set_current,
    eval_set_freeze,
    eval_set_reserve,
)
from tests.factories import LabelFactory, ProblemFactory, SolutionFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def version():
    return SelectorVersion.objects.create(
        name="v-eval", base_model="-", status=VersionStatus.READY, is_active=True
    )


def scored_problem(version, scores, grade=Grade.INCORRECT, **problem_fields):
    problem = ProblemFactory(**problem_fields)
    for score in scores:
        s = SolutionFactory.create(problem=problem, grade=grade)
        SolutionScore.objects.create(solution=s, version=version, score=score, step_scores=[])
    return problem


def test_reservation_follows_the_hash_and_never_changes_once_made(settings):
    problems = [ProblemFactory(unique_id=f"test/p/{i}.json") for i in range(200)]
    keys = [p.unique_id for p in problems]
    _, expected = split_by_problem(keys, eval_fraction=0.1, seed=settings.SELECTOR_EVAL_SEED)
    assert eval_set_reserve() == len(expected) > 0
    reserved = set(Problem.objects.filter(eval_reserved=True).values_list("unique_id", flat=True))
    assert reserved == expected
    # A later change of the fraction decides new problems only: the existing set is frozen.
    settings.SELECTOR_EVAL_FRACTION = 1.0
    late = ProblemFactory(unique_id="test/p/late.json")
    assert eval_set_reserve() == 1
    assert set(
        Problem.objects.filter(eval_reserved=True).values_list("unique_id", flat=True)
    ) == expected | {late.unique_id}


@pytest.mark.parametrize(("fraction", "seed"), [(0.1, 0), (0.5, 7), (1.0, 3), (0.0, 0)])
def test_reservation_matches_the_split_for_any_key_fraction_and_seed(settings, fraction, seed):
    # PostgreSQL decides in one UPDATE with its own sha256; it must agree key for key with the
    # Python split the held-out set always used, non-ASCII keys and the 0/1 edges included.
    settings.SELECTOR_EVAL_FRACTION, settings.SELECTOR_EVAL_SEED = fraction, seed
    keys = [f"test/p/{i}.json" for i in range(300)] + ["algèbre/é.json", "数学/1", "x\ty"]
    for key in keys:
        ProblemFactory(unique_id=key)
    _, expected = split_by_problem(keys, eval_fraction=fraction, seed=seed)
    assert eval_set_reserve() == len(expected)
    assert set(Problem.objects.filter(eval_reserved=True).values_list("unique_id", flat=True)) == (
        expected
    )
    assert not Problem.objects.filter(eval_reserved__isnull=True).exists()


def test_uniform_draw_is_the_seeded_sample_of_free_candidates(settings, version):
    # The draw is random.Random(f"{seed}:{problem}:{generation}").sample over the problem's free
    # candidates in id order, budget = K minus the problem's tasks in the generation; taken
    # candidates (a task of any kind) are not in the population.
    import random

    settings.SELECTOR_EVAL_FRACTION, settings.SELECTOR_EVAL_SEED = 1.0, 5
    problems = [scored_problem(version, [0.5] * 7) for _ in range(4)]
    first = problems[0].solutions.order_by("pk")
    TaskFactory(solution=first[0], kind=TaskKind.NORMAL, generation=3)  # budget 3 - 1
    TaskFactory(solution=first[1], kind=TaskKind.NORMAL, generation=2)  # taken, other round
    eval_queue_fill(generation=3, per_problem=3)
    for problem in problems:
        ids = [s.pk for s in problem.solutions.order_by("pk")]
        budget = 3
        if problem == problems[0]:
            ids, budget = ids[2:], 2
        rng = random.Random(f"5:{problem.pk}:3")
        expected = {pk: None for pk in rng.sample(ids, budget)}
        for pk in expected:
            expected[pk] = rng.random()
        got = dict(
            Task.objects.filter(
                solution__problem=problem, generation=3, queued_by="uniform"
            ).values_list("solution_id", "priority")
        )
        assert got == expected


def test_queue_fill_never_picks_reserved_problems_and_queues_them_uniformly(settings, version):
    settings.SELECTOR_EVAL_FRACTION = 0.5
    problems = [scored_problem(version, [0.9, 0.6, 0.3, 0.1]) for _ in range(120)]
    report = queue_fill(per_problem=1, wrong_fraction=1.0)
    reserved = {p.pk for p in problems if Problem.objects.get(pk=p.pk).eval_reserved}
    assert 0 < len(reserved) < len(problems)
    tasks = Task.objects.filter(kind=TaskKind.NORMAL).select_related("solution")
    by_selector = [t for t in tasks if t.selector_version_id is not None]
    uniform = [t for t in tasks if t.selector_version_id is None]
    assert report.created == len(by_selector) == len(problems) - len(reserved)
    assert report.eval_created == len(uniform) == len(reserved)
    assert {t.solution.problem_id for t in by_selector}.isdisjoint(reserved)
    assert {t.solution.problem_id for t in uniform} == reserved
    # The selector always takes its top-scored candidate; the uniform draw does not.
    top = {
        sc.solution_id
        for sc in SolutionScore.objects.filter(score=0.9, solution__problem_id__in=reserved)
    }
    assert all(t.selector_version_id == version.pk and t.queued_score == 0.9 for t in by_selector)
    top_share = sum(t.solution_id in top for t in uniform) / len(uniform)
    assert top_share < 0.5  # 1 in 4 expected; the selector's rule would give 1.0
    assert all(t.queued_score is None for t in uniform)
    assert {t.queued_by for t in uniform} == {"uniform"}
    assert {t.queued_by for t in by_selector} == {"selector"}


def test_uniform_queueing_is_seeded_and_respects_the_per_problem_budget(settings, version):
    settings.SELECTOR_EVAL_FRACTION = 1.0
    for _ in range(5):
        scored_problem(version, [0.5] * 6)
    first = eval_queue_fill(generation=1, per_problem=2)
    picked = set(Task.objects.values_list("solution_id", flat=True))
    assert first == {"eval_created": 10, "eval_problems": 5}
    assert eval_queue_fill(generation=1, per_problem=2)["eval_created"] == 0  # at budget
    Task.objects.all().delete()
    assert eval_queue_fill(generation=1, per_problem=2)["eval_created"] == 10
    assert set(Task.objects.values_list("solution_id", flat=True)) == picked


def test_freezing_keeps_only_unbiased_labels_on_reserved_problems(settings, version):
    settings.SELECTOR_EVAL_FRACTION = 1.0
    reserved = SolutionFactory.create()
    uniform_label = LabelFactory(task=TaskFactory(solution=reserved, queued_by="uniform"))
    picked = SolutionFactory.create(problem=reserved.problem)
    LabelFactory(  # biased
        task=TaskFactory(solution=picked, selector_version=version, queued_by="selector")
    )
    bad = SolutionFactory.create(problem=reserved.problem)
    LabelFactory(task=TaskFactory(solution=bad, queued_by="uniform"), finish_reason="bad_problem")
    qc = SolutionFactory.create(problem=reserved.problem)
    LabelFactory(task=TaskFactory(solution=qc, kind=TaskKind.QUALITY_CONTROL))
    first = eval_set_freeze()
    assert first.label_ids == [uniform_label.pk]
    assert first.problems == 1 and first.fraction == 1.0

    settings.SELECTOR_EVAL_FRACTION = 0.0
    outside = SolutionFactory.create()  # decided now, under fraction 0: not reserved
    LabelFactory(task=TaskFactory(solution=outside))
    later = LabelFactory(
        task=TaskFactory(
            solution=SolutionFactory.create(problem=reserved.problem), queued_by="uniform"
        )
    )
    assert eval_set_current() == first  # a set stays as frozen until a new one is made
    second = eval_set_current(freeze=True)
    assert second.pk > first.pk and second.label_ids == [uniform_label.pk, later.pk]
    assert EvalSet.objects.count() == 2


def test_only_uniformly_queued_labels_of_reliable_annotators_are_frozen(settings, tmp_path):
    """Hand-queued tasks, imported PRM800K records (phase 2: picked by OpenAI's own PRM) and
    labels of paused or failed-screening annotators carry no selector version either, but
    are not a uniform, reliable sample: they stay out of the frozen set."""
    from labeling.models import AnnotatorProfile, Label
    from labeling.services.queue import tasks_enqueue
    from tests.factories import annotator
    from tests.labeling.prm800k_records import load_records, shape_records

    settings.SELECTOR_EVAL_FRACTION = 1.0
    problem = ProblemFactory()
    solutions = SolutionFactory.create_batch(6, problem=problem)
    eval_queue_fill(generation=1, per_problem=4)
    uniform = list(Task.objects.order_by("pk"))
    assert len(uniform) == 4
    paused, failed, fine = annotator(), annotator(), annotator()
    AnnotatorProfile.objects.filter(user=paused).update(is_paused=True)
    AnnotatorProfile.objects.filter(user=failed).update(screening_passed=False)
    kept = []
    for task, user in zip(uniform, [paused, failed, fine, None], strict=True):
        label = LabelFactory(
            task=task,
            annotator=user,
            **({"labeler": user.annotator_profile.labeler} if user else {}),
        )
        if user not in (paused, failed):
            kept.append(label.pk)
    free = [s.pk for s in solutions if s.pk not in {t.solution_id for t in uniform}]
    tasks_enqueue(solution_ids=free[:1], generation=1)
    LabelFactory(task=Task.objects.get(solution_id=free[0]))
    load_records([shape_records()["phase2_found_error"]], tmp_path)
    eval_set_reserve()
    assert Label.objects.count() == 6
    assert Label.objects.filter(task__solution__problem__eval_reserved=True).count() == 6
    assert sorted(eval_set_freeze().label_ids) == sorted(kept)


def test_training_never_sees_a_reserved_problem(settings):
    settings.SELECTOR_EVAL_FRACTION = 0.5
    for i in range(40):
        s = SolutionFactory.create(problem=ProblemFactory(unique_id=f"test/t/{i}.json"))
        LabelFactory(task=TaskFactory(solution=s))
    train, held_out = trajectories_split()
    reserved = set(Problem.objects.filter(eval_reserved=True).values_list("unique_id", flat=True))
    assert {t.problem_key for t in held_out} == reserved
    assert not {t.problem_key for t in train} & reserved
    assert len(train) + len(held_out) == 40
