"""Reads shared by the selector admin pages, and the scores the labeling queue asks for."""

from __future__ import annotations

from typing import Any

from labeling.queries import queue_scores_source_set
from selector import metric_rows
from selector.models import SolutionScore


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
