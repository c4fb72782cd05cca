"""Problems, candidate solutions, the labeling queue and the labels.

Models hold fields, constraints and tiny properties only; workflows live in ``services/``.
"""

import hashlib
import random
import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Problem(models.Model):
    """A MATH-format problem with its reference solution and ground-truth answer."""

    unique_id = models.CharField(max_length=255, unique=True)
    problem = models.TextField()
    # PRM800K records carry the problem text but not its unique_id: they are matched by hash.
    problem_hash = models.CharField(max_length=64, db_index=True)
    solution = models.TextField(blank=True)
    answer = models.TextField()
    subject = models.CharField(max_length=100, blank=True)
    level = models.PositiveSmallIntegerField(null=True, blank=True)
    # In the frozen evaluation set (selector.services.eval_set): its candidates are queued
    # uniformly, never by a selector, and its labels are never trained on. Decided once from
    # a hash of unique_id; null until then.
    eval_reserved = models.BooleanField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.unique_id


class Grade(models.TextChoices):
    UNGRADED = "ungraded", "Ungraded"
    CORRECT = "correct", "Correct"
    INCORRECT = "incorrect", "Incorrect"
    UNGRADABLE = "ungradable", "Ungradable"


class GradedAnswer(models.Model):
    """Cache: every distinct (problem, final answer) pair is graded once."""

    problem = models.ForeignKey(Problem, on_delete=models.CASCADE, related_name="graded_answers")
    answer_hash = models.CharField(max_length=64)
    answer = models.TextField()
    grade = models.CharField(max_length=12, choices=Grade.choices)
    detail = models.TextField(blank=True)  # why it was ungradable (timeout, parse error)
    graded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["problem", "answer_hash"], name="graded_answer_unique_per_problem"
            ),
            models.CheckConstraint(
                condition=~Q(grade=Grade.UNGRADED), name="graded_answer_is_graded"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.answer!r} for problem {self.problem_id}: {self.grade}"


class Solution(models.Model):
    """A model-written candidate solution: ordered steps, the last ending in ``# Answer``."""

    problem = models.ForeignKey(Problem, on_delete=models.CASCADE, related_name="solutions")
    steps = models.JSONField()  # list[str], one string per step
    answer = models.TextField(blank=True)  # the final answer text (after "# Answer")
    text_hash = models.CharField(max_length=64)  # sha256 of "\n".join(steps)
    generator = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=30, blank=True)  # import, prm800k, demo, synthetic
    grade = models.CharField(
        max_length=12, choices=Grade.choices, default=Grade.UNGRADED, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["problem", "text_hash"], name="solution_unique_text_per_problem"
            ),
        ]
        indexes = [models.Index(fields=["problem", "grade"], name="solution_problem_grade")]

    def __str__(self) -> str:
        return f"solution {self.pk} of {self.problem_id}"


class TaskKind(models.TextChoices):
    NORMAL = "normal", "Normal"
    QUALITY_CONTROL = "quality_control", "Quality control"
    SCREENING = "screening", "Screening"


class QueuedBy(models.TextChoices):
    """How a task came into the queue. Only ``UNIFORM`` tasks are free of any selector's (or
    person's) choice, so only their labels may measure a selector (the frozen evaluation set)."""

    UNIFORM = "uniform", "Uniform draw"  # eval_queue_fill; the simulation's seeded draws
    SELECTOR = "selector", "Selector"  # queue_fill, by the rule in ``Task.rule``
    MANUAL = "manual", "By hand"  # enqueue, the admin, QC and screening items
    IMPORT = "import", "Import"  # import_prm800k (phase 2: picked by OpenAI's own PRM)


class SelectionRule(models.TextChoices):
    """The rule a fill picked a task by (``Task.rule``); blank for tasks no rule chose."""

    EIGHTY_TWENTY = "80_20", "80/20: convincing wrong answers"
    UNCERTAINTY = "uncertainty", "Most uncertain"
    MIXED = "mixed", "Half 80/20, half uncertainty"
    UNIFORM = "uniform", "Uniform draw"  # eval_queue_fill on the reserved problems


