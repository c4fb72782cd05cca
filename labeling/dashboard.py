"""Reads and plots for the staff dashboard: progress, throughput, ratings, selector metrics.

Every figure is aggregated in the database (``GROUP BY``), so the page costs the same with a
thousand labels or a million. Plots are PNGs drawn with matplotlib's object API on the Agg
canvas (no pyplot global state, safe in threaded servers); matplotlib is imported only here.
"""

from __future__ import annotations

import io
import numbers
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from labeling.models import Label, Task, TaskKind
from selector.metric_rows import HEADLINE_ROWS, metric_value
from selector.models import SelectorVersion

RATING_NAMES = {"1": "positive (+1)", "0": "neutral (0)", "-1": "negative (-1)", "null": "unrated"}


@dataclass(frozen=True)
class GenerationProgress:
    generation: int | None
    kind: str
    tasks: int
    queued: int  # still has open slots and nobody holds it
    in_progress: int  # leased right now and not yet fully labeled
    labeled: int  # every required label is in
    labels: int


def progress_by_generation() -> list[GenerationProgress]:
    done = Q(label_count__gte=F("required_labels"))
    rows = (
        Task.objects.order_by()
        .values("generation", "kind")
        .annotate(
            tasks=Count("id"),
            labeled=Count("id", filter=done),
            in_progress=Count("id", filter=Q(lease_count__gt=0) & ~done),
            label_total=Sum("label_count"),
        )
        .order_by(F("generation").asc(nulls_first=True), "kind")
    )
    return [
        GenerationProgress(
            generation=row["generation"],
            kind=row["kind"],
            tasks=row["tasks"],
            queued=row["tasks"] - row["labeled"] - row["in_progress"],
            in_progress=row["in_progress"],
            labeled=row["labeled"],
            labels=row["label_total"] or 0,
        )
        for row in rows
    ]


def labels_per_hour(*, hours: int = 48, now: datetime | None = None) -> list[tuple[datetime, int]]:
    """Labels made in each of the last ``hours`` whole hours (UTC), zeros included."""
    now = now or timezone.now()
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(hours=hours)
    counts = {
        row["hour"]: row["n"]
        for row in Label.objects.filter(created_at__gte=start, created_at__lt=end)
        .order_by()
        .annotate(hour=TruncHour("created_at"))
        .values("hour")
        .annotate(n=Count("id"))
    }
    return [
        (start + timedelta(hours=i), counts.get(start + timedelta(hours=i), 0))
        for i in range(hours)
    ]


def rating_distribution() -> dict[str, int]:
    """How many step ratings of each value, over every label (unnested in SQL)."""
    table = Label._meta.db_table
    if connection.vendor == "postgresql":
        sql = (
            f"SELECT r.value::text, COUNT(*) FROM {table} l, "
            "jsonb_array_elements(l.ratings) AS r GROUP BY 1"
        )
    else:
        # json_each gives SQL NULL for a JSON null: name it so it groups as "null".
        sql = (
            f"SELECT COALESCE(CAST(j.value AS TEXT), 'null'), COUNT(*) FROM {table} l, "
            "json_each(l.ratings) AS j GROUP BY 1"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        found = {str(value): count for value, count in cursor.fetchall()}
    return {key: found.get(key, 0) for key in ("1", "0", "-1", "null")}


def finish_reasons() -> list[dict[str, Any]]:
    rows = (
        Label.objects.order_by()
        .values("finish_reason")
        .annotate(n=Count("id"))
        .order_by("-n", "finish_reason")
    )
    return [dict(row) for row in rows]


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
    return [row.label for row in HEADLINE_ROWS], versions


# --- Plots ------------------------------------------------------------------------------------


def _figure(width: float = 8.0, height: float = 3.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_labels_per_hour() -> bytes:
    series = labels_per_hour()
    fig = _figure()
    ax = fig.subplots()
    ax.bar([hour for hour, _ in series], [n for _, n in series], width=1 / 24, align="edge")
    ax.set_ylim(0, max(1, *(n for _, n in series)) * 1.1)  # an empty day is a flat zero line
    ax.set_title("Labels per hour, last 48 h (UTC)")
    ax.set_ylabel("labels")
    fig.autofmt_xdate()
    return _png(fig)


def plot_ratings() -> bytes:
    distribution = rating_distribution()
    fig = _figure(6, 3)
    ax = fig.subplots()
    keys = list(distribution)
    ax.bar(
        [RATING_NAMES[k] for k in keys],
        [distribution[k] for k in keys],
        color=["#2e7d32", "#9e9e9e", "#c62828", "#e0e0e0"],
    )
    ax.set_title("Step ratings")
    ax.set_ylabel("steps")
    return _png(fig)


def plot_progress() -> bytes:
    rows = [r for r in progress_by_generation() if r.kind == TaskKind.NORMAL]
    fig = _figure()
    ax = fig.subplots()
    # Positions with tick labels: generation names must stay categories, not numbers.
    x = list(range(len(rows)))
    labeled = [r.labeled for r in rows]
    leased = [r.in_progress for r in rows]
    queued = [r.queued for r in rows]
    ax.bar(x, labeled, label="labeled", color="#2e7d32")
    ax.bar(x, leased, bottom=labeled, label="in progress", color="#f9a825")
    ax.bar(
        x, queued, bottom=[a + b for a, b in zip(labeled, leased, strict=True)],
        label="queued", color="#90a4ae",
    )  # fmt: skip
    ax.set_xticks(x, ["—" if r.generation is None else str(r.generation) for r in rows])
    ax.set_title("Normal tasks per generation")
    ax.set_xlabel("generation")
    ax.set_ylabel("tasks")
    if rows:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside, not over, the bars
    return _png(fig)


def plot_selector_metrics() -> bytes:
    names, versions = selector_metrics()
    fig = _figure()
    ax = fig.subplots()
    x = list(range(len(versions)))
    for i, name in enumerate(names[:6]):  # a readable number of lines
        ys = [v["values"][i] for v in versions]
        ax.plot(x, [float("nan") if y is None else y for y in ys], marker="o", label=name)
    ax.set_xticks(x, [v["name"] for v in versions])
    ax.set_title("Selector metrics by version")
    if names:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


PLOTS = {
    "labels-per-hour": plot_labels_per_hour,
    "ratings": plot_ratings,
    "progress": plot_progress,
    "selector-metrics": plot_selector_metrics,
}
