"""End to end on a tiny CPU model: base → score → fill → train → evaluate → promote → fill."""

import pytest

from labeling.models import Grade, Label, Lease, Problem, Task, TaskKind
from selector.ml.training import split_by_problem
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import (
    EVAL_FRACTION,
    EVAL_SEED,
    SelectorError,
    candidates_score,
    labeled_trajectories,
    queue_fill,
    selector_create_base,
    selector_evaluate,
    selector_promote,
    selector_train,
    trajectories_split,
)
from tests.factories import LabelFactory, ProblemFactory, SolutionFactory, TaskFactory, annotator


def step_label(texts, ratings):
    return [
        {
            "completions": [{"text": t, "rating": r, "flagged": False}],
            "human_completion": None,
            "chosen_completion": 0,
        }
        for t, r in zip(texts, ratings, strict=True)
    ]


def build_world(n_problems=24, per_problem=6):
    """Problems with graded candidates; two labeled candidates per problem (one wrong with a
    negative step, one right), plus a QC label that must never be trained on."""
    problems = []
    for p in range(n_problems):
        problem = ProblemFactory(unique_id=f"test/algebra/{p}.json", answer=str(2 * p))
        problems.append(problem)
        for i in range(per_problem):
            right = i % 3 == 0
            answer = str(2 * p) if right else str(2 * p + i)
            steps = [
                f"Attempt {i}: we add {p} and {p}.",
                f"That gives {answer}.",
                f"# Answer\n\n{answer}",
            ]
            s = SolutionFactory.create(
                problem=problem,
                steps=steps,
                answer=answer,
                grade=Grade.CORRECT if right else Grade.INCORRECT,
            )
            if i < 2:
                ratings = [1, 1, 1] if right else [1, -1]
                # Labels of a uniform draw: on reserved problems they are evaluation labels.
                task = TaskFactory(
                    solution=s, generation=None, queued_score=None, queued_by="uniform"
                )
                LabelFactory(
                    task=task,
                    steps=step_label(steps[: len(ratings)], ratings),
                    ratings=ratings,
                    finish_reason="solution" if right else "found_error",
                )
    qc = TaskFactory(
        solution=SolutionFactory.create(problem=problems[0]), kind=TaskKind.QUALITY_CONTROL
    )
    LabelFactory(task=qc, is_gold=True)
    return problems


def test_training_data_excludes_qc_and_splits_by_frozen_problem_hash(db):
    problems = build_world(n_problems=30, per_problem=2)
    items = list(labeled_trajectories())
    assert len(items) == 60  # 2 labels per problem; the QC label is out
    assert {t.finish_reason for t in items} == {"solution", "found_error"}
    train, held_out = trajectories_split()
    keys = [p.unique_id for p in problems]
    _, expected = split_by_problem(keys, eval_fraction=EVAL_FRACTION, seed=EVAL_SEED)
    assert {t.problem_key for t in held_out} == expected
    assert not {t.problem_key for t in train} & expected
    # Frozen: adding problems never moves an existing one across the split.
    _, again = split_by_problem([*keys, "test/new/1.json"], eval_fraction=EVAL_FRACTION, seed=0)
    assert expected <= again


def test_trajectory_follows_the_chosen_or_human_completion(db):
    s = SolutionFactory.create(steps=["a", "b", "c"])
    steps = step_label(["a", "b"], [1, -1])
    steps[1]["completions"].append({"text": "b-alt", "rating": -1, "flagged": False})
    steps[1]["chosen_completion"] = 1
    LabelFactory(task=TaskFactory(solution=s), steps=steps, ratings=[1, -1])
    s2 = SolutionFactory.create(steps=["x", "y"])
    steps2 = step_label(["x", "y"], [1, None])
    steps2[1]["chosen_completion"] = None
    steps2[1]["human_completion"] = {"text": "y-human", "rating": None, "source": "human"}
    LabelFactory(task=TaskFactory(solution=s2), steps=steps2, ratings=[1, None])
    got = {t.solution_id: (t.steps, t.ratings) for t in labeled_trajectories()}
    assert got[s.pk] == (["a", "b-alt"], [1, -1])
    # A step the labeler wrote is a positive example (LabelHygiene may leave it out).
    assert got[s2.pk] == (["x", "y-human"], [1, 1])


