"""Promoting a version: score the pool with it first, then switch to it in one transaction."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Case, Exists, OuterRef, Subquery, Value, When

from jobs.models import Job
from jobs.services import PhasedProgress
from labeling.models import Label, Lease, Task, TaskKind
from selector import metric_rows
from selector.models import SelectorVersion, SolutionScore
from selector.services.common import Progress, job_cancel_check, progress_for
from selector.services.scoring import candidates_score
from selector.services.versions import (
    selector_active,
    version_activate,
    version_require_ready,
)


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
    # One bar over both scoring passes (the job's end fills it: the switch is quick).
    phases = PhasedProgress(progress_for(job, progress), weights=(0.95, 0.05))
    scored = candidates_score(
        version=version, job=job, progress=phases.phase(0), solution_ids=wanted
    )
    # Candidates imported while the pool was being scored: one catch-up pass, so the new
    # version starts with (almost) nothing unscored.
    scored += candidates_score(
        version=version, job=job, progress=phases.phase(1), solution_ids=wanted
    )
    return {"scored": scored, **promotion_switch(version=version, job=job)}


def promotion_switch(*, version: SelectorVersion, job: Job | None = None) -> dict[str, int]:
    """The switch that ends a promotion, once the pool is scored: make ``version`` active and
    re-prioritise the untouched queued tasks by its scores, in one transaction (joined by the
    caller's, when a promotion job's last scoring chunk calls it). A cancelled ``job`` raises
    ``JobCancelled`` and nothing changes."""
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
    return {"reprioritized": reprioritized, "truncated": truncated}


@dataclass(frozen=True)
class MetricCheck:
    """One headline metric: both versions' values, the interval of their difference
    (challenger minus active) and its verdict."""

    key: str
    label: str
    challenger: float | None
    active: float | None
    diff: float | None
    low: float | None
    high: float | None
    verdict: str


@dataclass(frozen=True)
class PromotionCheck:
    """What promoting ``version`` over the active one would mean, by their last evaluation
    on one evaluation set. ``verdict``: better / worse / no difference / unclear (from the
    headline metrics' intervals), "not compared" (never evaluated side by side: evaluate
    first), or "first" (no other version is active)."""

    version: str
    active: str | None
    verdict: str
    metrics: tuple[MetricCheck, ...] = ()
    eval_set_id: int | None = None
    eval_labels: int | None = None
    message: str = ""
    worse_on: tuple[str, ...] = field(default=())

    @property
    def needs_force(self) -> bool:
        """A clearly worse version is promoted only when asked twice (``force``)."""
        return self.verdict == "worse"


def _negated(span: dict[str, Any] | None) -> dict[str, Any] | None:
    if not span:
        return None

    def neg(value: Any) -> Any:
        return -value if isinstance(value, int | float) else None

    return {"diff": neg(span.get("diff")), "low": neg(span.get("high")),
            "high": neg(span.get("low"))}  # fmt: skip


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def promotion_check(*, version: SelectorVersion) -> PromotionCheck:
    """Compare ``version`` with the active one before promoting it. It reads the evaluation
    that put the two side by side: ``version``'s (evaluated while the other was active), or
    the active one's (evaluated while ``version`` was: a rollback), with the interval turned
    round. Admin, API and CLI all ask this; only "worse" needs ``force``."""
    active = selector_active()
    name = version.short_name
    if active is None or active.pk == version.pk:
        what = "is already the active version" if active else "becomes the first active version"
        return PromotionCheck(version=name, active=None, verdict="first",
                              message=f"{name} {what}.")  # fmt: skip
    mine, theirs = version.metrics or {}, active.metrics or {}
    if metric_rows.metric_value(mine, "comparison.against") == active.name:
        source, challenger_side, active_side, flip = mine, mine, mine.get("compared_with"), False
    elif metric_rows.metric_value(theirs, "comparison.against") == version.name:
        source, challenger_side, active_side, flip = (
            theirs,
            theirs.get("compared_with"),
            theirs,
            True,
        )
    else:
        return PromotionCheck(
            version=name,
            active=active.short_name,
            verdict="not compared",
            message=f"{name} has not been evaluated beside the active version "
            f"{active.short_name}: evaluate it first to see whether it is better.",
        )
    rows = []
    for row in metric_rows.HEADLINE_ROWS:
        span = metric_rows.interval(source, row.key)
        span = _negated(span) if flip else span
        rows.append(
            MetricCheck(
                key=row.key,
                label=row.label,
                challenger=_number(row.value(challenger_side)),
                active=_number(row.value(active_side)),
                diff=_number((span or {}).get("diff")),
                low=_number((span or {}).get("low")),
                high=_number((span or {}).get("high")),
                verdict=metric_rows.verdict(span),
            )
        )
    # Metrics with no interval (undefined on this set) say nothing either way.
    verdicts = [row.verdict for row in rows if row.low is not None]
    worse = tuple(row.label for row in rows if row.verdict == "worse")
    if worse:
        overall = "worse"
    elif "better" in verdicts:
        overall = "better"
    elif verdicts and all(v == "no difference" for v in verdicts):
        overall = "no difference"
    else:
        overall = "unclear"
    return PromotionCheck(
        version=name,
        active=active.short_name,
        verdict=overall,
        metrics=tuple(rows),
        eval_set_id=metric_rows.metric_value(source, "eval_set.id")
        or metric_rows.metric_value(source, "comparison.eval_set_id"),
        eval_labels=metric_rows.metric_value(source, "held_out.labels"),
        message=_message(name, active.short_name, overall, rows),
        worse_on=worse,
    )


def _message(name: str, active: str, overall: str, rows: list[MetricCheck]) -> str:
    if overall == "worse":
        spans = "; ".join(
            f"{row.label} {row.diff:+.3f} [{row.low:+.3f}, {row.high:+.3f}]"
            for row in rows
            if row.verdict == "worse" and None not in (row.diff, row.low, row.high)
        )
        return (
            f"{name} is clearly worse than {active} (95% interval of the difference below "
            f"zero): {spans}."
        )
    if overall == "better":
        return f"{name} is better than {active}: no headline metric is worse."
    if overall == "no difference":
        return f"{name} and {active} score the same on every headline metric."
    return f"{name} is not clearly better than {active}: every 95% interval includes zero."