class Task(models.Model):
    """One candidate solution queued for labeling.

    ``label_count`` and ``lease_count`` are kept up to date by the queue services under the
    task's row lock, so a claim can find open work from this row alone.
    """

    solution = models.ForeignKey(Solution, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=20, choices=TaskKind.choices, default=TaskKind.NORMAL)
    generation = models.IntegerField(null=True, blank=True)  # active-learning round
    priority = models.FloatField(default=0.0)  # higher is served first
    queued_score = models.FloatField(null=True, blank=True)  # selector score when queued
    # The selector version whose pick (by the rule in ``rule``) queued this task; null when no
    # selector chose it (imports, uniform evaluation-set tasks, QC and screening items).
    selector_version = models.ForeignKey(
        "selector.SelectorVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="queued_tasks",
    )
    # The database default covers raw INSERTs that do not name it: "manual" is never uniform.
    queued_by = models.CharField(
        max_length=10, choices=QueuedBy.choices, default=QueuedBy.MANUAL, db_default="manual"
    )
    # The fill's selection rule (a ``mixed`` fill's tasks all record ``mixed``); blank for tasks
    # queued by hand, QC, screening or import, which ``queued_by`` already tells apart. The
    # database default lets the set-based writers that pick no rule (import) leave it out.
    rule = models.CharField(
        max_length=12, choices=SelectionRule.choices, blank=True, default="", db_default=""
    )
    required_labels = models.PositiveSmallIntegerField(default=1)  # overlap
    label_count = models.PositiveSmallIntegerField(default=0)  # labels within the overlap
    lease_count = models.PositiveSmallIntegerField(default=0)
    # Late labels kept beyond the overlap (decision 0003); the database default lets the
    # set-based writers (fill, import) leave the column out.
    late_count = models.PositiveSmallIntegerField(default=0, db_default=0)
    gold_label = models.ForeignKey(
        "Label", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["solution", "kind", "generation"], name="task_unique_solution_round"
            ),
            models.CheckConstraint(condition=Q(required_labels__gte=1), name="task_overlap_min_1"),
            models.CheckConstraint(
                condition=Q(queued_score__isnull=True)
                | (Q(queued_score__gte=0.0) & Q(queued_score__lte=1.0)),
                name="task_queued_score_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(label_count__lte=F("required_labels")) | ~Q(kind=TaskKind.NORMAL),
                name="task_labels_within_overlap",
            ),
        ]
        indexes = [
            models.Index(
                F("kind"),
                F("priority").desc(),
                F("id"),
                name="task_claim_order",
            ),
            # The claim walks only normal tasks that still have a free slot, in serving order;
            # full tasks drop out of this index, so its size tracks the open queue, not history.
            # The predicate must stay identical to the claim's filter (queue.OPEN_NORMAL).
            models.Index(
                F("priority").desc(),
                F("id"),
                name="task_open_normal",
                condition=Q(kind="normal", label_count__lt=F("required_labels") - F("lease_count")),
            ),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} ({self.kind})"

    @property
    def open_slots(self) -> int:
        return max(0, self.required_labels - self.label_count - self.lease_count)


class Lease(models.Model):
    """An annotator's hold on a task while they work; expires unless heartbeats extend it."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="leases")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="leases"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="lease_unique_per_annotator")
        ]

    def __str__(self) -> str:
        return f"lease on task {self.task_id} for user {self.annotator_id}"


class ReleasedLease(models.Model):
    """An expired lease that was taken back: its holder may still submit (decision 0003).

    Only the lease-expiry sweep writes these; a submit consumes one, and the sweep forgets
    them after ``settings.RELEASED_LEASE_HOURS``. An explicit skip leaves none.
    """

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="+")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    released_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task", "annotator"], name="released_lease_unique_per_annotator"
            )
        ]

    def __str__(self) -> str:
        return f"released lease on task {self.task_id} for user {self.annotator_id}"


class Skip(models.Model):
    """An annotator passed on a task; the claim never offers it to them again."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="skips")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="skips"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "annotator"], name="skip_unique_per_annotator")
        ]

    def __str__(self) -> str:
        return f"skip of task {self.task_id} by user {self.annotator_id}"


class FinishReason(models.TextChoices):
    FOUND_ERROR = "found_error", "Found an error"
    SOLUTION = "solution", "Solution is correct"
    BAD_PROBLEM = "bad_problem", "Bad problem"
    GIVE_UP = "give_up", "Gave up"


