"""Evaluating a version on the frozen held-out set, side by side with the active one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from jobs.models import Job
from labeling.models import FinishReason, Grade, Problem, Solution
from selector.models import SelectorVersion, SolutionScore
from selector.services.common import Progress, jsonable, progress_for
from selector.services.scoring import candidates_score
from selector.services.training import (
    EVAL_FRACTION,
    LabeledTrajectory,
    held_out_keys,
    trajectories_split,
)
from selector.services.versions import scorer_load, selector_active, version_require_ready


def _answer_key(answer: str, grade: str) -> str:
    """Majority-vote key: answers graded correct are all equivalent to the ground truth (so to
    each other); others are compared after light normalization."""
    if grade == Grade.CORRECT:
        return "\x00correct"
    text = re.sub(r"\\[,;!: ]|\\left|\\right|\$|\s+", "", answer or "")
    return text.removeprefix("\\boxed{").removesuffix("}") if text.startswith("\\boxed{") else text


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


def _evaluate_one(
    version: SelectorVersion,
    held_out: Sequence[LabeledTrajectory],
    bon_solutions: dict[int, list[Solution]],
    report: Progress,
) -> dict[str, Any]:
    from selector.ml.metrics import best_of_n, first_error_metrics, step_metrics

    scorer = scorer_load(version)
    scored = scorer.score([(t.problem, t.steps) for t in held_out]) if held_out else []
    flat_scores: list[float] = []
    flat_ratings: list[int] = []
    first_errors: list[tuple[list[float], int | None]] = []
    for item, result in zip(held_out, scored, strict=True):
        step_scores = list(result.step_scores)
        for s, r in zip(step_scores, item.ratings, strict=False):
            if r is None:
                continue
            flat_scores.append(float(s))
            flat_ratings.append(int(r))
            if r == -1:
                break  # later steps carry no target, as in training
        first_error = next((i for i, r in enumerate(item.ratings) if r == -1), None)
        if result.truncated_steps:
            continue  # the error may sit in the cut part: no fair first-error call
        if first_error is not None or item.finish_reason == FinishReason.SOLUTION:
            first_errors.append((step_scores, first_error))
    # Best-of-N over problems with several graded candidates, scored by this version.
    all_ids = [s.pk for sols in bon_solutions.values() for s in sols]
    candidates_score(version=version, solution_ids=all_ids)
    scores = dict(
        SolutionScore.objects.filter(version=version, solution_id__in=all_ids).values_list(
            "solution_id", "score"
        )
    )
    pools = [
        [(scores[s.pk], _answer_key(s.answer, s.grade), s.grade == Grade.CORRECT) for s in sols]
        for sols in bon_solutions.values()
    ]
    pools = [p for p in pools if len(p) >= 2]
    return {
        "version_id": version.pk,
        "version": version.name,
        "step": step_metrics(flat_scores, flat_ratings),
        "first_error": first_error_metrics(first_errors),
        "best_of_n": best_of_n(pools) if pools else None,
        "best_of_n_problems": len(pools),
        "roc": _roc_points(flat_scores, flat_ratings),
    }


def selector_evaluate(
    *, version: SelectorVersion, job: Job | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """Metrics on the frozen held-out set, stored in ``version.metrics``, with the active
    version evaluated on the same data under ``compared_with`` (retraining can be unstable:
    compare before promoting)."""
    version_require_ready(version)
    report = progress_for(job, progress)
    _, held_out = trajectories_split()
    graded = Solution.objects.filter(grade__in=[Grade.CORRECT, Grade.INCORRECT]).only(
        "id", "answer", "grade", "problem_id"
    )
    problem_keys = dict(
        Problem.objects.filter(pk__in=graded.values("problem_id").distinct()).values_list(
            "id", "unique_id"
        )
    )
    held_keys = held_out_keys(problem_keys.values())
    bon: dict[int, list[Solution]] = {}
    for s in graded.filter(problem_id__in=[p for p, k in problem_keys.items() if k in held_keys]):
        bon.setdefault(s.problem_id, []).append(s)
    bon = {p: sols for p, sols in bon.items() if len(sols) >= 2}
    active = selector_active()
    compare = active if active is not None and active.pk != version.pk else None
    report(0, 2 if compare else 1)
    metrics: dict[str, Any] = {
        "evaluated_at": timezone.now().isoformat(),
        "held_out": {
            "labels": len(held_out),
            "problems": len({t.problem_key for t in held_out}),
            "best_of_n_problems": len(bon),
            "eval_fraction": EVAL_FRACTION,
        },
        **_evaluate_one(version, held_out, bon, report),
    }
    report(1, 2 if compare else 1)
    if compare is not None:
        metrics["compared_with"] = _evaluate_one(compare, held_out, bon, report)
        report(2, 2)
    version.metrics = jsonable(metrics)
    version.save(update_fields=["metrics"])
    return version.metrics
