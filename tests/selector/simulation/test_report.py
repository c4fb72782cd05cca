import math

import numpy as np
import pytest

from selector.ml.metrics import auroc
from selector.simulation.report import (
    RULE_COMPARISONS,
    analyse,
    ceiling_of,
    labels_to_reach,
    plots_write,
    ratio_matched,
    ratio_of,
    summary_write,
)


def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    risk = np.round(rng.random(300) + y * 0.3, 1)  # rounded: ties count half in both
    assert auroc(y, risk) == pytest.approx(roc_auc_score(y, risk))


def test_labels_to_reach_interpolates_on_log_labels():
    needed, censored = labels_to_reach([100, 400], [0.6, 0.8], 0.7)
    assert censored is None
    assert needed == pytest.approx(200.0)  # halfway in log space
    assert labels_to_reach([100, 400], [0.6, 0.8], 0.5) == (100.0, "below")
    assert labels_to_reach([100, 400], [0.6, 0.8], 0.9) == (400.0, "above")
    # A dip does not count as reaching the target later.
    assert labels_to_reach([100, 200, 400], [0.7, 0.5, 0.8], 0.7)[0] == 100.0


def test_ratio_is_how_many_more_labels_uniform_needs():
    uniform = ([100, 200, 400, 800], [0.6, 0.65, 0.7, 0.8])
    active = ([100, 200, 400], [0.6, 0.7, 0.8])
    ratio, censored = ratio_of(uniform, active)
    assert censored is None
    assert ratio == pytest.approx(2.0)


def _runs(strength: dict[str, tuple[float, int]], seeds: int = 3):
    """Held-out trajectories, and per arm a selector whose separation grows with labels."""
    rng = np.random.default_rng(1)
    ratings, problem, fair = [], [], []
    for p in range(30):
        for _ in range(4):
            n = int(rng.integers(2, 6))
            err = int(rng.integers(0, n)) if rng.random() < 0.5 else None
            ratings.append([1] * n if err is None else [1] * err + [-1])
            problem.append(p)
            fair.append(True)
    runs = {}
    for arm, (k, rounds) in strength.items():
        runs[arm] = {}
        for s in range(seeds):
            srng = np.random.default_rng(100 + s)
            rounds_out = []
            for r in range(rounds):
                sep = k * (r + 1)
                scores = [
                    [
                        float(
                            np.clip(
                                (0.25 if x == -1 else 0.75) * sep
                                + 0.5 * (1 - sep)
                                + srng.normal(0, 0.15),
                                0,
                                1,
                            )
                        )
                        for x in rs
                    ]
                    for rs in ratings
                ]
                rounds_out.append(
                    {"labels": 100 * 2**r, "steps_rated": 300 * 2**r, "scores": scores}
                )
            runs[arm][s] = rounds_out
    return {"problem": problem, "ratings": ratings, "fair": fair}, runs


def test_analyse_finds_the_better_arm_more_data_efficient(tmp_path):
    held_out, runs = _runs({"uniform": (0.15, 6), "80_20": (0.25, 3)})
    result = analyse(held_out=held_out, runs=runs, resamples=30)
    de = result["data_efficiency"]
    # 80/20 reaches at 400 labels what uniform reaches at 1,600: about 4x.
    assert de["censored"] is None
    assert 2.5 < de["ratio"] < 6.0
    lo, hi = de["ci95"]
    assert lo <= de["ratio"] <= hi
    curve = result["curves"]["80_20"]["step_auroc"]
    assert curve["mean"][-1] > curve["mean"][0]
    assert all(a <= b for a, b in zip(curve["lo"], curve["hi"], strict=True))
    assert len(curve["labels"]) == 3
    written = plots_write(result["curves"], tmp_path)
    assert all(p.stat().st_size > 1000 for p in written)
    report = {
        "config": {"preset": "test", "pool": "synthetic", "seeds": 3, "rounds": 3},
        "data_efficiency": de,
        "arms": {
            "uniform": {
                "0": [
                    {"labels": 400, "steps_rated": 1200, "metrics": {"step_auroc": 0.7, "f1": None}}
                ]
            }
        },
    }
    text = summary_write(report, tmp_path).read_text()
    assert f"{de['ratio']:.3f}" in text and "| uniform | 400 | 1200 | 0.700 | n/a |" in text


def test_equal_arms_give_an_interval_around_one():
    held_out, runs = _runs({"uniform": (0.2, 3), "80_20": (0.2, 3)})
    de = analyse(held_out=held_out, runs=runs, resamples=30)["data_efficiency"]
    assert de["ci95"][0] <= 1.0 <= de["ci95"][1] or math.isclose(de["ratio"], 1.0, rel_tol=0.3)


def test_steps_past_the_window_are_left_out_never_padded():
    """Decision 0005's one rule in the simulation's report: an unscored rated step is not in
    the step AUROC (it was padded with 0.5), and a first-error call that needs one is left out
    of F1 (the cut part was read as "no error"); both are counted."""
    from selector.simulation.report import HeldOutIndex

    index = HeldOutIndex(
        {
            "problem": [0, 1, 2, 3],
            "ratings": [[1, -1], [1, 1, -1], [1, 1, 1], [1, 1]],
            "fair": [True, True, True, True],
        }
    )
    # The second and third are cut after two steps; the first and last are whole.
    prepared = index.prepare([[0.9, 0.3], [0.4, 0.45], [0.9, 0.9], [0.9, 0.9]])
    assert prepared.unscored_rated_steps == 2
    assert prepared.decided.tolist() == [True, False, False, True]
    # The one scored negative (risk 0.7) outranks every scored positive (0.1, 0.6, 0.55, …).
    assert index.metric(prepared, "step_auroc") == pytest.approx(1.0)
    # Called: the first (error at 1, found) and the last (no error, none called).
    assert index.metric(prepared, "f1") == pytest.approx(1.0)


