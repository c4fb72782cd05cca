"""The selector's section of the staff dashboard: every version's headline metrics.

Registered into ``labeling.dashboard`` when the app is ready (``selector.apps``): labeling
draws the page, and never imports the selector.
"""

from __future__ import annotations

import numbers
from typing import Any

from labeling.dashboard import dashboard_section_register, figure_new, png_bytes
from selector.metric_rows import HEADLINE_ROWS, metric_value
from selector.models import SelectorVersion, version_short_name


def selector_metrics() -> tuple[list[str], list[dict[str, Any]]]:
    """(metric names, one row per version oldest first): the selector admin's headline rows
    (``selector.metric_rows``), read from what the evaluator stored, plus the evaluation set
    each was measured on (numbers compare only within one set)."""
    versions: list[dict[str, Any]] = [
        dict(row)
        for row in SelectorVersion.objects.order_by("created_at", "id").values(
            "id", "name", "status", "is_active", "metrics", "created_at"
        )
    ]
    for version in versions:
        values = [row.value(version["metrics"]) for row in HEADLINE_ROWS]
        version["values"] = [v if isinstance(v, numbers.Real) else None for v in values]
        version["eval_set"] = metric_value(version["metrics"], "eval_set.id")
        labels = metric_value(version["metrics"], "eval_set.labels")
        version["eval_labels"] = (
            labels if labels is not None else metric_value(version["metrics"], "held_out.labels")
        )
        version["short_name"] = version_short_name(version["name"], version["id"])
    return [row.label for row in HEADLINE_ROWS], versions


def plot_selector_metrics() -> bytes:
    names, versions = selector_metrics()
    fig = figure_new()
    ax = fig.subplots()
    x = list(range(len(versions)))
    for i, name in enumerate(names[:6]):  # a readable number of lines
        ys = [v["values"][i] for v in versions]
        ax.plot(x, [float("nan") if y is None else y for y in ys], marker="o", label=name)
    # Short names, turned, so long timestamp names never run into each other.
    ax.set_xticks(x, [v["short_name"] for v in versions], rotation=30, ha="right")
    ax.set_title("Selector metrics by version")
    if names:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return png_bytes(fig)


def _section() -> dict[str, Any]:
    names, versions = selector_metrics()
    return {"metric_names": names, "versions": versions}


def dashboard_register() -> None:
    dashboard_section_register(
        "selector",
        template="selector/_dashboard_section.html",
        context=_section,
        plots={"selector-metrics": plot_selector_metrics},
    )
