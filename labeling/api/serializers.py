"""Request and response shapes of the annotator API (types only; the rules live in services)."""

from typing import Any

from rest_framework import serializers

from labeling.models import FinishReason, TaskKind
from labeling.services.labels import MAX_TOTAL_TIME_MS


class ClaimRequestSerializer(serializers.Serializer):
    exclude = serializers.ListField(
        # Ids are 64-bit: a larger one overflows SQLite's parameter binding.
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=10,
        help_text="Task ids not to return, e.g. the one on screen when prefetching the next.",
    )


class TaskOutSerializer(serializers.Serializer):
    """A claimed task as the page shows it. The reference solution is never sent, and nothing
    tells a quality-control question from a normal one (no kind, no generation: QC questions
    sit in rounds of their own)."""

    id = serializers.IntegerField(source="task.id")
    screening = serializers.SerializerMethodField()
    mode = serializers.SerializerMethodField()
    problem = serializers.CharField(source="task.solution.problem.problem")
    ground_truth_answer = serializers.CharField(source="task.solution.problem.answer")
    steps = serializers.ListField(child=serializers.CharField(), source="task.solution.steps")
    lease_expires_at = serializers.DateTimeField(source="lease.expires_at")
    resumed = serializers.BooleanField()

    def get_screening(self, claim: Any) -> bool:
        # Annotators know they are being screened (the page says so); QC stays blind.
        return bool(claim.task.kind == TaskKind.SCREENING)

    def get_mode(self, claim: object) -> str:
        # Every queued task is rated with phase-2 semantics (stop at the first negative step).
        return "phase2"


class HeartbeatOutSerializer(serializers.Serializer):
    lease_expires_at = serializers.DateTimeField()


class SubmitRequestSerializer(serializers.Serializer):
    idempotency_key = serializers.CharField(max_length=64, help_text="A client-made UUID.")
    ratings = serializers.ListField(
        child=serializers.IntegerField(min_value=-1, max_value=1),
        allow_empty=True,
        help_text="One rating per step, in order, as far as the annotator got.",
    )
    flags = serializers.ListField(
        child=serializers.BooleanField(), required=False, allow_null=True, default=None
    )
    human_completion = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, default=None, trim_whitespace=False
    )
    finish_reason = serializers.ChoiceField(choices=FinishReason.choices)
    finish_note = serializers.CharField(required=False, allow_blank=True, default="")
    total_time_ms = serializers.IntegerField(min_value=0, max_value=MAX_TOTAL_TIME_MS)
    started_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class SubmitOutSerializer(serializers.Serializer):
    label_id = serializers.IntegerField(source="label.id")
    task_id = serializers.IntegerField(source="label.task_id")
    finish_reason = serializers.CharField(source="label.finish_reason")
    created = serializers.BooleanField()
    # Kept beyond the task's overlap: the lease had been taken back and others held the slots.
    late = serializers.BooleanField(source="label.late")


class MeOutSerializer(serializers.Serializer):
    username = serializers.CharField()
    labels_today = serializers.IntegerField()
    labels_total = serializers.IntegerField()
    gold_agreement = serializers.FloatField(allow_null=True)
    screening = serializers.ChoiceField(choices=["passed", "pending", "failed", "none"])
