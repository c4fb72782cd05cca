"""Scoring the candidate pool with a selector version, resumably and in bounded memory."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef

from jobs.models import Job
from labeling.models import Solution
from selector.models import SelectorVersion, SolutionScore
from selector.services.common import Progress, job_cancel_check, progress_for
from selector.services.versions import scorer_load, version_require_ready

if TYPE_CHECKING:
    from selector.ml.scoring import ScoredSolution


def _floats(values: Iterable[float] | None) -> list[float] | None:
    return None if values is None else [float(x) for x in values]


def score_row(*, solution_id: int, version_id: int, result: ScoredSolution) -> SolutionScore:
    """The (unsaved) score row of one scored candidate; the ensemble's fields stay null when
    the version has none."""
    return SolutionScore(
        solution_id=solution_id,
        version_id=version_id,
        # float rounding can push a product of probabilities a hair past 1
        score=min(1.0, max(0.0, float(result.score))),
        step_scores=[float(x) for x in result.step_scores],
        truncated_steps=result.truncated_steps,
        uncertainty=None if result.uncertainty is None else float(result.uncertainty),
        step_epistemic=_floats(result.epistemic),
        step_aleatoric=_floats(result.aleatoric),
    )


def candidates_score(
    *,
    version: SelectorVersion,
    job: Job | None = None,
    batch: int = 1024,
    solution_ids: Iterable[int] | None = None,
    progress: Progress | None = None,
) -> int:
    """Score every solution ``version`` has not scored yet; returns how many were scored.

    Works in chunks of ``batch`` solutions in id order, so an interrupted run resumes where it
    stopped (the NOT EXISTS filter skips what is stored) and memory stays flat. A cancelled
    ``job`` stops between chunks (``JobCancelled``), keeping the chunks already stored.
    """
    version_require_ready(version)
    report = progress_for(job, progress)
    pending = Solution.objects.filter(
        ~Exists(SolutionScore.objects.filter(version=version, solution=OuterRef("pk")))
    )
    if solution_ids is not None:
        pending = pending.filter(pk__in=list(solution_ids))
    total = pending.count()
    report(0, total)
    if not total:
        return 0
    scorer = scorer_load(version)
    done = 0
    last_id = 0
    while True:
        job_cancel_check(job)
        chunk = list(
            pending.filter(pk__gt=last_id)
            .order_by("pk")
            .select_related("problem")
            .only("id", "steps", "problem__problem")[:batch]
        )
        if not chunk:
            break
        offset = done
        results = scorer.score(
            [(s.problem.problem, list(s.steps)) for s in chunk],
            progress=lambda d, _t, offset=offset: report(offset + d, total),
        )
        SolutionScore.objects.bulk_create(
            [
                score_row(solution_id=s.pk, version_id=version.pk, result=r)
                for s, r in zip(chunk, results, strict=True)
            ],
            ignore_conflicts=True,  # a concurrent run may have scored some of them
            batch_size=1000,
        )
        done += len(chunk)
        last_id = chunk[-1].pk
        report(done, total)
    return done
