"""The uncertainty and mixed selection rules (issue 20) against a plain Python reference on
random pools, the rule every task records, and when the uncertainty rules are unavailable.
Runs on SQLite, and on PostgreSQL with DATABASE_URL=postgres://…"""

import logging
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeling.models import Grade, QueuedBy, SelectionRule, Task, TaskKind
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import SelectorError, queue_fill, queue_open_slots, queue_top_up
from selector.services.fill_sql import wrong_target
from tests.factories import ProblemFactory, SolutionFactory, TaskFactory

GENERATION = 3
RULES = ["80_20", "uncertainty", "mixed"]


@pytest.fixture
def version(db, settings):
    settings.SELECTOR_EVAL_FRACTION = 0.0  # reserved problems are set by hand below
    return SelectorVersion.objects.create(
        name="v-ens", base_model="-", status=VersionStatus.READY, is_active=True, ensemble_heads=5
    )


@dataclass(frozen=True)
class Cand:
    id: int
    problem_id: int
    score: float
    uncertainty: float | None
    cut: bool
    wrong: bool


def reference(
    cands: list[Cand], *, budgets: dict[int, int], rule: str, fraction: float
) -> set[int]:
    """The rules as the docstring states them, one problem at a time."""
    picked: set[int] = set()
    for problem_id, k in budgets.items():
        mine = [c for c in cands if c.problem_id == problem_id]
        by_score = sorted(mine, key=lambda c: (c.cut, -c.score, c.id))
        b = {"80_20": k, "mixed": (k + 1) // 2, "uncertainty": 0}[rule]
        wrong = [c for c in by_score if c.wrong][: wrong_target(b, fraction)]
        rest = [c for c in by_score if c not in wrong][: b - len(wrong)]
        chosen = wrong + rest
        by_uncertainty = sorted(
            (c for c in mine if c not in chosen),
            key=lambda c: (c.cut, c.uncertainty is None, -(c.uncertainty or 0.0), c.id),
        )
        if rule != "80_20":
            chosen += by_uncertainty[: k - len(chosen)]
        picked |= {c.id for c in chosen}
    return picked


def random_pool(version, seed: int, *, per_problem: int) -> tuple[list[Cand], dict[int, int]]:
    """Problems with random grades, scores and uncertainties drawn from few values (ties), some
    cut candidates, some null uncertainties, tasks already queued (this generation: they use
    budget; another generation: the candidate is just gone), reserved problems, and a second
    version's scores that must be ignored. Returns the candidates and each open budget."""
    rng = random.Random(seed)
    other = SelectorVersion.objects.create(
        name=f"v-other-{seed}", base_model="-", status=VersionStatus.READY, ensemble_heads=5
    )
    cands: list[Cand] = []
    budgets: dict[int, int] = {}
    for _ in range(rng.randint(3, 7)):
        reserved = rng.random() < 0.2
        problem = ProblemFactory(eval_reserved=reserved)
        queued_here = 0
        for _ in range(rng.randint(0, 14)):
            grade = rng.choice([Grade.INCORRECT] * 3 + [Grade.CORRECT] * 2 + [Grade.UNGRADED])
            solution = SolutionFactory(problem=problem, grade=grade)
            score = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9])
            uncertainty = rng.choice(
                [0.05, 0.2, 0.2, 0.6, 1.1, None if rng.random() < 0.1 else 0.4]
            )
            cut = rng.random() < 0.15
            SolutionScore.objects.create(
                solution=solution,
                version=version,
                score=score,
                step_scores=[score],
                truncated_steps=1 if cut else 0,
                uncertainty=uncertainty,
            )
            SolutionScore.objects.create(
                solution=solution,
                version=other,
                score=rng.random(),
                step_scores=[0.5],
                uncertainty=rng.random(),
            )
            fate = rng.random()
            if fate < 0.1:
                TaskFactory(solution=solution, generation=GENERATION)
                queued_here += 1
            elif fate < 0.15:
                TaskFactory(solution=solution, generation=GENERATION - 1)
            elif not reserved:
                cands.append(
                    Cand(solution.pk, problem.pk, score, uncertainty, cut, grade == Grade.INCORRECT)
                )
        if not reserved:
            budgets[problem.pk] = max(0, per_problem - queued_here)
    return cands, budgets


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("seed", range(6))
def test_fill_equals_the_reference_on_random_pools(version, rule, seed):
    per_problem = random.Random(seed).choice([1, 2, 3, 4, 5, 7])
    fraction = random.Random(seed + 100).choice([0.0, 0.5, 0.8, 1.0])
    cands, budgets = random_pool(version, seed, per_problem=per_problem)
    before = set(Task.objects.values_list("pk", flat=True))
    report = queue_fill(
        per_problem=per_problem, wrong_fraction=fraction, generation=GENERATION, rule=rule
    )
    tasks = Task.objects.exclude(pk__in=before).filter(queued_by=QueuedBy.SELECTOR)
    expected = reference(cands, budgets=budgets, rule=rule, fraction=fraction)
    assert set(tasks.values_list("solution_id", flat=True)) == expected
    assert report.created == len(expected) and report.rule == rule
    by_id = {c.id: c for c in cands}
    assert report.wrong == sum(by_id[i].wrong for i in expected)
    assert report.truncated == sum(by_id[i].cut for i in expected)
    for task in tasks:
        c = by_id[task.solution_id]
        # The serving order stays the score's whatever picked the task (cut: served last).
        assert task.queued_score == c.score and task.priority == (0.0 if c.cut else c.score)
        assert task.rule == rule and task.selector_version_id == version.pk


