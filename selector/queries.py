"""Reads shared by the selector admin pages, and the scores the labeling queue asks for."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from labeling.models import FinishReason, Label, TaskKind
from labeling.queries import queue_scores_source_set
from selector import metric_rows
from selector.models import EvalSet, SelectorVersion, SolutionScore, VersionStatus


def active_selector_scores(solution_ids: list[int]) -> dict[int, float]:
    """The active selector version's score per solution (solutions it has not scored are absent)."""
    return dict(
        SolutionScore.objects.filter(
            version__is_active=True, solution_id__in=solution_ids
        ).values_list("solution_id", "score")
    )


def queue_scores_register() -> None:
    """Labeling's queue takes its scores from the active version (``labeling.queries``)."""
    queue_scores_source_set(active_selector_scores)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _fmt_interval(span: dict[str, Any] | None) -> str:
    if not span or span.get("diff") is None:
        return "—"
    text = f"{span['diff']:+.3f}"
    if span.get("low") is not None and span.get("high") is not None:
        text += f" [{span['low']:+.3f}, {span['high']:+.3f}] {metric_rows.verdict(span)}"
    return text


def metrics_table(
    *, metrics: dict[str, Any] | None, other: dict[str, Any] | None = None
) -> list[tuple[str, str, str, str]]:
    """(metric, this version, the other version, difference with its 95% interval) rows,
    formatted for a template; the rows are ``selector.metric_rows``'s."""
    if not metrics:
        return []
    return [
        (
            row.label,
            _fmt(row.value(metrics)),
            _fmt(row.value(other)) if other else "—",
            _fmt_interval(metric_rows.interval(metrics, row.key)) if row.higher_is_better else "",
        )
        for row in metric_rows.metric_rows(metrics)
    ]


def eval_set_note(metrics: dict[str, Any] | None) -> str | None:
    """Which evaluation set the numbers come from, its size, and whether a newer set exists
    (numbers compare only within one set)."""
    set_id = metric_rows.metric_value(metrics, "eval_set.id")
    if set_id is None:
        return None
    labels = metric_rows.metric_value(metrics, "eval_set.labels")
    if labels is None:
        labels = metric_rows.metric_value(metrics, "held_out.labels")
    problems = metric_rows.metric_value(metrics, "eval_set.problems")
    frozen = str(metric_rows.metric_value(metrics, "eval_set.frozen_at") or "")[:10]
    text = f"Measured on evaluation set {set_id}: {_fmt(labels)} labels"
    text += f" on {problems} problems" if problems is not None else ""
    text += f", frozen {frozen}." if frozen else "."
    newest = EvalSet.objects.order_by("-pk").first()
    if newest is not None and newest.pk != set_id:
        text += (
            f" A newer set exists (set {newest.pk}, {len(newest.label_ids)} labels): evaluate "
            "again to compare on it."
        )
    return text


# --- The staff API's reads --------------------------------------------------------------------


def version_find(ref: int | str) -> SelectorVersion | None:
    """A version by id (a number) or by name (text; all digits also tries it as an id)."""
    if isinstance(ref, int):
        return SelectorVersion.objects.filter(pk=ref).first() if 0 < ref < 2**63 else None
    found = SelectorVersion.objects.filter(name=ref).first()
    if found is None and ref.isdigit() and len(ref) < 19:
        found = SelectorVersion.objects.filter(pk=int(ref)).first()
    return found


def version_newest_ready() -> SelectorVersion | None:
    """The version trained last that is ready: what ``evaluate`` looks at by default."""
    return (
        SelectorVersion.objects.filter(status=VersionStatus.READY).order_by("-created_at", "-pk")
    ).first()


def versions_listed() -> QuerySet[SelectorVersion]:
    return SelectorVersion.objects.order_by("-created_at", "-pk")


def version_summary(version: SelectorVersion) -> dict[str, Any]:
    """A version with its headline metrics and, when it was compared with the active version,
    each difference's 95% interval and verdict; ``evaluation`` is everything stored."""
    metrics = version.metrics or {}
    compared = metric_rows.metric_value(metrics, "comparison.against")
    intervals: dict[str, Any] = {}
    for row in metric_rows.HEADLINE_ROWS:
        span = metric_rows.interval(metrics, row.key)
        if span is not None:
            intervals[row.key] = {
                "diff": span.get("diff"),
                "low": span.get("low"),
                "high": span.get("high"),
                "verdict": metric_rows.verdict(span),
            }
    return {
        "id": version.pk,
        "name": version.name,
        "status": version.status,
        "is_active": version.is_active,
        "created_at": version.created_at,
        "promoted_at": version.promoted_at,
        "evaluated": bool(metrics),
        "eval_set": metric_rows.metric_value(metrics, "eval_set.id"),
        "eval_labels": metric_rows.metric_value(metrics, "held_out.labels"),
        "metrics": {row.key: row.value(metrics) for row in metric_rows.HEADLINE_ROWS},
        "compared_with": compared,
        "compared_metrics": (
            {row.key: row.value(metrics.get("compared_with")) for row in metric_rows.HEADLINE_ROWS}
            if compared is not None
            else None
        ),
        "intervals": intervals,
        "training_summary": version.training_summary or {},
        "evaluation": metrics,
    }


def train_labels_available() -> int:
    """About how many labels a train job would learn from: labels on normal tasks, less bad
    problems and those on problems reserved for the evaluation set (label hygiene can leave
    out more; the job's summary has the exact count)."""
    return (
        Label.objects.filter(task__kind=TaskKind.NORMAL)
        .exclude(finish_reason=FinishReason.BAD_PROBLEM)
        .exclude(task__solution__problem__eval_reserved=True)
        .count()
    )
