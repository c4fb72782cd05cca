"""A candidate whose steps were not all scored is never ranked "convincing" on the cut."""

from labeling.models import Grade, Task
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import queue_fill
from tests.factories import ProblemFactory, SolutionFactory


def test_cut_candidates_rank_after_every_fully_scored_one_and_are_counted(db, settings):
    settings.SELECTOR_EVAL_FRACTION = 0.0  # the problem must be the selector's to fill
    version = SelectorVersion.objects.create(
        name="v", base_model="-", status=VersionStatus.READY, is_active=True
    )
    problem = ProblemFactory()
    pool = {}
    for name, score, cut in [("cut", 0.99, 3), ("a", 0.6, 0), ("b", 0.5, 0), ("c", 0.4, 0)]:
        s = SolutionFactory.create(problem=problem, grade=Grade.INCORRECT)
        SolutionScore.objects.create(
            solution=s, version=version, score=score, step_scores=[score], truncated_steps=cut
        )
        pool[name] = s
    report = queue_fill(per_problem=3, wrong_fraction=1.0)
    # The highest score belongs to the cut one, yet the three whole ones are chosen.
    assert set(Task.objects.values_list("solution_id", flat=True)) == {pool[n].pk for n in "abc"}
    assert report.truncated == 0
    # With room for everyone it is queued last: priority 0, its score kept as queued_score.
    report = queue_fill(per_problem=4, wrong_fraction=1.0, generation=report.generation)
    task = Task.objects.get(solution=pool["cut"])
    assert (task.priority, task.queued_score) == (0.0, 0.99)
    assert (report.created, report.truncated) == (1, 1)
    assert report.as_dict()["truncated"] == 1


def test_a_rated_step_training_cannot_hold_is_an_error_in_the_version_summary(
    db, selector_settings
):
    from selector.services import selector_train
    from tests.factories import LabelFactory, TaskFactory
    from tests.selector.test_pipeline import build_world, step_label

    build_world(n_problems=6, per_problem=2)
    # A labeled solution whose middle step is longer than the 128-token window.
    for p in range(6):  # one per problem, so some land on the training side of the split
        steps = ["We start.", " ".join(["3 + 4 = 7"] * 80), "# Answer\n\n7"]
        solution = SolutionFactory.create(
            problem=ProblemFactory(unique_id=f"long/{p}"), steps=steps
        )
        LabelFactory(
            task=TaskFactory(solution=solution, generation=None, queued_score=None),
            steps=step_label(steps, [1, 1, -1]),
            ratings=[1, 1, -1],
            finish_reason="found_error",
        )
    version = selector_train(epochs=1, name="v-long")
    summary = version.training_summary
    lost = summary["dropped_rated_steps"]
    assert lost > 0 and lost % 2 == 0  # the long step and the -1 after it, per such label
    assert len(summary["errors"]) == lost // 2
    assert all("does not fit the window" in e for e in summary["errors"])


def test_promotion_gives_a_cut_candidate_priority_0_as_the_fill_does(db, settings):
    """One rule for steps past the window: the queue never ranks by a score over fewer steps,
    whether the task was queued by queue_fill or re-prioritised by a promotion."""
    from selector.services import selector_promote

    settings.SELECTOR_EVAL_FRACTION = 0.0
    old, new = (
        SelectorVersion.objects.create(name=n, base_model="-", status=VersionStatus.READY)
        for n in ("old", "new")
    )
    SelectorVersion.objects.filter(pk=old.pk).update(is_active=True)
    problem = ProblemFactory()
    solutions = [SolutionFactory.create(problem=problem, grade=Grade.INCORRECT) for _ in range(3)]
    for s, (new_score, cut) in zip(solutions, [(0.9, 2), (0.7, 0), (0.3, 0)], strict=True):
        SolutionScore.objects.create(solution=s, version=old, score=0.5, step_scores=[0.5])
        SolutionScore.objects.create(
            solution=s, version=new, score=new_score, step_scores=[new_score], truncated_steps=cut
        )
    queue_fill(per_problem=3, wrong_fraction=1.0, version=old)
    result = selector_promote(version=new)
    priorities = dict(Task.objects.values_list("solution_id", "priority"))
    assert priorities == {solutions[0].pk: 0.0, solutions[1].pk: 0.7, solutions[2].pk: 0.3}
    assert (result["reprioritized"], result["truncated"]) == (3, 1)


