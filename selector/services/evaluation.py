"""Evaluating a version on the frozen evaluation set, paired with the active one.

Every metric is computed per held-out problem first, so the same problems can be resampled
for both versions (a paired bootstrap: the interval is for challenger minus active, and the
problem-to-problem variation both share cancels out).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from jobs.models import Job
from labeling.answers import answer_normalize
from labeling.models import FinishReason, Grade, Problem, Solution
from selector.models import EvalSet, SelectorVersion, SolutionScore
from selector.services.common import Progress, jsonable, progress_for
from selector.services.eval_set import eval_set_current
from selector.services.scoring import candidates_score
from selector.services.training import LabeledTrajectory, labeled_trajectories
from selector.services.versions import scorer_load, selector_active, version_require_ready

BOOTSTRAP_RESAMPLES = 1000
BEST_OF_N_TRIALS = 200
# Wrong answers are merged by pairwise math-verify checks; a problem with a long tail of
# distinct wrong answers stops merging after this many checks (the rest stay apart).
MAX_EQUIVALENCE_CHECKS_PER_PROBLEM = 500
# Below every real score: best-of-N never picks a candidate it could not score whole while a
# fully scored one is in the subset (decision 0005's rule; queue_fill gives them priority 0).
UNSCORED_RANK = -1.0


def answer_classes(
    *, pools: dict[int, list[tuple[str, str]]], timeout: float | None = None
) -> dict[tuple[int, str], str]:
    """Majority-vote classes: (problem id, answer) → class key, by the grader's equivalence.

    ``pools`` maps a problem to its candidates' (answer, grade). Answers graded correct are
    all equivalent to the ground truth, so to each other. The others are merged greedily:
    each distinct answer is compared with math-verify (under the grader's time limit, in its
    child processes) with one representative of each class found so far; a verdict of
    "correct" (equivalent) joins it to that class. Each distinct pair is checked once.
    """
    from labeling.services.grading import AnswerChecker

    classes: dict[tuple[int, str], str] = {}
    with AnswerChecker(timeout=timeout) as checker:
        for problem_id, candidates in pools.items():
            representatives: list[str] = []  # one answer per class of wrong answers
            by_normal: dict[str, str] = {}
            checks = 0
            for answer in sorted({a for a, g in candidates if g != Grade.CORRECT}):
                normal = answer_normalize(answer)
                if normal in by_normal:
                    classes[(problem_id, answer)] = classes[(problem_id, by_normal[normal])]
                    continue
                found: str | None = None
                budget = max(0, MAX_EQUIVALENCE_CHECKS_PER_PROBLEM - checks)
                others = representatives[:budget]
                checks += len(others)
                for rep, verdict, _ in checker.check_many((r, r, answer) for r in others):
                    if verdict == Grade.CORRECT:
                        found = rep
                        break
                if found is None:
                    representatives.append(answer)
                    classes[(problem_id, answer)] = f"wrong:{len(representatives)}"
                else:
                    classes[(problem_id, answer)] = classes[(problem_id, found)]
                by_normal[normal] = answer
            for answer, grade in candidates:
                if grade == Grade.CORRECT:
                    classes[(problem_id, answer)] = "correct"
    return classes


def _roc_points(scores: Sequence[float], ratings: Sequence[int], limit: int = 200) -> dict:
    from sklearn.metrics import roc_curve

    y = [1 if r == -1 else 0 for r in ratings]
    if len(set(y)) < 2:
        return {"fpr": [], "tpr": []}
    fpr, tpr, _ = roc_curve(y, [1.0 - s for s in scores])
    step = max(1, len(fpr) // limit)
    idx = sorted(set(range(0, len(fpr), step)) | {len(fpr) - 1})
    return {
        "fpr": [round(float(fpr[i]), 5) for i in idx],
        "tpr": [round(float(tpr[i]), 5) for i in idx],
    }


@dataclass
class Outcomes:
    """One version's per-problem results on the evaluation set (what the bootstrap resamples)."""

    step_units: list[str] = field(default_factory=list)
    step_scores: list[float] = field(default_factory=list)
    step_ratings: list[int] = field(default_factory=list)
    fe_units: list[str] = field(default_factory=list)
    fe_items: list[tuple[list[float], int | None]] = field(default_factory=list)
    # problem → {"selector"|"majority"|"random": {N: accuracy}}
    bon: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    # Past the window (decision 0005's one rule): left out, counted.
    truncated: int = 0  # held-out solutions with steps the model could not score
    unscored_rated_steps: int = 0  # rated steps with no score: not in the step metrics
    undecided: int = 0  # solutions whose first-error call needs an unscored step
    bon_truncated: int = 0  # best-of-N candidates with unscored steps: ranked last