RATIO_KEYS = {"metric", "arms", "ratio", "censored", "ci95", "method"}


def test_both_ratios_share_one_schema_and_one_set_of_resamples():
    held_out, runs = _runs({"uniform": (0.15, 6), "80_20": (0.25, 3), "random_wrong": (0.15, 6)})
    result = analyse(held_out=held_out, runs=runs, resamples=30)
    de, prm = result["data_efficiency"], result["data_efficiency_prm"]
    assert set(de) == set(prm) == RATIO_KEYS
    assert de["arms"] == ["80_20", "uniform"] and prm["arms"] == ["80_20", "random_wrong"]
    for ratio in (de, prm):
        lo, hi = ratio["ci95"]
        assert lo <= ratio["ratio"] <= hi or ratio["censored"]
        assert "30 resamples" in ratio["method"]
    # random_wrong learns as slowly as uniform here, so 80/20 is worth more labels of it.
    assert prm["ratio"] > 1.5
    # Without the grader-only arm the second ratio is there, undefined, with the same keys.
    alone = analyse(
        held_out=held_out, runs={a: runs[a] for a in ("uniform", "80_20")}, resamples=5
    )["data_efficiency_prm"]
    assert set(alone) == RATIO_KEYS and math.isnan(alone["ratio"])


def test_the_matched_ratio_compares_two_arms_that_end_at_the_same_budget():
    slow = ([100, 200, 400], [0.6, 0.65, 0.7])
    fast = ([100, 200, 400], [0.6, 0.7, 0.8])
    # fast reaches slow's best (0.7) at 200 labels, slow at 400: worth 2x; and the other way.
    ratio, censored = ratio_matched(slow, fast)
    assert censored is None and ratio == pytest.approx(2.0)
    assert ratio_matched(fast, slow)[0] == pytest.approx(0.5)
    assert ratio_matched(fast, fast)[0] == pytest.approx(1.0)
    # ratio_of cannot see it: slow never gets past 0.7, so the ratio is censored at 1.
    assert ratio_of(slow, fast) == (pytest.approx(1.0), "above")


def test_the_rules_are_compared_with_uniform_and_with_80_20():
    held_out, runs = _runs(
        {"uniform": (0.15, 6), "80_20": (0.2, 3), "uncertainty": (0.3, 3), "mixed": (0.2, 3)}
    )
    result = analyse(held_out=held_out, runs=runs, resamples=30)
    for key, active, base, _ in RULE_COMPARISONS:
        ratio = result[key]
        assert set(ratio) == RATIO_KEYS and ratio["arms"] == [active, base]
        lo, hi = ratio["ci95"]
        assert lo <= ratio["ratio"] <= hi or ratio["censored"]
    # uncertainty learns fastest here: worth more labels of uniform and of 80/20; mixed is
    # 80/20's twin, so its ratio against 80/20 is about 1.
    assert result["data_efficiency_uncertainty"]["ratio"] > result["data_efficiency"]["ratio"]
    assert result["data_efficiency_uncertainty_vs_80_20"]["ratio"] > 1.2
    assert 0.7 < result["data_efficiency_mixed_vs_80_20"]["ratio"] < 1.4
    # Arms that did not run leave their comparisons out.
    assert "data_efficiency_mixed" not in analyse(
        held_out=held_out, runs={a: runs[a] for a in ("uniform", "80_20")}, resamples=5
    )


def _round(labels, auroc, f1=None, f1_tuned=None, threshold=None):
    metrics = {"step_auroc": auroc, "f1": f1, "f1_tuned": f1_tuned, "threshold": threshold}
    return {"labels": labels, "metrics": metrics}


def test_ceiling_is_uniforms_last_round_with_the_room_below_it():
    raw = {
        "uniform": {
            s: {
                "rounds": [
                    _round(100, 0.60 + d),
                    _round(400, 0.70 + d),
                    _round(1600, 0.90 + d, 0.5 + d, 0.6, 0.4),
                ]
            }
            for s, d in ((0, 0.0), (1, 0.02))
        },
        "80_20": {s: {"rounds": [_round(100, 0.6), _round(200, 0.8)]} for s in (0, 1)},
    }
    ceiling = ceiling_of(raw, config={"ceiling": True})
    assert ceiling is not None
    assert {"arm", "labels", "step_auroc", "f1"} <= set(ceiling)
    assert ceiling["arm"] == "uniform" and ceiling["labels"] == 1600
    assert ceiling["step_auroc"] == pytest.approx(0.91) and ceiling["f1"] == pytest.approx(0.51)
    assert ceiling["f1_tuned"] == pytest.approx(0.6) and ceiling["threshold"] == 0.4
    room = ceiling["room"]
    assert room["seed_set"] == {"labels": 100, "step_auroc": pytest.approx(0.61)}
    # 200 labels lies halfway between 100 and 400 on log(labels).
    assert room["at_80_20_final"]["labels"] == 200
    assert room["at_80_20_final"]["step_auroc"] == pytest.approx(0.66)
    assert ceiling_of(raw, config={"ceiling": False}) is None
