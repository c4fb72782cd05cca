"""Promoting a version: score the pool with it first, then switch to it in one transaction."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery

from jobs.models import Job
from labeling.models import Label, Lease, Task, TaskKind
from selector.models import SelectorVersion, SolutionScore
from selector.services.common import Progress, job_cancel_check
from selector.services.scoring import candidates_score
from selector.services.versions import version_activate, version_require_ready


def selector_promote(
    *, version: SelectorVersion, job: Job | None = None, progress: Progress | None = None
) -> dict[str, int]:
    """Score the pool with ``version``, then make it the active selector and re-prioritise
    queued tasks nobody has touched (no label, no lease) by its scores, in one transaction.

    The old version stays active while scoring runs, so the beat's top-up keeps filling from
    a fully scored pool. Scoring is resumable (stored scores are skipped), so a failed or
    cancelled promotion leaves the old version active and the queue untouched, and a retry
    picks up where it stopped. ``queued_score`` keeps the score at queue time (PRM800K's
    pre_generated_verifier_score); only priority moves. Tasks on reserved evaluation problems
    keep their uniform priority: no selector ranks them.
    """
    version_require_ready(version)
    scored = candidates_score(version=version, job=job, progress=progress)
    # Candidates imported while the pool was being scored: one catch-up pass, so the new
    # version starts with (almost) nothing unscored.
    scored += candidates_score(version=version, job=job)
    new_score = SolutionScore.objects.filter(version=version, solution=OuterRef("solution"))
    with transaction.atomic():
        if job is not None:
            # Locked so a cancel cannot land between this check and the commit; the job's row
            # comes first in the lock order ``version_activate`` documents.
            Job.objects.select_for_update().filter(pk=job.pk).first()
            job_cancel_check(job)
        version_activate(version=version)
        reprioritized = (
            Task.objects.filter(kind=TaskKind.NORMAL, label_count=0, lease_count=0)
            .filter(solution__problem__eval_reserved=False)
            .filter(Exists(new_score))
            .filter(~Exists(Label.objects.filter(task=OuterRef("pk"))))
            .filter(~Exists(Lease.objects.filter(task=OuterRef("pk"))))
            .update(priority=Subquery(new_score.values("score")[:1]))
        )
    return {"scored": scored, "reprioritized": reprioritized}
