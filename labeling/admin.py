"""Django admin for problems, candidates, the queue and labels.

Each ModelAdmin delegates writes to ``labeling.services``; admin code only gathers input.
"""

from collections.abc import Callable
from typing import IO, Any, cast

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from labeling.admin_export import (
    ExportAdminMixin,
    export_selected_prm800k,
    export_selected_stepwise,
    pause_annotators,
    pause_below_threshold,
    queue_as_quality_control,
    queue_as_screening,
    resume_annotators,
    use_my_label_as_gold,
)
from labeling.models import AnnotatorProfile, GradedAnswer, Label, Lease, Problem, Solution, Task
from labeling.services.imports import (
    ImportFailed,
    ImportReport,
    candidates_import,
    prm800k_import,
    problems_import,
)

# --- "Import JSONL" pages: small uploads through the same services as the import commands ---

JSONL_UPLOAD_MAX_BYTES = 20 * 1024 * 1024
_MAX_ERROR_MESSAGES = 200  # a file full of errors must not bury the page


class JsonlUploadForm(forms.Form):
    file = forms.FileField(help_text="JSONL, one record per line")
    skip_invalid = forms.BooleanField(
        required=False, label="Skip invalid lines (import the valid ones)"
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > JSONL_UPLOAD_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {upload.size / 2**20:.1f} MB; the limit here is "
                f"{JSONL_UPLOAD_MAX_BYTES // 2**20} MB. Use the management command."
            )
        return upload


class JsonlImportAdminMixin:
    """Adds an "Import JSONL" button and page to a ModelAdmin changelist."""

    import_service: Callable[..., ImportReport]
    import_title = "Import JSONL"
    import_command = ""
    import_help = ""
    change_list_template: Any = "admin/labeling/change_list_import.html"

    def get_urls(self) -> list[URLPattern]:
        admin_self = cast(admin.ModelAdmin, self)
        name = f"{admin_self.opts.app_label}_{admin_self.opts.model_name}_import_jsonl"
        view = admin_self.admin_site.admin_view(self.import_jsonl_view)
        return [path("import-jsonl/", view, name=name), *super().get_urls()]  # type: ignore[misc]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"import_jsonl_title": self.import_title, **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)  # type: ignore[misc]

    def import_jsonl_view(self, request: HttpRequest) -> HttpResponse:
        admin_self = cast(admin.ModelAdmin, self)
        if not admin_self.has_add_permission(request):
            raise PermissionDenied
        form = JsonlUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                report = type(self).import_service(
                    stream=cast(IO[bytes], upload),
                    source=upload.name,
                    skip_invalid=form.cleaned_data["skip_invalid"],
                )
            except ImportFailed as exc:
                self._error_messages(request, exc.report, messages.ERROR)
                messages.error(request, str(exc).replace("--skip-invalid", "skip invalid lines"))
            else:
                self._error_messages(request, report, messages.WARNING)
                messages.success(request, report.summary())
                if report.problem_ids:
                    ids = report.problem_ids
                    _grading_enqueue_on_commit(sorted(ids) if len(ids) <= 1000 else None)
                    messages.info(request, "Grading of the final answers has been queued.")
                opts = admin_self.opts
                return redirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        context = {
            **admin_self.admin_site.each_context(request),
            "opts": admin_self.opts,
            "form": form,
            "title": self.import_title,
            "help_text": self.import_help,
            "command": self.import_command,
            "max_mb": JSONL_UPLOAD_MAX_BYTES // 2**20,
        }
        return TemplateResponse(request, "admin/labeling/import_jsonl.html", context)

    @staticmethod
    def _error_messages(request: HttpRequest, report: ImportReport, level: int) -> None:
        lines = report.error_lines()
        for line in lines[:_MAX_ERROR_MESSAGES]:
            messages.add_message(request, level, line)
        if len(lines) > _MAX_ERROR_MESSAGES:
            messages.add_message(
                request, level, f"… and {len(lines) - _MAX_ERROR_MESSAGES} more invalid lines"
            )


def _grading_enqueue_on_commit(problem_ids: list[int] | None) -> None:
    # Grading can take minutes and may hit the time limit: never in the request.
    from labeling.tasks import grade_solutions

    transaction.on_commit(lambda: grade_solutions.delay(problem_ids=problem_ids))


@admin.register(Problem)
class ProblemAdmin(JsonlImportAdminMixin, admin.ModelAdmin):
    import_service = staticmethod(problems_import)
    import_title = "Import problems (JSONL)"
    import_command = "import_problems"
    import_help = (
        "MATH-format JSONL: problem, solution, answer, subject, level, unique_id. "
        "Problems are matched by unique_id: new ones are added, changed ones updated."
    )
    list_display = ["unique_id", "subject", "level", "answer", "created_at"]
    list_filter = ["subject", "level"]
    search_fields = ["unique_id", "problem"]


@admin.register(Solution)
class SolutionAdmin(JsonlImportAdminMixin, admin.ModelAdmin):
    import_service = staticmethod(candidates_import)
    import_title = "Import candidates (JSONL)"
    import_command = "import_candidates"
    import_help = (
        'One candidate per line: {"unique_id" (or "problem"), "steps": [...] (or "solution"), '
        '"answer"?, "generator"?}. Duplicates of a known candidate are skipped.'
    )
    list_display = ["id", "problem", "answer", "grade", "generator", "source", "created_at"]
    list_filter = ["grade", "source", "generator"]
    search_fields = ["problem__unique_id", "answer"]
    raw_id_fields = ["problem"]
    actions = ["queue_for_labeling", queue_as_quality_control, queue_as_screening]

    @admin.action(description="Queue selected for labeling", permissions=["change"])
    def queue_for_labeling(self, request: HttpRequest, queryset: Any) -> None:
        from labeling.queries import generation_current, queue_scores
        from labeling.services.queue import tasks_enqueue

        generation = generation_current()
        created = tasks_enqueue(
            solution_ids=list(queryset.values_list("pk", flat=True)),
            generation=generation,
            overlap=1,
            kind="normal",
            scores=queue_scores,
        )
        self.message_user(
            request,
            f"Queued {created} of {queryset.count()} selected solutions "
            f"(generation {generation}; already queued ones were left as they were).",
            messages.SUCCESS,
        )


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
    actions = [use_my_label_as_gold]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["task", "annotator", "created_at", "expires_at"]
    raw_id_fields = ["task", "annotator"]


@admin.register(Label)
class LabelAdmin(ExportAdminMixin, JsonlImportAdminMixin, admin.ModelAdmin):
    import_service = staticmethod(prm800k_import)
    import_title = "Import PRM800K labels (JSONL)"
    import_command = "import_prm800k"
    import_help = (
        "PRM800K label records (phase 1 or 2): problems, candidates, tasks and labels are "
        "created as needed; records already imported are skipped."
    )
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
    actions = [export_selected_prm800k, export_selected_stepwise]


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "labeler", "screening_passed", "is_paused"]
    list_filter = ["screening_passed", "is_paused"]
    actions = [pause_annotators, pause_below_threshold, resume_annotators]
