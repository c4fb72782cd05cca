"""Per-annotator quality reports, and the admin's quality-control writes (gold, QC tasks, pause).

Gold agreement reuses the arithmetic in :mod:`labeling.services.quality`. Agreement between
annotators is measured where a task had more than one label, on step ratings aligned by
(task, step index), skipping steps either side left unrated:

* **Cohen's kappa** (scikit-learn, unweighted) per annotator, over every (their rating, another
  annotator's rating) pair on the same step;
* **Krippendorff's alpha** (``krippendorff``, nominal) per annotator over the steps they rated
  together with others, and overall over every step rated by two or more people. Alpha is
  computed from per-step value counts, so its cost grows with steps, not with annotators.

Both are None when undefined (no overlap, or every rating the same value).
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Aggregate, Count, F, FloatField, QuerySet

from labeling.models import AnnotatorProfile, Label, Task, TaskKind
from labeling.queries import generation_current, queue_scores
from labeling.services.quality import (
    AgreementSummary,
    Ratings,
    agreement_summarise,
    quality_settings_get,
)
from labeling.services.queue import tasks_enqueue

RATING_VALUES = (-1, 0, 1)
SCREENING_GENERATION = -1  # PRM800K's generation for the screening set


class Median(Aggregate):
    """PostgreSQL's exact median; SQLite has none, so the report computes it there instead."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


@dataclass
class AnnotatorReport:
    labeler: uuid.UUID
    username: str | None = None  # None for imported labelers with no account here
    profile_id: int | None = None
    is_paused: bool = False
    screening_passed: bool | None = None
    labels: int = 0
    median_time_ms: float | None = None
    gold: AgreementSummary = field(default_factory=lambda: agreement_summarise([]))
    overlap_pairs: int = 0  # aligned (mine, other) step-rating pairs
    kappa: float | None = None
    alpha: float | None = None
    below_threshold: bool = False


@dataclass
class QualityReport:
    annotators: list[AnnotatorReport]
    pass_mark: float
    overlap_tasks: int
    overlap_steps: int  # steps rated by two or more annotators
    alpha: float | None  # overall Krippendorff's alpha over those steps