def _best_of_n_ns(pools: Iterable[Sequence[Any]]) -> list[int]:
    largest = max((len(p) for p in pools), default=0)
    ns, n = [], 1
    while n <= largest:
        ns.append(n)
        n *= 2
    return ns


def _outcomes(
    version: SelectorVersion,
    held_out: Sequence[LabeledTrajectory],
    bon_solutions: dict[str, list[Solution]],
    classes: dict[tuple[int, str], str],
    ns: list[int],
) -> Outcomes:
    from selector.ml.metrics import best_of_n, first_error_decided, scored_step_targets

    out = Outcomes()
    scorer = scorer_load(version)
    scored = scorer.score([(t.problem, t.steps) for t in held_out]) if held_out else []
    for item, result in zip(held_out, scored, strict=True):
        step_scores = [float(s) for s in result.step_scores]
        # Targets run up to the first negative, as in training; unscored ones are counted.
        targets, unscored = scored_step_targets(step_scores, item.ratings)
        out.unscored_rated_steps += unscored
        out.truncated += bool(result.truncated_steps)
        for s, r in targets:
            out.step_units.append(item.problem_key)
            out.step_scores.append(s)
            out.step_ratings.append(r)
        first_error = next((i for i, r in enumerate(item.ratings) if r == -1), None)
        if first_error is None and item.finish_reason != FinishReason.SOLUTION:
            continue  # no verdict to compare with
        if not first_error_decided(
            n_scored=len(step_scores), n_steps=len(item.steps), first_error=first_error
        ):
            out.undecided += 1
            continue
        out.fe_units.append(item.problem_key)
        out.fe_items.append((step_scores, first_error))
    all_ids = [s.pk for sols in bon_solutions.values() for s in sols]
    candidates_score(version=version, solution_ids=all_ids)
    scores: dict[int, float] = {}
    for pk, score, cut in SolutionScore.objects.filter(
        version=version, solution_id__in=all_ids
    ).values_list("solution_id", "score", "truncated_steps"):
        # A candidate with unscored steps ranks after every fully scored one, as in the queue.
        scores[pk] = UNSCORED_RANK if cut else score
        out.bon_truncated += bool(cut)
    for key, sols in bon_solutions.items():
        pool = [
            (scores[s.pk], classes[(s.problem_id, s.answer)], s.grade == Grade.CORRECT)
            for s in sols
        ]
        # Seeded by the problem alone: both versions see the same random subsets (paired).
        seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big")
        curve = best_of_n([pool], ns=[n for n in ns if n <= len(pool)], trials=BEST_OF_N_TRIALS,
                          seed=seed)  # fmt: skip
        out.bon[key] = {
            series: dict(zip(curve["n"], curve[series], strict=True))
            for series in ("selector", "majority", "random")
        }
    return out