@pytest.mark.slow
def test_train_evaluate_promote_rescore_fill(db, selector_settings):
    build_world()
    base = selector_create_base()
    assert base.is_active and base.status == VersionStatus.READY
    n_solutions = 24 * 6 + 1
    assert candidates_score(version=base, batch=50) == n_solutions
    assert candidates_score(version=base) == 0  # only what it hasn't scored
    scores = SolutionScore.objects.filter(version=base)
    assert scores.count() == n_solutions
    assert all(0.0 <= s.score <= 1.0 and len(s.step_scores) == 3 for s in scores)

    first = queue_fill(per_problem=2)
    reserved = Problem.objects.filter(eval_reserved=True).count()
    assert reserved >= 1  # test/algebra/{0..23}.json under the default fraction and seed
    assert first.generation == 1
    assert (first.created, first.eval_created) == (2 * (24 - reserved), 2 * reserved)
    gen1 = Task.objects.filter(kind=TaskKind.NORMAL, generation=1)
    touched = gen1.order_by("pk").first()
    assert touched is not None
    Lease.objects.create(task=touched, annotator=annotator(), expires_at=touched.created_at)
    touched.lease_count = 1
    touched.save(update_fields=["lease_count"])

    new = selector_train(epochs=2, name="v1")
    assert new.status == VersionStatus.READY and not new.is_active
    summary = new.training_summary
    assert summary["init_from"] == base.name
    assert summary["train_labels"] + summary["validation_labels"] + summary["held_out_labels"] == 48
    assert summary["held_out_problems"] >= 1

    metrics = selector_evaluate(version=new)
    new.refresh_from_db()
    assert new.metrics == metrics
    assert metrics["held_out"]["labels"] == summary["held_out_labels"]
    assert metrics["step"]["n_steps"] > 0 and metrics["step"]["n_negative"] > 0
    assert 0.0 <= metrics["step"]["auroc"] <= 1.0
    assert metrics["first_error"]["n_erroneous"] > 0
    bon = metrics["best_of_n"]
    assert bon["n"][0] == 1 and len(bon["selector"]) == len(bon["n"])
    assert metrics["compared_with"]["version"] == base.name
    assert metrics["eval_set"]["id"] == metrics["compared_with"]["eval_set_id"] is not None
    assert metrics["best_of_n"]["problems"][0] == metrics["best_of_n_problems"]
    assert metrics["roc"]["fpr"][0] == 0.0 and metrics["roc"]["tpr"][-1] == 1.0
    auroc = metrics["comparison"]["intervals"]["step.auroc"]
    assert auroc["diff"] == pytest.approx(
        metrics["step"]["auroc"] - metrics["compared_with"]["step"]["auroc"]
    )
    assert auroc["low"] <= auroc["diff"] <= auroc["high"]

    untouched_before = {t.pk: (t.priority, t.queued_score) for t in gen1}
    result = selector_promote(version=new)
    new.refresh_from_db()
    base.refresh_from_db()
    assert new.is_active and not base.is_active and new.promoted_at is not None
    assert SolutionScore.objects.filter(version=new).count() == n_solutions
    assert result["reprioritized"] == first.created - 1
    for t in gen1.select_related("solution__problem"):
        priority, queued_score = untouched_before[t.pk]
        assert t.queued_score == queued_score  # the score when queued never changes
        if t.pk == touched.pk or t.solution.problem.eval_reserved:
            assert t.priority == priority  # someone is working on it / no selector ranks it
        else:
            assert t.priority == SolutionScore.objects.get(version=new, solution=t.solution).score

    second = queue_fill(per_problem=2)
    assert second.generation == 2 and second.created == first.created
    assert second.version_id == new.pk


def test_training_without_labels_fails_clearly_and_leaves_no_version(db, selector_settings):
    selector_create_base()
    with pytest.raises(SelectorError, match="no training labels"):
        selector_train(epochs=1)
    assert SelectorVersion.objects.count() == 1


def test_promote_refuses_a_version_that_is_not_ready(db):
    v = SelectorVersion.objects.create(name="broken", base_model="-", status="failed")
    with pytest.raises(SelectorError, match="not ready"):
        selector_promote(version=v)
    assert not SelectorVersion.objects.filter(is_active=True).exists()


def test_base_version_is_active_only_when_none_is(db, selector_settings):
    first = selector_create_base(name="b1")
    second = selector_create_base(name="b2")
    assert first.is_active and not second.is_active
    with pytest.raises(SelectorError, match="already exists"):
        selector_create_base(name="b1")
    with pytest.raises(SelectorError, match="letters, digits"):
        selector_create_base(name="../evil")
    assert Label.objects.count() == 0


@pytest.mark.slow
def test_first_training_starts_from_the_base_model_when_no_version_exists(db, selector_settings):
    build_world(n_problems=6, per_problem=2)
    version = selector_train(epochs=1, name="first")
    assert version.status == VersionStatus.READY and not version.is_active
    assert version.training_summary["init_from"].startswith("base:")
    checkpoints = selector_settings.SELECTOR_CHECKPOINT_DIR
    assert (checkpoints / "first" / "config.json").is_file()
    assert [p.name for p in checkpoints.iterdir()] == ["first"]  # the fresh init is gone


def test_failed_training_marks_the_version_failed(db, selector_settings):
    build_world(n_problems=6, per_problem=2)
    selector_settings.SELECTOR_BASE_MODEL = str(selector_settings.SELECTOR_CHECKPOINT_DIR)
    selector_settings.SELECTOR_CHECKPOINT_DIR.mkdir(parents=True)
    with pytest.raises(Exception, match="not a local model directory"):
        selector_train(epochs=1, name="doomed")
    version = SelectorVersion.objects.get(name="doomed")
    assert version.status == VersionStatus.FAILED
    assert "not a local model directory" in version.training_summary["error"]
