"""The simulation's machinery end to end, at the smallest size: arms, rounds, schema, and that
the oracle's labels (stored through the real queue and label services) match the pool."""

import json
import sqlite3

import pytest
from django.conf import settings

from selector.ml.training import split_by_problem
from selector.simulation.pool import synthetic_pool
from selector.simulation.runner import ARMS, CEILING_K, config_for, extra_budgets, simulation_run


@pytest.mark.slow
def test_simulation_runs_every_arm_through_the_real_services(tmp_path):
    config = config_for("test")
    out = tmp_path / "sim"
    report = simulation_run(config=config, out_dir=out, keep=True)

    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["arms"].keys() == set(ARMS)
    for arm, by_seed in on_disk["arms"].items():
        (rounds,) = by_seed.values()
        assert len(rounds) == config.rounds + 1, arm  # the seed round, then each fill
        assert rounds[0]["labels"] > 0
        assert [r["labels"] for r in rounds] == sorted({r["labels"] for r in rounds})
        for r in rounds:
            assert set(r) == {"labels", "steps_rated", "cpu_seconds", "metrics"}
            assert r["steps_rated"] >= r["labels"]
            assert {"step_auroc", "f1", "bon_selector", "bon_majority"} <= set(r["metrics"])
    # Every arm starts from the same seed set: the same labels and steps in round 0.
    firsts = {(rs["0"][0]["labels"], rs["0"][0]["steps_rated"]) for rs in on_disk["arms"].values()}
    assert len(firsts) == 1
    de = on_disk["data_efficiency"]
    assert set(de) >= {"metric", "ratio", "ci95", "method"} and len(de["ci95"]) == 2
    assert de == report["data_efficiency"]
    # Each uncertainty rule against uniform and against 80/20, with the same keys.
    for key in (
        "data_efficiency_uncertainty",
        "data_efficiency_uncertainty_vs_80_20",
        "data_efficiency_mixed",
        "data_efficiency_mixed_vs_80_20",
    ):
        assert set(on_disk[key]) == set(de), key
    # Every task a fill queued records its arm's rule.
    for arm, rule in (("uncertainty", "uncertainty"), ("mixed", "mixed"), ("80_20", "80_20")):
        db = sqlite3.connect(out / "work" / f"{arm}-0.sqlite3")
        rules = db.execute(
            "SELECT DISTINCT rule FROM labeling_task"
            " WHERE generation > 0 AND queued_by = 'selector'"
        ).fetchall()
        db.close()
        assert rules == [(rule,)], arm
    for name in ("curves_labels.png", "curves_steps.png", "summary.md"):
        assert (out / name).stat().st_size > 0

    # The noise-free oracle's stored labels are the pool's known ratings, up to the first -1.
    pool = synthetic_pool(
        problems=config.problems, candidates=config.candidates, seed=config.pool_seed
    )
    truth = {(p.key, c.steps): c.ratings for p in pool for c in p.candidates}
    # The workers hold out the preset's share of problems, not the product's default.
    _, held = split_by_problem(
        [p.key for p in pool],
        eval_fraction=config.held_out_fraction,
        seed=settings.SELECTOR_EVAL_SEED,
    )
    assert on_disk["pool"]["held_out_problems"] == len(held) > 2
    db = sqlite3.connect(out / "work" / "80_20-0.sqlite3")
    rows = db.execute(
        "SELECT l.ratings, l.finish_reason, s.steps, p.unique_id FROM labeling_label l "
        "JOIN labeling_task t ON t.id = l.task_id JOIN labeling_solution s ON s.id = t.solution_id "
        "JOIN labeling_problem p ON p.id = s.problem_id"
    ).fetchall()
    db.close()
    assert len(rows) >= on_disk["arms"]["80_20"]["0"][-1]["labels"]
    for ratings, finish_reason, steps, key in rows:
        known = truth[key, tuple(json.loads(steps))]
        stored = json.loads(ratings)
        assert stored == [r for r in known if r is not None]
        assert finish_reason == ("found_error" if -1 in stored else "solution")


class Stop(Exception):
    pass


