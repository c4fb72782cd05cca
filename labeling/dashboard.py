"""Reads and plots for the staff dashboard: progress, throughput, ratings, and the sections
that apps above labeling register (the selector's metrics).

Every figure is aggregated in the database (``GROUP BY``), so the page costs the same with a
thousand labels or a million. Plots are PNGs drawn with matplotlib's object API on the Agg
canvas (no pyplot global state, safe in threaded servers), importing matplotlib only when drawn.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from labeling.models import Label, Task, TaskKind

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


# --- Plots ------------------------------------------------------------------------------------


def figure_new(width: float = 8.0, height: float = 3.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_labels_per_hour() -> bytes:
    series = labels_per_hour()
    fig = figure_new()
    ax = fig.subplots()
    ax.bar([hour for hour, _ in series], [n for _, n in series], width=1 / 24, align="edge")
    ax.set_ylim(0, max(1, *(n for _, n in series)) * 1.1)  # an empty day is a flat zero line
    ax.set_title("Labels per hour, last 48 h (UTC)")
    ax.set_ylabel("labels")
    fig.autofmt_xdate()
    return png_bytes(fig)


def plot_ratings() -> bytes:
    distribution = rating_distribution()
    fig = figure_new(6, 3)
    ax = fig.subplots()
    keys = list(distribution)
    ax.bar(
        [RATING_NAMES[k] for k in keys],
        [distribution[k] for k in keys],
        color=["#2e7d32", "#9e9e9e", "#c62828", "#e0e0e0"],
    )
    ax.set_title("Step ratings")
    ax.set_ylabel("steps")
    return png_bytes(fig)


def plot_progress() -> bytes:
    rows = [r for r in progress_by_generation() if r.kind == TaskKind.NORMAL]
    fig = figure_new()
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
    return png_bytes(fig)


PLOTS: dict[str, Callable[[], bytes]] = {
    "labels-per-hour": plot_labels_per_hour,
    "ratings": plot_ratings,
    "progress": plot_progress,
}


# --- Sections from the apps above -------------------------------------------------------------


@dataclass(frozen=True)
class DashboardSection:
    template: str  # included with the context's keys as ``section``
    context: Callable[[], dict[str, Any]]


DASHBOARD_SECTIONS: dict[str, DashboardSection] = {}


def dashboard_section_register(
    name: str,
    *,
    template: str,
    context: Callable[[], dict[str, Any]],
    plots: dict[str, Callable[[], bytes]] | None = None,
) -> None:
    """Add a section (and its PNG plots) to the dashboard, below labeling's own: how an app
    above labeling shows its figures here without labeling importing it. The selector's
    versions and metrics come in this way (``selector.dashboard``)."""
    DASHBOARD_SECTIONS[name] = DashboardSection(template=template, context=context)
    for plot_name, plot in (plots or {}).items():
        PLOTS[plot_name] = plot
