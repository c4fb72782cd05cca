"""Django admin for problems, candidates, the queue and labels.

Each ModelAdmin delegates writes to ``labeling.services``; admin code only gathers input.
"""

from django.contrib import admin

from labeling.models import AnnotatorProfile, GradedAnswer, Label, Lease, Problem, Solution, Task


@admin.register(Problem)
class ProblemAdmin(admin.ModelAdmin):
    list_display = ["unique_id", "subject", "level", "answer", "created_at"]
    list_filter = ["subject", "level"]
    search_fields = ["unique_id", "problem"]


@admin.register(Solution)
class SolutionAdmin(admin.ModelAdmin):
    list_display = ["id", "problem", "answer", "grade", "generator", "source", "created_at"]
    list_filter = ["grade", "source", "generator"]
    search_fields = ["problem__unique_id", "answer"]
    raw_id_fields = ["problem"]


@admin.register(GradedAnswer)
class GradedAnswerAdmin(admin.ModelAdmin):
    list_display = ["problem", "answer", "grade", "graded_at"]
    list_filter = ["grade"]
    raw_id_fields = ["problem"]


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "generation",
        "priority",
        "queued_score",
        "required_labels",
        "label_count",
        "lease_count",
        "created_at",
    ]
    list_filter = ["kind", "generation"]
    raw_id_fields = ["solution", "gold_label"]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["task", "annotator", "created_at", "expires_at"]
    raw_id_fields = ["task", "annotator"]


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "task",
        "annotator",
        "labeler",
        "finish_reason",
        "total_time_ms",
        "created_at",
        "is_gold",
    ]
    list_filter = ["finish_reason", "is_gold", "task__kind", "task__generation"]
    raw_id_fields = ["task", "annotator"]


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "labeler", "screening_passed", "is_paused"]
    list_filter = ["screening_passed", "is_paused"]
