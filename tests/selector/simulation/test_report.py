import math

import numpy as np
import pytest

from selector.ml.metrics import auroc
from selector.simulation.report import (
    analyse,
    labels_to_reach,
    plots_write,
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
