"""Metrics on hand-made cases whose answers are known."""

from __future__ import annotations

import pytest

from selector.ml.metrics import best_of_n, first_error_metrics, step_metrics


def test_perfect_separation_gives_auroc_one_and_inverted_gives_zero():
    scores = [0.9, 0.8, 0.1, 0.95, 0.2]
    ratings = [1, 0, -1, 1, -1]
    m = step_metrics(scores, ratings)
    assert m == {"auroc": 1.0, "auprc": 1.0, "n_steps": 5, "n_negative": 2}
    inverted = step_metrics([1 - s for s in scores], ratings)
    assert inverted["auroc"] == 0.0


def test_auroc_counts_ties_as_half():
    m = step_metrics([0.5, 0.5, 0.9, 0.1], [-1, 1, 1, -1])
    # pairs (neg, pos): (0.5,0.5) tie=.5, (0.5,0.9)=1, (0.1,0.5)=1, (0.1,0.9)=1 -> 3.5/4
    assert m["auroc"] == pytest.approx(0.875)


def test_the_one_auroc_matches_sklearn_with_ties_weights_and_both_entry_points():
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    from selector.ml.metrics import auroc, ranking_metrics

    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(2, 200))
        ratings = rng.choice([-1, 0, 1], size=n).tolist()
        ratings[0], ratings[-1] = -1, 1  # both classes
        scores = np.round(rng.random(n), int(rng.integers(0, 3))).tolist()  # many ties
        y, risk = np.asarray(ratings) == -1, 1.0 - np.asarray(scores)
        expected = roc_auc_score(y, risk)
        assert step_metrics(scores, ratings)["auroc"] == pytest.approx(expected)
        assert step_metrics(scores, ratings)["auprc"] == pytest.approx(
            average_precision_score(y, risk)
        )
        assert auroc(y, risk) == pytest.approx(expected)
        w = rng.integers(1, 4, n).astype(float)
        weighted = ranking_metrics(y, risk, w)
        assert weighted is not None
        assert weighted[0] == pytest.approx(roc_auc_score(y, risk, sample_weight=w))
    assert np.isnan(auroc(np.asarray([True, True]), np.asarray([0.1, 0.2])))


def test_auroc_is_undefined_with_one_class():
    m = step_metrics([0.3, 0.4], [1, 0])
    assert m["auroc"] is None and m["auprc"] is None and m["n_negative"] == 0
    with pytest.raises(ValueError, match="2 scores for 3 ratings"):
        step_metrics([0.1, 0.2], [1, 1, 1])
    with pytest.raises(ValueError, match="step 1"):
        step_metrics([0.1, 0.2], [1, None])  # type: ignore[list-item]


def test_first_error_arithmetic():
    solutions = [
        ([0.9, 0.2, 0.1], 1),  # erroneous, found at 1: hit
        ([0.3, 0.9, 0.9], 2),  # erroneous, flagged too early: miss
        ([0.9, 0.9, 0.9], 0),  # erroneous, not flagged: miss
        ([0.9, 0.8], None),  # correct, nothing flagged: hit
        ([0.9, 0.4], None),  # correct, false alarm: miss
    ]
    m = first_error_metrics(solutions)
    assert m["n_erroneous"] == 3 and m["n_correct"] == 2
    assert m["acc_erroneous"] == pytest.approx(1 / 3)
    assert m["acc_correct"] == pytest.approx(1 / 2)
    assert m["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    # The threshold moves the prediction: at 0.25 the second solution is no longer flagged
    # at step 0, and the fifth no longer raises a false alarm.
    m = first_error_metrics(solutions, threshold=0.25)
    assert m["acc_correct"] == 1.0
    assert m["acc_erroneous"] == pytest.approx(1 / 3)


def test_first_error_sides_can_be_empty():
    m = first_error_metrics([([0.9], None)])
    assert m["acc_erroneous"] is None and m["f1"] is None and m["acc_correct"] == 1.0
    with pytest.raises(ValueError, match="solution 0: first error 3"):
        first_error_metrics([([0.9], 3)])


def _pool(n_right: int, n_wrong_common: int, n_wrong_other: int):
    # The selector is an oracle (right answers score high); the wrong answer "7" is the
    # most common, so majority vote is usually wrong.
    pool = [(0.9, "5", True)] * n_right
    pool += [(0.1, "7", False)] * n_wrong_common
    pool += [(0.2, f"w{i}", False) for i in range(n_wrong_other)]
    return pool


def test_best_of_n_oracle_selector_beats_majority_and_random():
    problems = [_pool(2, 5, 1) for _ in range(5)]
    out = best_of_n(problems, trials=300, seed=1)
    assert out["n"] == [1, 2, 4, 8]
    assert out["problems"] == [5, 5, 5, 5]
    # N=1: every method is the same uniform pick, 2/8 right.
    assert out["selector"][0] == pytest.approx(0.25, abs=0.05)
    assert out["random"][0] == pytest.approx(0.25, abs=0.05)
    # N=8 is the whole pool: the oracle always finds a right answer; the vote says 7.
    assert out["selector"][-1] == 1.0
    assert out["majority"][-1] == 0.0
    assert out["random"][-1] == pytest.approx(0.25)
    assert all(s >= m for s, m in zip(out["selector"], out["majority"], strict=True))
    assert out["selector"][2] > out["random"][2]
    # Selector accuracy at N=4: 1 - P(no right answer among 4 of 8 with 2 right) = 1 - 15/70.
    assert out["selector"][2] == pytest.approx(1 - 15 / 70, abs=0.05)


def test_best_of_n_is_seeded_and_skips_pools_smaller_than_n():
    problems = [_pool(1, 1, 0), _pool(3, 2, 3)]
    a = best_of_n(problems, ns=[1, 2, 8], trials=50, seed=3)
    assert a == best_of_n(problems, ns=[1, 2, 8], trials=50, seed=3)
    assert a["n"] == [1, 2, 8] and a["problems"] == [2, 2, 1]
    # Majority with a 1-1 tie picks each answer half the time.
    tie = best_of_n([_pool(1, 1, 0)], ns=[2], trials=400, seed=0)
    assert tie["majority"][0] == pytest.approx(0.5, abs=0.1)
    assert best_of_n([], trials=5) == {
        "n": [],
        "selector": [],
        "majority": [],
        "random": [],
        "problems": [],
    }
