"""Promoting a version: score the pool with it first, then switch to it in one transaction."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Case, Exists, OuterRef, Subquery, Value, When

from jobs.models import Job
from labeling.models import Label, Lease, Task, TaskKind
from selector import metric_rows
from selector.models import SelectorVersion, SolutionScore
from selector.services.common import Progress, job_cancel_check
from selector.services.scoring import candidates_score
from selector.services.versions import version_activate, version_require_ready


def selector_promote(
    *,
    version: SelectorVersion,
    job: Job | None = None,
    progress: Progress | None = None,
    solution_ids: Iterable[int] | None = None,
) -> dict[str, int]:
    """Score the pool with ``version``, then make it the active selector and re-prioritise
    queued tasks nobody has touched (no label, no lease) by its scores, in one transaction.

    The old version stays active while scoring runs, so the beat's top-up keeps filling from
    a fully scored pool. Scoring is resumable (stored scores are skipped), so a failed or
    cancelled promotion leaves the old version active and the queue untouched, and a retry
    picks up where it stopped. ``queued_score`` keeps the score at queue time (PRM800K's
    pre_generated_verifier_score); only priority moves. Tasks on reserved evaluation problems
    keep their uniform priority: no selector ranks them. A candidate the new version could not
    score whole gets priority 0, as ``queue_fill`` gives it (counted in ``truncated``).
    ``solution_ids`` limits scoring to those candidates (the simulation scores only what is
    still unqueued); queued tasks without a score of ``version`` keep their priority.
    """
    version_require_ready(version)
    wanted = None if solution_ids is None else list(solution_ids)
    scored = candidates_score(version=version, job=job, progress=progress, solution_ids=wanted)
    # Candidates imported while the pool was being scored: one catch-up pass, so the new
    # version starts with (almost) nothing unscored.
    scored += candidates_score(version=version, job=job, solution_ids=wanted)
    new_score = SolutionScore.objects.filter(version=version, solution=OuterRef("solution"))
    # As queue_fill: a candidate with unscored steps gets priority 0 (decision 0005's rule).
    cut = new_score.filter(truncated_steps__gt=0)
    with transaction.atomic():
        if job is not None:
            # Locked so a cancel cannot land between this check and the commit; the job's row
            # comes first in the lock order ``version_activate`` documents.
            Job.objects.select_for_update().filter(pk=job.pk).first()
            job_cancel_check(job)
        version_activate(version=version)
        untouched = (
            Task.objects.filter(kind=TaskKind.NORMAL, label_count=0, lease_count=0)
            .filter(solution__problem__eval_reserved=False)
            .filter(Exists(new_score))
            .filter(~Exists(Label.objects.filter(task=OuterRef("pk"))))
            .filter(~Exists(Lease.objects.filter(task=OuterRef("pk"))))
        )
        truncated = untouched.filter(Exists(cut)).count()
        reprioritized = untouched.update(
            priority=Case(
                When(Exists(cut), then=Value(0.0)),
                default=Subquery(new_score.values("score")[:1]),
            )
        )
    return {"scored": scored, "reprioritized": reprioritized, "truncated": truncated}


def promotion_objection(*, version: SelectorVersion) -> str | None:
    """Why promoting ``version`` needs ``force``: its last evaluation found it clearly worse
    (a 95% interval of the difference below zero) than the version active then, on a
    headline metric. None otherwise, unclear and unevaluated included.

    A stop-gap for the API's ``force`` flag: issue 19's promotion check (the verdicts the
    admin's confirmation page shows) replaces this function where ``promotion_start`` calls it.
    """
    metrics = version.metrics or {}
    against = metric_rows.metric_value(metrics, "comparison.against")
    worse = [
        row.label
        for row in metric_rows.HEADLINE_ROWS
        if metric_rows.verdict(metric_rows.interval(metrics, row.key)) == "worse"
    ]
    if against is None or not worse:
        return None
    return (
        f"{version.name} is clearly worse than {against} (95% interval of the difference "
        f"below zero): {', '.join(worse)}. Pass force=true to promote it anyway."
    )