class _Arrays:
    """One version's outcomes as arrays indexed by problem, so a resample is a vector of
    problem counts and every metric a few weighted sums (no per-step Python)."""

    def __init__(self, o: Outcomes, index: dict[str, int], ns: list[int]) -> None:
        import numpy as np

        from selector.ml.metrics import predicted_first_error

        self.step_unit = np.asarray([index[u] for u in o.step_units], dtype=np.int64)
        y = np.asarray([r == -1 for r in o.step_ratings], dtype=bool)
        risk = 1.0 - np.asarray(o.step_scores, dtype=float)
        # Scores never change between resamples: sort once, reuse the ranks.
        values, self.rank = np.unique(risk, return_inverse=True)
        self.n_values = len(values)
        self.y = y.astype(float)
        self.fe_unit = np.asarray([index[u] for u in o.fe_units], dtype=np.int64)
        self.fe_err = np.asarray([t is not None for _, t in o.fe_items], dtype=float)
        predicted = [predicted_first_error(s, 0.5) for s, _ in o.fe_items]
        self.fe_hit = np.asarray(
            [p == t for p, (_, t) in zip(predicted, o.fe_items, strict=True)], dtype=float
        )
        self.bon: dict[int, tuple[Any, Any]] = {}
        for n in ns:
            pairs = [(index[k], v["selector"][n]) for k, v in o.bon.items() if n in v["selector"]]
            self.bon[n] = (
                np.asarray([i for i, _ in pairs], dtype=np.int64),
                np.asarray([v for _, v in pairs], dtype=float),
            )

    def metrics(self, counts: Any) -> dict[str, float | None]:
        import numpy as np

        from selector.ml.metrics import ranking_from_counts

        out: dict[str, float | None] = {}
        w = counts[self.step_unit]
        pos = np.bincount(self.rank, weights=w * self.y, minlength=self.n_values)
        neg = np.bincount(self.rank, weights=w * (1.0 - self.y), minlength=self.n_values)
        ranking = ranking_from_counts(pos, neg)
        out["step.auroc"], out["step.auprc"] = ranking if ranking else (None, None)
        w = counts[self.fe_unit]
        n_err, n_ok = (w * self.fe_err).sum(), (w * (1 - self.fe_err)).sum()
        acc_err = float((w * self.fe_err * self.fe_hit).sum() / n_err) if n_err else None
        acc_ok = float((w * (1 - self.fe_err) * self.fe_hit).sum() / n_ok) if n_ok else None
        out["first_error.acc_erroneous"] = acc_err
        out["first_error.acc_correct"] = acc_ok
        out["first_error.f1"] = (
            None
            if acc_err is None or acc_ok is None
            else (0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok))
        )
        for n, (units, values) in self.bon.items():
            w = counts[units]
            total = w.sum()
            out[f"best_of_n.selector@{n}"] = float((w * values).sum() / total) if total else None
        return out


def paired_bootstrap(
    challenger: Outcomes,
    incumbent: Outcomes,
    *,
    units: Sequence[str],
    ns: list[int],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """95% percentile intervals of (challenger - incumbent) for every metric, resampling
    held-out problems with replacement; both versions get the same resampled problems."""
    import numpy as np

    index = {u: i for i, u in enumerate(units)}
    a_arrays, b_arrays = _Arrays(challenger, index, ns), _Arrays(incumbent, index, ns)
    ones = np.ones(len(units))
    point_a, point_b = a_arrays.metrics(ones), b_arrays.metrics(ones)
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[float]] = {key: [] for key in point_a}
    for _ in range(resamples if units else 0):
        counts = np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units))
        counts = counts.astype(float)
        a, b = a_arrays.metrics(counts), b_arrays.metrics(counts)
        for key, values in diffs.items():
            a_val, b_val = a[key], b[key]
            if a_val is not None and b_val is not None:
                values.append(a_val - b_val)
    intervals: dict[str, dict[str, float | None]] = {}
    for key, values in diffs.items():
        a_val, b_val = point_a[key], point_b[key]
        diff = None if a_val is None or b_val is None else a_val - b_val
        # Resamples where a side is undefined (one class only) are skipped; too few left
        # means no interval rather than a misleading narrow one.
        enough = len(values) >= 0.9 * resamples
        intervals[key] = {
            "diff": diff,
            "low": float(np.percentile(values, 2.5)) if enough and diff is not None else None,
            "high": float(np.percentile(values, 97.5)) if enough and diff is not None else None,
        }
    return intervals


def version_threshold(version: SelectorVersion) -> float:
    """The first-error threshold chosen on held-in validation data when the version was
    trained (``training_summary["threshold"]``); 0.5 for a version without one."""
    chosen = (version.training_summary or {}).get("threshold") or {}
    value = chosen.get("value") if isinstance(chosen, dict) else None
    return float(value) if isinstance(value, int | float) else 0.5