class Label(models.Model):
    """One person's step-by-step rating of one task, stored in PRM800K's ``label.steps`` shape.

    ``steps`` is exactly PRM800K's list of ``{completions, human_completion, chosen_completion}``
    so imported records export unchanged; ``ratings`` is the chosen rating per step, derived
    once at write time for statistics and training.
    """

    # No index of its own: the (task, labeler) unique index leads with the task.
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="labels", db_index=False)
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="labels",
    )  # null for imported labels whose labeler has no account here
    labeler = models.UUIDField(db_index=True)  # PRM800K's stable labeler id
    steps = models.JSONField()
    ratings = models.JSONField(default=list)  # list[int | None], one per step
    finish_reason = models.CharField(max_length=12, choices=FinishReason.choices)
    finish_note = models.TextField(blank=True)  # the reason for give_up / bad_problem
    total_time_ms = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)  # PRM800K's "timestamp"
    idempotency_key = models.CharField(max_length=64, null=True, blank=True)  # unique: Meta
    is_gold = models.BooleanField(default=False)
    # Submitted after the annotator's lease was taken back, when the task had no free slot:
    # kept anyway, counted in the task's late_count rather than its label_count (decision 0003).
    late = models.BooleanField(default=False, db_default=False)
    # For imported records: what the export needs to reproduce the record exactly (which
    # optional question keys it had, a ground-truth answer that differs from the problem's).
    record_extras = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        # Exports hold every annotator's labels, QC and screening (the gold answers) included:
        # their own permission, not implied by viewing labels in the admin.
        permissions = [("export_labels", "Can export labels")]
        constraints = [
            models.UniqueConstraint(fields=["task", "labeler"], name="label_unique_per_labeler"),
            models.UniqueConstraint(
                fields=["task", "annotator"], name="label_unique_per_annotator"
            ),
            # A constraint rather than unique=True, so PostgreSQL gets no second (LIKE) index
            # on the key: every label write maintains each index, and keys are only matched.
            models.UniqueConstraint(
                fields=["idempotency_key"], name="label_idempotency_key_unique"
            ),
            models.CheckConstraint(
                condition=Q(finish_reason__in=FinishReason.values),
                name="label_finish_reason_valid",
            ),
        ]
        indexes = [
            # An annotator's most recent labels (QC spacing, stats) without reading their history.
            models.Index(
                F("annotator"),
                F("id").desc(),
                name="label_annotator_recent",
                condition=Q(annotator__isnull=False),
            )
        ]

    def __str__(self) -> str:
        return f"label {self.pk} on task {self.task_id}"


def qc_draw_new() -> float:
    """A fresh draw for ``AnnotatorProfile.qc_draw`` (the OS's randomness: not guessable)."""
    return random.SystemRandom().random()


class AnnotatorProfile(models.Model):
    """Per-user labeling state: the stable labeler UUID used in exports, screening, pausing."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotator_profile"
    )
    labeler = models.UUIDField(default=uuid.uuid4, unique=True)
    screening_passed = models.BooleanField(null=True, blank=True)  # None: not yet decided
    is_paused = models.BooleanField(default=False)
    # Normal labels since the last QC label: the claim decides "QC due?" from this row alone.
    labels_since_qc = models.PositiveIntegerField(default=0)
    # A uniform draw in [0, 1), made anew with each QC label: where in the current interval the
    # next QC question falls (labeling.services.quality.qc_gap), so its position is random.
    qc_draw = models.FloatField(default=qc_draw_new)

    class Meta:
        # The dashboard is a view over annotators' quality (and progress); pausing and
        # resuming from it needs change_annotatorprofile, like the admin actions.
        permissions = [("view_dashboard", "Can view the progress and quality dashboard")]

    def __str__(self) -> str:
        return f"profile of {self.user}"


class QualitySettings(models.Model):
    """Singleton (pk 1): how screening and quality-control questions are served and judged."""

    qc_rate = models.FloatField(default=0.1)  # share of served tasks that are QC questions
    screening_pass_mark = models.FloatField(default=0.75)  # step agreement with gold to pass
    # How many screening questions a new annotator must label; null means all that have gold.
    screening_required = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "quality settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="quality_settings_singleton"),
            models.CheckConstraint(
                condition=Q(qc_rate__gte=0.0) & Q(qc_rate__lte=1.0), name="qc_rate_in_unit_interval"
            ),
            models.CheckConstraint(
                condition=Q(screening_pass_mark__gte=0.0) & Q(screening_pass_mark__lte=1.0),
                name="pass_mark_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        return "quality settings"