def test_benchmark_leaves_out_calls_that_need_an_unscored_step_and_counts_them(
    db, selector_settings, tmp_path
):
    """A correct item cut by the window was called "no error" on its scored steps alone; now
    an item whose call needs an unscored step is left out of F1, counted, and has no call."""
    import json

    from selector.services import selector_create_base
    from selector.services.benchmark import benchmark_evaluate

    selector_settings.SELECTOR_MAX_LENGTH = 64
    long_step = " ".join(["then 3 + 4 = 7"] * 12)
    rows = []
    for i in range(4):
        short = [f"We add {i} and {i}.", f"# Answer\n\n{2 * i}"]
        long = [f"We add {i}.", long_step, long_step, f"# Answer\n\n{i}"]
        rows += [
            {"id": f"short-ok-{i}", "problem": "What?", "steps": short, "label": -1},
            {"id": f"short-bad-{i}", "problem": "What?", "steps": short, "label": 1},
            {"id": f"long-ok-{i}", "problem": "What?", "steps": long, "label": -1},
            {"id": f"long-early-{i}", "problem": "What?", "steps": long, "label": 0},
            {"id": f"long-late-{i}", "problem": "What?", "steps": long, "label": 3},
        ]
    bench = tmp_path / "pb.jsonl"
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    version = selector_create_base(name="pb-cut")
    predictions = tmp_path / "predictions.jsonl"
    result = benchmark_evaluate(version=version, path=bench, predictions=predictions)
    calls = {
        row["id"]: row
        for row in map(json.loads, predictions.read_text(encoding="utf-8").splitlines())
    }
    assert all(len(calls[f"long-ok-{i}"]["step_scores"]) < 4 for i in range(4))  # really cut
    undecided = {k for k, row in calls.items() if row["first_error"] is None}
    assert undecided == {f"long-{kind}-{i}" for kind in ("ok", "late") for i in range(4)}
    assert (result["items"], result["truncated"], result["undecided"]) == (20, 12, 8)
    assert result["n_correct"] + result["n_erroneous"] == 12


def test_evaluation_counts_the_rated_steps_and_calls_it_leaves_out(db, selector_settings):
    """Rated steps past the window are not in the step metrics and are counted; a first-error
    call that needs one is left out and counted (before: dropped without a word)."""
    from selector.services import selector_create_base, selector_evaluate
    from tests.factories import LabelFactory, TaskFactory
    from tests.selector.test_pipeline import step_label

    selector_settings.SELECTOR_EVAL_FRACTION = 1.0
    selector_settings.SELECTOR_MAX_LENGTH = 64
    long_step = " ".join(["then 3 + 4 = 7"] * 12)
    cases = [
        (["We add.", "# Answer\n\n7"], [1, -1], "found_error"),
        (["We add.", "# Answer\n\n7"], [1, 1], "solution"),
        (["We start.", long_step, "# Answer\n\n8"], [1, 1, -1], "found_error"),
        (["We begin.", long_step, "# Answer\n\n7"], [1, 1, 1], "solution"),
    ]
    for i, (steps, ratings, finish) in enumerate(cases):
        solution = SolutionFactory.create(problem=ProblemFactory(unique_id=f"cut/{i}"), steps=steps)
        LabelFactory(
            task=TaskFactory(solution=solution, queued_by="uniform"),
            steps=step_label(steps, ratings),
            ratings=ratings,
            finish_reason=finish,
        )
    metrics = selector_evaluate(version=selector_create_base(name="cut"), resamples=10)
    assert metrics["unscored"] == {
        "truncated_solutions": 2,
        "rated_steps": 4,
        "undecided_first_errors": 2,
        "best_of_n_candidates": 0,
    }
    assert metrics["step"]["n_steps"] == 2 + 2 + 1 + 1
    assert (metrics["first_error"]["n_erroneous"], metrics["first_error"]["n_correct"]) == (1, 1)
