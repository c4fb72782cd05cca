"""How good a selector is: step AUROC, first-error accuracy, best-of-N (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def ranking_from_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float] | None:
    """(AUROC, average precision) from the positive and negative weight at each distinct score,
    scores ascending; sklearn's definitions (ties count half, one threshold per score). None
    when a class has no weight. The one AUROC of the project: the evaluator's bootstrap calls
    this with resampled weights thousands of times, so it is a few numpy sums."""
    p_total, n_total = pos.sum(), neg.sum()
    if p_total <= 0 or n_total <= 0:
        return None
    below = np.cumsum(neg) - neg  # negatives strictly below each score
    auroc = float((pos * (below + 0.5 * neg)).sum() / (p_total * n_total))
    tp = np.cumsum(pos[::-1])  # thresholds from the highest score down
    fp = np.cumsum(neg[::-1])
    precision = tp / np.maximum(tp + fp, 1e-300)
    return auroc, float((pos[::-1] / p_total * precision).sum())


def ranking_metrics(
    y: np.ndarray, risk: np.ndarray, weights: np.ndarray | None = None
) -> tuple[float, float] | None:
    """(AUROC, average precision) of ``risk`` for the boolean class ``y``, optionally weighted;
    None when only one class is present."""
    y = np.asarray(y, dtype=bool)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    values, inverse = np.unique(np.asarray(risk, dtype=float), return_inverse=True)
    pos = np.bincount(inverse, weights=w * y, minlength=len(values))
    neg = np.bincount(inverse, weights=w * ~y, minlength=len(values))
    return ranking_from_counts(pos, neg)


def auroc(y: np.ndarray, risk: np.ndarray) -> float:
    """Area under the ROC curve of ``risk`` for the boolean class ``y``; NaN with one class."""
    ranking = ranking_metrics(y, risk)
    return float("nan") if ranking is None else ranking[0]


def step_metrics(step_scores: Sequence[float], step_ratings: Sequence[int]) -> dict[str, Any]:
    """Negative-vs-not detection over labeled steps: the "positive" class is a negative step,
    predicted by 1 - score. AUROC/AUPRC are None when only one class is present."""
    if len(step_scores) != len(step_ratings):
        raise ValueError(f"{len(step_scores)} scores for {len(step_ratings)} ratings")
    for j, rating in enumerate(step_ratings):
        if rating not in (-1, 0, 1):
            raise ValueError(f"step {j}: rating must be -1, 0 or 1, got {rating!r}")
    y = np.asarray([r == -1 for r in step_ratings], dtype=bool)
    risk = 1.0 - np.asarray(step_scores, dtype=float)
    ranking = ranking_metrics(y, risk)
    return {
        "auroc": ranking[0] if ranking else None,
        "auprc": ranking[1] if ranking else None,
        "n_steps": len(y),
        "n_negative": int(y.sum()),
    }


# Steps past the window (docs/decisions/0005-causal-step-scores.md, "one rule"): a step the
# model could not score has no score, and none is made up for it. A metric leaves out what
# would need one and every report counts it; the queue ranks such a candidate after every
# fully scored one of its problem, at priority 0.


def scored_step_targets(
    step_scores: Sequence[float], ratings: Sequence[int | None]
) -> tuple[list[tuple[float, int]], int]:
    """(score, rating) of each rated step up to and including the first negative (later steps
    carry no target), and how many of those rated steps have no score (left out)."""
    pairs: list[tuple[float, int]] = []
    unscored = 0
    for j, rating in enumerate(ratings):
        if rating is None:
            continue
        if j < len(step_scores):
            pairs.append((float(step_scores[j]), int(rating)))
        else:
            unscored += 1
        if rating == -1:
            break
    return pairs, unscored


def first_error_decided(*, n_scored: int, n_steps: int, first_error: int | None) -> bool:
    """Whether a first-error call needs only scored steps: always when every step was scored;
    otherwise only for an erroneous solution whose first error is among the scored steps (the
    call is right iff that step is the first scored below the threshold). A correct solution
    with unscored steps, or an error past them, is undecided: left out and counted."""
    if n_scored >= n_steps:
        return True
    return first_error is not None and first_error < n_scored


def predicted_first_error(step_scores: Sequence[float], threshold: float) -> int | None:
    for j, s in enumerate(step_scores):
        if s < threshold:
            return j
    return None


def first_error_metrics(
    solutions: Sequence[tuple[list[float], int | None]], *, threshold: float = 0.5
) -> dict[str, Any]:
    """ProcessBench-style: on erroneous solutions the predicted first error (first step scored
    below ``threshold``) must be the true one; on correct solutions no step may be flagged.
    ``f1`` is the harmonic mean of the two accuracies; None when a side is empty."""
    hits_err = n_err = hits_ok = n_ok = 0
    for i, (scores, true_index) in enumerate(solutions):
        if true_index is not None and not 0 <= true_index < len(scores):
            raise ValueError(
                f"solution {i}: first error {true_index} outside its {len(scores)} steps"
            )
        predicted = predicted_first_error(scores, threshold)
        if true_index is None:
            n_ok += 1
            hits_ok += predicted is None
        else:
            n_err += 1
            hits_err += predicted == true_index
    acc_err = hits_err / n_err if n_err else None
    acc_ok = hits_ok / n_ok if n_ok else None
    f1: float | None = None
    if acc_err is not None and acc_ok is not None:
        f1 = 0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok)
    return {
        "acc_erroneous": acc_err,
        "acc_correct": acc_ok,
        "f1": f1,
        "n_erroneous": n_err,
        "n_correct": n_ok,
        "threshold": threshold,
    }


def best_of_n(
    problems: Sequence[Sequence[tuple[float, str, bool]]],
    *,
    ns: Sequence[int] | None = None,
    trials: int = 200,
    seed: int = 0,
) -> dict[str, list[Any]]:
    """Best-of-N accuracy of the selector vs majority vote vs a random pick.

    Per problem: candidates as (selector score, normalized final answer, is_correct). For each
    N (default 1, 2, 4, … up to the largest pool) and each problem with at least N candidates,
    ``trials`` random size-N subsets are drawn; the selector picks the top score, majority vote
    picks the most common answer (ties broken at random), random counts the expected accuracy
    of a uniform pick. Accuracies are averaged over trials, then over problems.
    ``problems`` (the number of problems that entered each N) is returned alongside.
    """
    pools = [list(p) for p in problems if len(p) > 0]
    largest = max((len(p) for p in pools), default=0)
    if ns is None:
        ns = []
        n = 1
        while n <= largest:
            ns.append(n)
            n *= 2
        if largest and ns[-1] != largest:
            ns.append(largest)
    rng = np.random.default_rng(seed)
    out: dict[str, list[Any]] = {
        "n": [],
        "selector": [],
        "majority": [],
        "random": [],
        "problems": [],
    }
    for n in ns:
        if n < 1:
            raise ValueError(f"N must be at least 1, got {n}")
        sel_acc, maj_acc, rnd_acc = [], [], []
        for pool in pools:
            size = len(pool)
            if size < n:
                continue
            scores = np.asarray([c[0] for c in pool], dtype=float)
            correct = np.asarray([bool(c[2]) for c in pool], dtype=bool)
            codes_by_answer: dict[str, int] = {}
            codes = np.asarray(
                [codes_by_answer.setdefault(c[1], len(codes_by_answer)) for c in pool]
            )
            n_codes = len(codes_by_answer)
            # An answer is correct when any candidate giving it was graded correct.
            code_correct = np.zeros(n_codes, dtype=bool)
            np.logical_or.at(code_correct, codes, correct)
            # Random size-n subsets, in random order (so argmax ties break at random too).
            subsets = np.argsort(rng.random((trials, size)), axis=1)[:, :n]
            picks = subsets[np.arange(trials), np.argmax(scores[subsets], axis=1)]
            sel_acc.append(correct[picks].mean())
            counts = np.zeros((trials, n_codes))
            np.add.at(counts, (np.repeat(np.arange(trials), n), codes[subsets].ravel()), 1.0)
            # Noise below 1 only reorders answers with equal counts.
            voted = np.argmax(counts + 0.5 * rng.random(counts.shape), axis=1)
            maj_acc.append(code_correct[voted].mean())
            rnd_acc.append(correct[subsets].mean())
        if not sel_acc:
            continue
        out["n"].append(int(n))
        out["selector"].append(float(np.mean(sel_acc)))
        out["majority"].append(float(np.mean(maj_acc)))
        out["random"].append(float(np.mean(rnd_acc)))
        out["problems"].append(len(sel_acc))
    return out


def processbench_f1(
    step_scores: Sequence[Sequence[float]], labels: Sequence[int], *, threshold: float = 0.5
) -> tuple[list[int], dict[str, Any]]:
    """ProcessBench's metric. ``labels[i]`` is the 0-based index of item i's first wrong step,
    or -1 when every step is right. The predicted first error is the first step scoring below
    ``threshold`` (-1 when none). Accuracy is taken separately on erroneous items (prediction
    == label) and correct ones (prediction == -1); ``f1`` is their harmonic mean (None when a
    side has no items). Returns (predictions, metrics)."""
    if len(step_scores) != len(labels):
        raise ValueError(f"{len(step_scores)} score lists for {len(labels)} labels")
    predictions: list[int] = []
    hits_err = n_err = hits_ok = n_ok = 0
    for scores, label in zip(step_scores, labels, strict=True):
        found = predicted_first_error(scores, threshold)
        predicted = -1 if found is None else found
        predictions.append(predicted)
        if label == -1:
            n_ok += 1
            hits_ok += predicted == -1
        else:
            n_err += 1
            hits_err += predicted == label
    acc_err = hits_err / n_err if n_err else None
    acc_ok = hits_ok / n_ok if n_ok else None
    f1: float | None = None
    if acc_err is not None and acc_ok is not None:
        f1 = 0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok)
    return predictions, {
        "f1": f1,
        "acc_erroneous": acc_err,
        "acc_correct": acc_ok,
        "n_erroneous": n_err,
        "n_correct": n_ok,
        "threshold": threshold,
    }


THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 … 0.95


def threshold_choose(
    solutions: Sequence[tuple[list[float], int | None]],
    *,
    grid: Sequence[float] = THRESHOLD_GRID,
    default: float = 0.5,
) -> dict[str, Any]:
    """The first-error threshold with the best F1 on ``solutions`` (step scores, first error),
    which must be held-in validation data, never the held-out set. Ties go to the threshold
    nearest ``default``; with no erroneous or no correct solution there is nothing to choose
    from and ``default`` is kept (``chosen`` False)."""
    best: tuple[float, float] | None = None
    for t in grid:
        f1 = first_error_metrics(solutions, threshold=t)["f1"]
        if f1 is None:
            return {"value": default, "chosen": False, "f1": None, "solutions": len(solutions)}
        key = (f1, -abs(t - default))
        if best is None or key > (best[1], -abs(best[0] - default)):
            best = (float(t), float(f1))
    if best is None:
        return {"value": default, "chosen": False, "f1": None, "solutions": len(solutions)}
    return {"value": best[0], "chosen": True, "f1": best[1], "solutions": len(solutions)}