def _summary(o: Outcomes, ns: list[int], threshold: float = 0.5) -> dict[str, Any]:
    from selector.ml.metrics import first_error_metrics, step_metrics

    problems = list(o.bon.values())
    curve: dict[str, list[Any]] = {"n": [], "selector": [], "majority": [], "random": [],
                                   "problems": []}  # fmt: skip
    for n in ns:
        reached = [p for p in problems if n in p["selector"]]
        if not reached:
            continue
        curve["n"].append(n)
        for series in ("selector", "majority", "random"):
            curve[series].append(sum(p[series][n] for p in reached) / len(reached))
        curve["problems"].append(len(reached))
    return {
        "step": step_metrics(o.step_scores, o.step_ratings),
        # ProcessBench's F1 at 0.5, and at the threshold chosen on held-in validation data.
        "first_error": first_error_metrics(o.fe_items),
        "first_error_tuned": first_error_metrics(o.fe_items, threshold=threshold),
        "best_of_n": curve if curve["n"] else None,
        "best_of_n_problems": len(problems),
        "roc": _roc_points(o.step_scores, o.step_ratings),
        # Past the window: left out, never imputed (decision 0005).
        "unscored": {
            "truncated_solutions": o.truncated,
            "rated_steps": o.unscored_rated_steps,
            "undecided_first_errors": o.undecided,
            "best_of_n_candidates": o.bon_truncated,
        },
    }


def selector_evaluate(
    *,
    version: SelectorVersion,
    job: Job | None = None,
    progress: Progress | None = None,
    eval_set: EvalSet | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics on the frozen evaluation set (default: the newest one; a first one is frozen
    when none exists), stored in ``version.metrics``. The active version is evaluated on the
    same data under ``compared_with``, with paired-bootstrap intervals of the differences
    under ``comparison`` (retraining can be unstable: compare before promoting)."""
    version_require_ready(version)
    report = progress_for(job, progress)
    eval_set = eval_set or eval_set_current()
    wanted = set(eval_set.label_ids)
    # Evaluation labels are all on reserved problems: only those are read and parsed.
    held_out = [t for t in labeled_trajectories(reserved=True) if t.label_id in wanted]
    graded = Solution.objects.filter(
        problem__eval_reserved=True,
        pk__lte=eval_set.max_solution_id,
        grade__in=[Grade.CORRECT, Grade.INCORRECT],
    ).only("id", "answer", "grade", "problem_id")
    keys = dict(
        Problem.objects.filter(pk__in=graded.values("problem_id")).values_list("id", "unique_id")
    )
    bon: dict[str, list[Solution]] = {}
    for s in graded.order_by("pk"):
        bon.setdefault(keys[s.problem_id], []).append(s)
    bon = {p: sols for p, sols in bon.items() if len(sols) >= 2}
    classes = answer_classes(
        pools={sols[0].problem_id: [(s.answer, s.grade) for s in sols] for sols in bon.values()}
    )
    ns = _best_of_n_ns(bon.values())
    units = sorted({t.problem_key for t in held_out} | set(bon))
    active = selector_active()
    compare = active if active is not None and active.pk != version.pk else None
    steps = 3 if compare else 1
    report(0, steps)
    mine = _outcomes(version, held_out, bon, classes, ns)
    metrics: dict[str, Any] = {
        "evaluated_at": timezone.now().isoformat(),
        "eval_set": {
            "id": eval_set.pk,
            "labels": len(eval_set.label_ids),
            "problems": eval_set.problems,
            "fraction": eval_set.fraction,
            "seed": eval_set.seed,
            "frozen_at": eval_set.created_at.isoformat(),
        },
        "held_out": {
            "labels": len(held_out),
            "problems": len({t.problem_key for t in held_out}),
            "best_of_n_problems": len(bon),
            "eval_set_id": eval_set.pk,
        },
        "version_id": version.pk,
        "version": version.name,
        **_summary(mine, ns, version_threshold(version)),
    }
    report(1, steps)
    if compare is not None:
        theirs = _outcomes(compare, held_out, bon, classes, ns)
        metrics["compared_with"] = {
            "version_id": compare.pk,
            "version": compare.name,
            "eval_set_id": eval_set.pk,
            **_summary(theirs, ns, version_threshold(compare)),
        }
        report(2, steps)
        metrics["comparison"] = {
            "against": compare.name,
            "eval_set_id": eval_set.pk,
            "method": "paired bootstrap over held-out problems, 95% percentile interval",
            "resamples": resamples,
            "seed": seed,
            "problems": len(units),
            "intervals": paired_bootstrap(
                mine, theirs, units=units, ns=ns, resamples=resamples, seed=seed
            ),
        }
        report(3, steps)
    version.metrics = jsonable(metrics)
    version.save(update_fields=["metrics"])
    return version.metrics
