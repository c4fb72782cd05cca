"""Reads shared by views and services: annotator state, gold pairs, screening sets."""

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from labeling.models import AnnotatorProfile, Label, QualitySettings, Task, TaskKind
from labeling.services.quality import (
    agreement_summarise,
    qc_reveal_after,
    qc_reveal_window,
    quality_settings_get,
)

ANNOTATORS_GROUP = "annotators"

ScreeningState = Literal["passed", "pending", "failed", "none"]


def user_is_annotator(user: User | AnonymousUser) -> bool:
    """Staff, or a member of the ``annotators`` group, may take work from the queue."""
    if not user.is_authenticated:
        return False
    if user.is_staff:
        return True
    # Set by labeling.auth, which reads it with the user in one query.
    known = getattr(user, "in_annotators_group", None)
    if known is not None:
        return bool(known)
    return user.groups.filter(name=ANNOTATORS_GROUP).exists()


def annotator_profile_get(*, user: User) -> AnnotatorProfile:
    """The user's profile: the one labeling.auth read with this request's user, else a fresh
    read (a User object kept around elsewhere may hold an outdated copy)."""
    if getattr(user, "annotator_state_loaded", False):
        try:
            return user.annotator_profile
        except AnnotatorProfile.DoesNotExist:
            pass
    profile, _ = AnnotatorProfile.objects.get_or_create(user=user)
    return profile


def user_may_author_gold(user: User) -> bool:
    """Staff allowed to edit tasks (and so set gold labels) are served gold-less questions."""
    return user.is_staff and user.has_perm("labeling.change_task")


def user_authored_gold(user: User) -> bool:
    return Label.objects.filter(annotator=user, is_gold=True).exists()


def screening_tasks_required(*, quality: QualitySettings) -> list[int]:
    """Ids of the screening questions a new annotator must label, in serving order.

    Only screening tasks that have a gold label count: without gold there is nothing to grade.
    """
    ids = Task.objects.filter(kind=TaskKind.SCREENING, gold_label__isnull=False).order_by(
        "-priority", "id"
    )
    if quality.screening_required is not None:
        ids = ids[: quality.screening_required]
    return list(ids.values_list("id", flat=True))


def gold_rating_pairs(
    *,
    annotator: User,
    task_ids: list[int] | None = None,
    kinds: tuple[str, ...] = (TaskKind.SCREENING, TaskKind.QUALITY_CONTROL),
    without: frozenset[int] = frozenset(),
) -> list[tuple[list[int | None], list[int | None]]]:
    """(annotator's ratings, gold ratings) for every gold-backed task the annotator labeled,
    but the labels in ``without``."""
    labels = Label.objects.filter(annotator=annotator, task__gold_label__isnull=False).exclude(
        is_gold=True
    )
    if without:
        labels = labels.exclude(pk__in=without)
    if task_ids is not None:
        labels = labels.filter(task_id__in=task_ids)
    else:
        labels = labels.filter(task__kind__in=kinds)
    return [
        (list(mine), list(gold))
        for mine, gold in labels.values_list("ratings", "task__gold_label__ratings")
    ]


def screening_state(*, profile: AnnotatorProfile, quality: QualitySettings) -> ScreeningState:
    if profile.screening_passed is True:
        return "passed"
    if profile.screening_passed is False:
        return "failed"
    if screening_tasks_required(quality=quality):
        return "pending"
    return "none"


@dataclass(frozen=True)
class AnnotatorStats:
    username: str
    labels_today: int
    labels_total: int
    gold_agreement: float | None
    screening: ScreeningState


def annotator_stats_get(*, user: User) -> AnnotatorStats:
    """What an annotator sees of themselves. Their newest QC labels are left out of the gold
    agreement until each has been followed by its own random number of further labels
    (``qc_reveal_after``): a figure that moved right after a submit would say it was QC."""
    profile = annotator_profile_get(user=user)
    quality = quality_settings_get()
    labels = Label.objects.filter(annotator=user)
    summary = agreement_summarise(
        gold_rating_pairs(annotator=user, without=qc_labels_unrevealed(user=user, quality=quality))
    )
    agreement = summary.step_agreement
    return AnnotatorStats(
        username=user.get_username(),
        labels_today=labels.filter(created_at__gte=today_start()).count(),
        labels_total=labels.count(),
        gold_agreement=None if agreement is None else round(agreement, 4),
        screening=screening_state(profile=profile, quality=quality),
    )


def qc_labels_unrevealed(*, user: User, quality: QualitySettings) -> frozenset[int]:
    """The user's QC labels not yet followed by their ``qc_reveal_after`` further labels."""
    newest = Label.objects.filter(annotator=user).order_by("-id")
    recent = newest.values_list("id", "task__kind")[: qc_reveal_window(quality.qc_rate)]
    return frozenset(
        label_id
        for later, (label_id, kind) in enumerate(recent)  # ``later`` labels came after it
        if kind == TaskKind.QUALITY_CONTROL
        and later < qc_reveal_after(label_id=label_id, qc_rate=quality.qc_rate)
    )


def today_start() -> datetime.datetime:
    return timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)


# Where the queue gets a candidate's score (its priority, and the ``queued_score`` on record):
# the app that ranks candidates sets it (the selector, in its ``ready()``); labeling never
# imports that app. Without one, tasks are queued unscored.
ScoreLookup = Callable[[list[int]], Mapping[int, float]]
_score_sources: list[ScoreLookup] = []


def queue_scores_source_set(lookup: ScoreLookup) -> None:
    _score_sources[:] = [lookup]


def queue_scores(solution_ids: list[int]) -> Mapping[int, float]:
    """The registered source's score per solution (solutions it has not scored are absent)."""
    return _score_sources[0](solution_ids) if _score_sources else {}


FIRST_GENERATION = 1


def generation_latest() -> int | None:
    """The latest active-learning round among normal tasks, None before the first. (PRM800K's
    negative generation marks its screening set, never a round.)"""
    return Task.objects.filter(kind=TaskKind.NORMAL, generation__gte=0).aggregate(
        latest=Max("generation")
    )["latest"]


def generation_current() -> int:
    """The round new normal tasks join: the latest one queued so far (the first if none)."""
    latest = generation_latest()
    return FIRST_GENERATION if latest is None else latest


def labels_from_reliable_annotators(*, labels: QuerySet[Label]) -> QuerySet[Label]:
    """``labels`` minus those of annotators who failed screening or are paused (label hygiene
    for training and the training-data export). Matched on the labeler UUID, so imported
    labels of a known annotator count too."""
    unreliable = AnnotatorProfile.objects.filter(
        Q(screening_passed=False) | Q(is_paused=True)
    ).values("labeler")
    return labels.exclude(labeler__in=unreliable)
