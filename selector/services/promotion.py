"""Promoting a version: make it active, score the pool, re-prioritise untouched tasks."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from jobs.models import Job
from labeling.models import Label, Lease, Task, TaskKind
from selector.models import SelectorVersion, SolutionScore
from selector.services.common import Progress
from selector.services.scoring import candidates_score
from selector.services.versions import version_require_ready


def selector_promote(
    *, version: SelectorVersion, job: Job | None = None, progress: Progress | None = None
) -> dict[str, int]:
    """Make ``version`` the active selector, score the pool with it, and re-prioritise queued
    tasks nobody has touched (no label, no lease) by the new scores. ``queued_score`` keeps
    the score at queue time (PRM800K's pre_generated_verifier_score); only priority moves."""
    with transaction.atomic():
        version = SelectorVersion.objects.select_for_update().get(pk=version.pk)
        version_require_ready(version)
        SelectorVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(
            is_active=False
        )
        version.is_active = True
        version.promoted_at = timezone.now()
        version.save(update_fields=["is_active", "promoted_at"])
    scored = candidates_score(version=version, job=job, progress=progress)
    new_score = SolutionScore.objects.filter(version=version, solution=OuterRef("solution"))
    with transaction.atomic():
        reprioritized = (
            Task.objects.filter(kind=TaskKind.NORMAL, label_count=0, lease_count=0)
            .filter(Exists(new_score))
            .filter(~Exists(Label.objects.filter(task=OuterRef("pk"))))
            .filter(~Exists(Lease.objects.filter(task=OuterRef("pk"))))
            .update(priority=Subquery(new_score.values("score")[:1]))
        )
    return {"scored": scored, "reprioritized": reprioritized}
