"""Selector versions and their per-solution scores (the jobs that make them live in ``jobs``)."""

import re

from django.conf import settings
from django.db import models
from django.db.models import Q

# Names ``version_name_default`` gives: a prefix, then a microsecond timestamp.
_TIMESTAMP_NAME = re.compile(r"^(?P<prefix>.+)-(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})-\d{6}-\d{6}$")


def version_short_name(name: str, pk: int | None) -> str:
    """A short name for pages and plots: ``v3 · 2026-12-03`` for a default timestamp name
    (``base v1 · …`` for other prefixes), a chosen name as it is. Display only: the stored
    name stays what commands and the API take."""
    found = _TIMESTAMP_NAME.match(name or "")
    if found is None or pk is None:
        return name
    prefix = "" if found["prefix"] == "v" else f"{found['prefix']} "
    return f"{prefix}v{pk} · {found['y']}-{found['m']}-{found['d']}"


class VersionStatus(models.TextChoices):
    TRAINING = "training", "Training"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"
    RETIRED = "retired", "Retired"


class SelectorVersion(models.Model):
    """One trained (or untrained base) PRM; at most one is active and fills the queue."""

    name = models.CharField(max_length=100, unique=True)
    base_model = models.CharField(max_length=500)  # local path of the base model
    checkpoint_path = models.CharField(max_length=500, blank=True)  # save_pretrained directory
    status = models.CharField(
        max_length=10, choices=VersionStatus.choices, default=VersionStatus.TRAINING
    )
    is_active = models.BooleanField(default=False)
    metrics = models.JSONField(default=dict, blank=True)  # evaluation on the frozen held-out set
    training_summary = models.JSONField(default=dict, blank=True)  # data sizes, losses, params
    # Step heads in its ensemble, from its training summary; 0 or 1: no ensemble (an imported
    # or untrained PRM), so no uncertainty to select by.
    ensemble_heads = models.PositiveSmallIntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_selector"
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def has_ensemble(self) -> bool:
        return self.ensemble_heads > 1

    @property
    def short_name(self) -> str:
        return version_short_name(self.name, self.pk)


class SolutionScore(models.Model):
    """What one selector version thinks of one candidate solution."""

    solution = models.ForeignKey(
        "labeling.Solution", on_delete=models.CASCADE, related_name="scores"
    )
    version = models.ForeignKey(SelectorVersion, on_delete=models.CASCADE, related_name="scores")
    score = models.FloatField()  # product (or min) of step scores, 0..1
    step_scores = models.JSONField()  # list[float]: P(positive) + P(neutral) per step
    truncated_steps = models.PositiveSmallIntegerField(default=0)  # steps cut by max length
    # From the version's ensemble of step heads (``ScoredSolution``); null when it has none.
    uncertainty = models.FloatField(null=True, blank=True)  # what the uncertainty rule ranks by
    step_epistemic = models.JSONField(null=True, blank=True)  # list[float] per scored step, bits
    step_aleatoric = models.JSONField(null=True, blank=True)  # list[float] per scored step, bits
    scored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["solution", "version"], name="score_unique_per_version"
            ),
            models.CheckConstraint(
                condition=Q(score__gte=0.0) & Q(score__lte=1.0), name="score_in_unit_interval"
            ),
        ]
        indexes = [models.Index(fields=["version", "solution"], name="score_version_solution")]

    def __str__(self) -> str:
        return f"{self.version_id}: {self.score:.3f} for solution {self.solution_id}"


class EvalSet(models.Model):
    """One frozen version of the evaluation set: the labels on reserved problems (queued
    uniformly, never by a selector) that existed when it was frozen. Metrics name the set they
    were computed on, so two versions' numbers compare only when the set ids match."""

    label_ids = models.JSONField(default=list)  # sorted Label ids
    problems = models.PositiveIntegerField(default=0)
    # Best-of-N reads graded candidates of reserved problems up to this id, so a later import
    # does not move the numbers of this set.
    max_solution_id = models.BigIntegerField(default=0)
    fraction = models.FloatField()  # SELECTOR_EVAL_FRACTION when frozen
    seed = models.IntegerField()  # SELECTOR_EVAL_SEED when frozen
    created_at = models.DateTimeField(auto_now_add=True)
    # Who froze it (null: a command or the first evaluation) and what changed against the
    # set before: {"previous", "added", "removed", "labels", "problems"}.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"evaluation set {self.pk} ({len(self.label_ids)} labels)"


class ChunkState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


CHUNK_OPEN = (ChunkState.QUEUED, ChunkState.RUNNING)


class ScoreChunk(models.Model):
    """One id range of a score (or promotion) job's pending pool: one Celery task on `ml`.

    A job's chunks are its parts: they run on any number of workers at once, each with its own
    heartbeat, and the reaper re-queues a silent one alone (decision 0016). ``scored`` counts
    the scores this chunk stored, written in the same transaction as the scores themselves.
    """

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="score_chunks")
    version = models.ForeignKey(SelectorVersion, on_delete=models.CASCADE, related_name="+")
    round = models.PositiveSmallIntegerField(default=1)  # promotion: 2 = the catch-up pass
    first_id = models.BigIntegerField()  # solution ids, both ends included
    last_id = models.BigIntegerField()
    total = models.PositiveIntegerField()  # pending candidates in the range when planned
    done = models.PositiveIntegerField(default=0)  # progress of the current attempt, as stored
    scored = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=10, choices=ChunkState.choices, default=ChunkState.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)  # celery hostname:pid of the last run
    workers = models.JSONField(default=list, blank=True)  # every worker that started it, in order
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When it last entered the queue (planned, reopened, its message sent), and the messages
    # sent since it last started: the reaper sends a lost message again, less often each time.
    queued_at = models.DateTimeField(null=True, blank=True)
    sends = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "first_id"]
        constraints = [
            models.UniqueConstraint(fields=["job", "first_id"], name="score_chunk_unique_start"),
            models.CheckConstraint(
                condition=Q(first_id__lte=models.F("last_id")), name="score_chunk_range"
            ),
        ]
        indexes = [models.Index(fields=["state", "heartbeat_at"], name="score_chunk_state")]

    def __str__(self) -> str:
        return f"job {self.job_id} chunk {self.first_id}..{self.last_id} ({self.state})"
