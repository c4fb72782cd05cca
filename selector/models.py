"""Selector versions and their per-solution scores (the jobs that make them live in ``jobs``)."""

from django.db import models
from django.db.models import Q


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


class SolutionScore(models.Model):
    """What one selector version thinks of one candidate solution."""

    solution = models.ForeignKey(
        "labeling.Solution", on_delete=models.CASCADE, related_name="scores"
    )
    version = models.ForeignKey(SelectorVersion, on_delete=models.CASCADE, related_name="scores")
    score = models.FloatField()  # product (or min) of step scores, 0..1
    step_scores = models.JSONField()  # list[float]: P(positive) + P(neutral) per step
    truncated_steps = models.PositiveSmallIntegerField(default=0)  # steps cut by max length
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