@pytest.mark.parametrize("rule", RULES)
def test_every_task_records_its_rule_and_eval_tasks_record_uniform(version, rule):
    for reserved in (False, True):
        problem = ProblemFactory(eval_reserved=reserved)
        for i in range(6):
            solution = SolutionFactory(
                problem=problem, grade=Grade.INCORRECT if i % 2 else Grade.CORRECT
            )
            SolutionScore.objects.create(
                solution=solution, version=version, score=0.1 * i, step_scores=[], uncertainty=i
            )
    report = queue_fill(per_problem=4, rule=rule)
    assert report.created == 4 and report.eval_created == 4
    rules = dict(Task.objects.values_list("solution__problem__eval_reserved", "rule").distinct())
    assert rules == {False: rule, True: SelectionRule.UNIFORM}
    assert set(
        Task.objects.filter(rule=SelectionRule.UNIFORM).values_list("queued_by", flat=True)
    ) == {QueuedBy.UNIFORM}


def test_mixed_takes_half_by_80_20_then_the_most_uncertain(version):
    problem = ProblemFactory(eval_reserved=False)
    # (score, wrong, uncertainty)
    spec = [
        (0.9, True, 0.0),
        (0.8, True, 0.1),
        (0.7, False, 0.2),
        (0.1, False, 0.9),
        (0.2, True, 0.8),
    ]
    ids = []
    for score, wrong, uncertainty in spec:
        s = SolutionFactory(problem=problem, grade=Grade.INCORRECT if wrong else Grade.CORRECT)
        SolutionScore.objects.create(
            solution=s, version=version, score=score, step_scores=[], uncertainty=uncertainty
        )
        ids.append(s.pk)
    # k=4: 80/20 part 2 (both wrong: the top wrong answers 0.9, 0.8), then the 2 most uncertain
    queue_fill(per_problem=4, wrong_fraction=0.8, rule="mixed")
    assert set(Task.objects.values_list("solution_id", flat=True)) == {
        ids[0],
        ids[1],
        ids[3],
        ids[4],
    }


def test_the_hand_made_and_imported_tasks_stay_blank(db):
    assert TaskFactory().rule == ""


def test_default_rule_is_the_setting(version, settings):
    make = SolutionFactory(problem=ProblemFactory(eval_reserved=False))
    SolutionScore.objects.create(
        solution=make, version=version, score=0.5, step_scores=[], uncertainty=1
    )
    settings.SELECTOR_RULE = "uncertainty"
    assert queue_fill(per_problem=1).rule == "uncertainty"
    assert Task.objects.get().rule == "uncertainty"


def test_an_unknown_rule_names_the_allowed_ones(version):
    with pytest.raises(SelectorError, match="80_20, uncertainty, mixed"):
        queue_fill(rule="uniform")


@pytest.mark.parametrize("rule", ["uncertainty", "mixed"])
@pytest.mark.parametrize(
    ("heads", "summary", "why"),
    [(0, {"init": "import"}, "imported PRM"), (1, {}, "single step head"), (0, {}, "no ensemble")],
)
def test_uncertainty_rules_need_an_ensemble(version, rule, heads, summary, why):
    version.ensemble_heads, version.training_summary = heads, summary
    version.save()
    SolutionScore.objects.create(
        solution=SolutionFactory(problem=ProblemFactory(eval_reserved=False)),
        version=version,
        score=0.5,
        step_scores=[],
    )
    with pytest.raises(SelectorError) as error:
        queue_fill(per_problem=2, rule=rule)
    assert why in str(error.value) and "v-ens" in str(error.value)
    assert "SELECTOR_ENSEMBLE_HEADS > 1" in str(error.value) and "80_20" in str(error.value)
    assert not Task.objects.exists()
    assert queue_fill(per_problem=2, rule="80_20").created == 1


def test_top_up_falls_back_to_80_20_when_the_setting_is_unavailable(version, settings, caplog):
    version.ensemble_heads = 0
    version.save()
    settings.SELECTOR_RULE = "uncertainty"
    settings.SELECTOR_LOW_WATER = 5
    SolutionScore.objects.create(
        solution=SolutionFactory(problem=ProblemFactory(eval_reserved=False)),
        version=version,
        score=0.5,
        step_scores=[],
    )
    assert queue_open_slots() == 0
    with caplog.at_level(logging.WARNING, logger="selector.services.queue_fill"):
        report = queue_top_up()
    assert report is not None and report.created == 1 and report.rule == "80_20"
    assert Task.objects.get().rule == "80_20"
    assert "SELECTOR_RULE=uncertainty unavailable" in caplog.text


def test_top_up_uses_the_setting_when_available(version, settings):
    settings.SELECTOR_RULE = "uncertainty"
    SolutionScore.objects.create(
        solution=SolutionFactory(problem=ProblemFactory(eval_reserved=False)),
        version=version,
        score=0.5,
        step_scores=[],
        uncertainty=0.3,
    )
    report = queue_top_up()
    assert report is not None and report.rule == "uncertainty"
    assert Task.objects.get(kind=TaskKind.NORMAL).rule == "uncertainty"


def test_a_bad_selector_rule_setting_refuses_to_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "STEPWISE_TEST_DB"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(__file__).resolve().parent.parent.parent,
        env={**env, "STEPWISE_VAR_DIR": str(tmp_path), "SELECTOR_RULE": "random"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "SELECTOR_RULE must be one of 80_20, uncertainty, mixed (got 'random')" in result.stderr