def cohen_kappa(pairs: list[tuple[int, int]]) -> float | None:
    if not pairs:
        return None
    # scikit-learn and numpy load lazily: this module is imported by the admin at startup.
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    mine, theirs = zip(*pairs, strict=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(cohen_kappa_score(mine, theirs, labels=list(RATING_VALUES)))
    return None if math.isnan(value) else value


def krippendorff_alpha(value_counts: list[list[int]]) -> float | None:
    """Nominal alpha from per-unit counts of each rating value (units rated at least twice)."""
    units = [counts for counts in value_counts if sum(counts) >= 2]
    if not units:
        return None
    import krippendorff
    import numpy as np

    try:
        value = float(
            krippendorff.alpha(
                value_counts=np.array(units, dtype=float), level_of_measurement="nominal"
            )
        )
    except ValueError:  # a single value across all units: agreement is undefined
        return None
    return None if math.isnan(value) else value


def _value_counts(ratings: Iterable[int]) -> list[int]:
    counts = [0, 0, 0]
    for rating in ratings:
        counts[rating + 1] += 1
    return counts


def _medians(labels: QuerySet[Label]) -> dict[uuid.UUID, float]:
    if connection.vendor == "postgresql":
        rows = labels.order_by().values("labeler").annotate(median=Median("total_time_ms"))
        return {row["labeler"]: row["median"] for row in rows}
    # SQLite (the embedded single-machine mode): one ordered pass over two narrow columns.
    times: dict[uuid.UUID, list[int]] = defaultdict(list)
    for labeler, ms in labels.order_by().values_list("labeler", "total_time_ms").iterator():
        times[labeler].append(ms)
    return {labeler: float(statistics.median(values)) for labeler, values in times.items()}


def _overlap(
    labels: QuerySet[Label],
) -> tuple[
    int, dict[uuid.UUID, list[tuple[int, int]]], dict[uuid.UUID, list[list[int]]], list[list[int]]
]:
    """Aligned ratings on tasks labeled more than once."""
    task_ids = (
        labels.order_by()
        .values("task_id")
        .annotate(n=Count("id"))
        .filter(n__gte=2)
        .values_list("task_id", flat=True)
    )
    rows = labels.filter(task_id__in=task_ids).order_by("task_id", "id")
    pairs: dict[uuid.UUID, list[tuple[int, int]]] = defaultdict(list)
    units_of: dict[uuid.UUID, list[list[int]]] = defaultdict(list)
    all_units: list[list[int]] = []
    tasks = 0

    def close(task_labels: list[tuple[uuid.UUID, Ratings]]) -> None:
        length = max(len(ratings) for _, ratings in task_labels)
        for step in range(length):
            rated: list[tuple[uuid.UUID, int]] = []
            for labeler, ratings in task_labels:
                rating = ratings[step] if step < len(ratings) else None
                if rating is not None and rating in RATING_VALUES:
                    rated.append((labeler, rating))
            if len(rated) < 2:
                continue
            counts = _value_counts(rating for _, rating in rated)
            all_units.append(counts)
            for i, (labeler, mine) in enumerate(rated):
                units_of[labeler].append(counts)
                pairs[labeler].extend(
                    (mine, theirs) for j, (_, theirs) in enumerate(rated) if j != i
                )

    current: int | None = None
    task_labels: list[tuple[uuid.UUID, Ratings]] = []
    for task_id, labeler, ratings in rows.values_list("task_id", "labeler", "ratings").iterator():
        if task_id != current:
            if task_labels:
                close(task_labels)
                tasks += 1
            current, task_labels = task_id, []
        task_labels.append((labeler, ratings or []))
    if task_labels:
        close(task_labels)
        tasks += 1
    return tasks, pairs, units_of, all_units


def quality_report_build(*, since: datetime | None = None) -> QualityReport:
    """Labels, median time, gold agreement, screening and inter-annotator agreement per labeler."""
    labels = Label.objects.all()
    if since is not None:
        labels = labels.filter(created_at__gte=since)
    quality = quality_settings_get()
    reports: dict[uuid.UUID, AnnotatorReport] = {}

    def report_for(labeler: uuid.UUID) -> AnnotatorReport:
        if labeler not in reports:
            reports[labeler] = AnnotatorReport(labeler=labeler)
        return reports[labeler]

    for profile in AnnotatorProfile.objects.values(
        "id", "labeler", "user__username", "is_paused", "screening_passed"
    ):
        report = report_for(profile["labeler"])
        report.username = profile["user__username"]
        report.profile_id = profile["id"]
        report.is_paused = profile["is_paused"]
        report.screening_passed = profile["screening_passed"]

    for row in labels.order_by().values("labeler").annotate(n=Count("id")):
        report_for(row["labeler"]).labels = row["n"]
    for labeler, median in _medians(labels).items():
        report_for(labeler).median_time_ms = median

    # Gold agreement: every gold-backed label except the gold label itself.
    gold_pairs: dict[uuid.UUID, list[tuple[Ratings, Ratings]]] = defaultdict(list)
    gold_rows = (
        labels.filter(task__gold_label__isnull=False, is_gold=False)
        .exclude(id=F("task__gold_label_id"))
        .values_list("labeler", "ratings", "task__gold_label__ratings")
    )
    for labeler, mine, gold in gold_rows.iterator():
        gold_pairs[labeler].append((mine or [], gold or []))
    for labeler, label_pairs in gold_pairs.items():
        report_for(labeler).gold = agreement_summarise(label_pairs)

    overlap_tasks, pairs, units_of, all_units = _overlap(labels)
    for labeler, labeler_pairs in pairs.items():
        report = report_for(labeler)
        report.overlap_pairs = len(labeler_pairs)
        report.kappa = cohen_kappa(labeler_pairs)
        report.alpha = krippendorff_alpha(units_of[labeler])

    for report in reports.values():
        agreement = report.gold.step_agreement
        report.below_threshold = report.screening_passed is False or (
            agreement is not None and agreement < quality.screening_pass_mark
        )
    ordered = sorted(
        reports.values(), key=lambda r: (r.username is None, r.username or "", str(r.labeler))
    )
    return QualityReport(
        annotators=ordered,
        pass_mark=quality.screening_pass_mark,
        overlap_tasks=overlap_tasks,
        overlap_steps=len(all_units),
        alpha=krippendorff_alpha(all_units),
    )


# --- Quality-control writes the admin makes ---------------------------------------------------


class GoldLabelMissing(ValueError):
    """The admin has no label of their own on the task to make gold."""


@transaction.atomic
def task_gold_set(*, task_id: int, user: User) -> Label:
    """Make ``user``'s own label on the task its gold label (replacing any earlier gold)."""
    task = Task.objects.select_for_update().get(pk=task_id)
    label = Label.objects.filter(task=task, annotator=user).first()
    if label is None:
        raise GoldLabelMissing(f"task {task_id}: {user.get_username()} has no label on it")
    if task.gold_label_id and task.gold_label_id != label.pk:
        Label.objects.filter(pk=task.gold_label_id).update(is_gold=False)
    Label.objects.filter(pk=label.pk).update(is_gold=True)
    task.gold_label = label
    task.save(update_fields=["gold_label"])
    label.is_gold = True
    return label


def quality_tasks_create(*, solution_ids: Iterable[int], kind: str) -> int:
    """Queue solutions as QC questions (in the current generation) or as screening questions.

    Returns how many tasks were created; solutions already queued that way are left alone.
    Each needs a gold label (see :func:`task_gold_set`) before it counts.
    """
    if kind == TaskKind.SCREENING:
        generation: int | None = SCREENING_GENERATION
    elif kind == TaskKind.QUALITY_CONTROL:
        generation = generation_current()
    else:
        raise ValueError(f"kind: {str(kind)!r} is not quality_control or screening")
    return tasks_enqueue(
        solution_ids=solution_ids, generation=generation, kind=kind, scores=queue_scores
    )


def annotators_pause_set(*, profile_ids: Iterable[int], paused: bool) -> int:
    """Pause (or resume) annotators: a paused annotator is served nothing; their labels stay."""
    return AnnotatorProfile.objects.filter(pk__in=list(profile_ids)).update(is_paused=paused)


def report_rows(report: QualityReport) -> list[dict[str, Any]]:
    """The report as plain rows for templates and CSV."""
    return [
        {
            "labeler": str(r.labeler),
            "username": r.username,
            "profile_id": r.profile_id,
            "is_paused": r.is_paused,
            "screening_passed": r.screening_passed,
            "labels": r.labels,
            "median_time_s": None if r.median_time_ms is None else r.median_time_ms / 1000,
            "gold_labels": r.gold.labels,
            "gold_step_agreement": r.gold.step_agreement,
            "gold_first_error_agreement": r.gold.first_error_agreement,
            "overlap_pairs": r.overlap_pairs,
            "kappa": r.kappa,
            "alpha": r.alpha,
            "below_threshold": r.below_threshold,
        }
        for r in report.annotators
    ]