@pytest.mark.slow
def test_a_stopped_run_ends_its_workers_instead_of_waiting_for_them(tmp_path):
    """A cancelled job's progress callback raises: the run stops its arm workers (terminated
    mid-training, so none writes its results) and never starts the queued ones."""
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if sum(d >= 1 for d, _ in calls) >= 2:  # the first poll while the arms train
            raise Stop

    out = tmp_path / "sim"
    with pytest.raises(Stop):
        simulation_run(config=config_for("test"), out_dir=out, keep=True, progress=progress)
    work = out / "work"
    assert calls[0] == (0, calls[0][1]) and calls[-1][0] >= 1
    assert not list(work.glob("raw-*.json"))  # no arm ran to the end
    started = {p.name for p in work.glob("spec-arm-*.json")}
    assert len(started) == config_for("test").jobs  # the queued arms never started
    assert not (out / "report.json").exists()


@pytest.mark.slow
def test_a_run_stopped_while_the_template_builds_never_starts_an_arm(tmp_path):
    """The template build is polled like the arms: a cancel during it ends the build."""
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        if len(calls) >= 2:  # the first poll while the template builds
            raise Stop

    out = tmp_path / "sim"
    with pytest.raises(Stop):
        simulation_run(config=config_for("test"), out_dir=out, keep=True, progress=progress)
    work = out / "work"
    assert [done for done, _ in calls] == [0, 0]
    assert not (work / "held_out.json").exists()  # the template's last write never came
    assert not list(work.glob("spec-arm-*.json"))


def test_both_baselines_run_past_the_active_arms_budget_and_only_uniform_labels_everything():
    """A ratio against a baseline that stops where 80/20 stops can only be 1 or a censored
    bound: every arm without a PRM gets the extra budgets, uniform alone the ceiling round."""
    config = config_for("ci", baseline_extra=[8, 12], ceiling=True)
    assert extra_budgets(config, "uniform") == [8, 12, CEILING_K]
    assert extra_budgets(config, "random_wrong") == [8, 12]
    assert extra_budgets(config, "80_20") == extra_budgets(config, "convincing_wrong") == []
    assert config_for("ci").baseline_extra  # the ci preset can measure both ratios above 1


@pytest.mark.slow
def test_the_ci_setting_pretrains_once_and_measures_the_ceiling_in_the_same_run(tmp_path):
    """The ci preset's path at the smallest size: the pretrained surprise base is built once,
    uniform's last round labels every training candidate (the ceiling, no extra worker), and
    the report carries both ratios with one schema."""
    ci = config_for("ci")
    assert (ci.pool, ci.base_model, ci.ceiling, ci.class_balance) == (
        "synthetic-small",
        "pretrained-surprise",
        True,
        True,
    )
    assert {"uniform", "80_20", "random_wrong"} <= set(ci.arms)
    config = config_for(
        "test",
        pool="synthetic-small",
        base_model="pretrained-surprise",
        ceiling=True,
        class_balance=True,
        pretrain_problems=60,
        pretrain_epochs=1,
        hidden_size=32,
        layers=1,
    )
    out = tmp_path / "sim"
    report = simulation_run(config=config, out_dir=out, keep=True)
    work = out / "work"
    assert len(list(work.glob("pretrained-surprise-base/config.json"))) == 1
    assert len(list(work.glob("spec-*.json"))) == 1 + len(ARMS)  # the template, one per arm
    (uniform,) = report["arms"]["uniform"].values()
    assert len(uniform) == config.rounds + 2  # seed set, the fills, then the ceiling round
    training_candidates = report["pool"]["candidates_unique"] - report["pool"]["held_out_labels"]
    ceiling = report["ceiling"]
    assert ceiling["arm"] == "uniform" and ceiling["labels"] == training_candidates
    assert ceiling["step_auroc"] == uniform[-1]["metrics"]["step_auroc"]
    assert ceiling["room"]["seed_set"]["labels"] == uniform[0]["labels"]
    for key, arms in (("data_efficiency", ["80_20", "uniform"]),
                      ("data_efficiency_prm", ["80_20", "random_wrong"])):  # fmt: skip
        assert set(report[key]) == {"metric", "arms", "ratio", "censored", "ci95", "method"}
        assert report[key]["arms"] == arms
    for rounds in report["arms"]["80_20"].values():
        assert all("f1_tuned" in r["metrics"] and "threshold" in r["metrics"] for r in rounds)
