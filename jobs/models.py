"""Background jobs: one row per operation that runs on a Celery worker, with its progress and
the heartbeat that tells a live worker from a lost one."""

from django.conf import settings
from django.db import models


class JobKind(models.TextChoices):
    TRAIN = "train", "Train new selector"
    EVALUATE = "evaluate", "Evaluate"
    PROMOTE = "promote", "Promote"
    SCORE = "score", "Score pool"
    FILL = "fill", "Fill queue"
    EXPORT = "export", "Export"
    BENCHMARK = "benchmark", "Benchmark"
    SIMULATE = "simulate", "Simulate active learning"
    GENERATE = "generate", "Generate candidates"
    IMPORT = "import", "Import JSONL"
    IMPORT_PRM = "import_prm", "Import a PRM"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # Asked to stop: the running work stops at its next progress write or cancel check.
    CANCELLED = "cancelled", "Cancelled"


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """A background operation with progress that the admin shows live."""

    kind = models.CharField(max_length=10, choices=JobKind.choices)
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # A string reference: the jobs app depends on the selector's table, never on its code.
    version = models.ForeignKey(
        "selector.SelectorVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
    )
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written by the running worker every JOBS_HEARTBEAT_SECONDS; the reaper fails (or
    # re-queues) a running job whose heartbeat is older than JOBS_LOST_AFTER_SECONDS.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)  # "hostname:pid" of the last runner
    attempts = models.PositiveSmallIntegerField(default=0)  # times a worker started it

    class Meta:
        db_table = "selector_job"  # the table predates this app; the rows stayed put
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk}"

    @property
    def progress_percent(self) -> int:
        if not self.progress_total:
            return 100 if self.status == JobStatus.SUCCEEDED else 0
        return min(100, round(100 * self.progress_done / self.progress_total))

    @property
    def finished(self) -> bool:
        return self.status in FINISHED
