"""Django admin for problems, candidates, the queue and labels.

Each ModelAdmin delegates writes to ``labeling.services``; admin code only gathers input.
"""

from pathlib import Path
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from jobs.params import JobParamsInvalid
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
from labeling.api.uploads import SpooledUpload, spooling_view, uploads_close
from labeling.models import AnnotatorProfile, GradedAnswer, Label, Lease, Problem, Solution, Task
from labeling.services.import_jobs import ImportStarted, import_job_start, upload_filename

# --- "Import JSONL" pages: uploads spooled to disk, imported by a background job ---


class JsonlUploadForm(forms.Form):
    file = forms.FileField(help_text="JSONL, one record per line")
    skip_invalid = forms.BooleanField(
        required=False, label="Skip invalid lines (import the valid ones)"
    )


class JsonlImportAdminMixin:
    """Adds an "Import JSONL" button and page to a ModelAdmin changelist. The file is spooled
    to disk as it arrives (``labeling.api.uploads``, the import API's way, under the same
    limit) and imported by an import job, whose page shows its progress and invalid lines:
    nothing is read inside the request."""

    import_format = ""
    import_title = "Import JSONL"
    import_command = ""
    import_help = ""
    change_list_template: Any = "admin/labeling/change_list_import.html"

    def get_urls(self) -> list[URLPattern]:
        admin_self = cast(admin.ModelAdmin, self)
        name = f"{admin_self.opts.app_label}_{admin_self.opts.model_name}_import_jsonl"
        site = admin_self.admin_site
        view = spooling_view(
            site.admin_view(self.import_jsonl_view),
            "file",
            site=site,
            allowed=admin_self.has_add_permission,
        )
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
        try:
            form = JsonlUploadForm(request.POST or None, request.FILES or None)
            if request.method == "POST" and form.is_valid():
                started = self._import_start(request, form)
                if started is not None:
                    return redirect(reverse("admin:jobs_job_change", args=[started.job.pk]))
        finally:
            uploads_close(request.FILES)  # what was spooled and not kept is deleted
        context = {
            **admin_self.admin_site.each_context(request),
            "opts": admin_self.opts,
            "form": form,
            "title": self.import_title,
            "help_text": self.import_help,
            "command": self.import_command,
            "max_mb": settings.IMPORT_UPLOAD_MAX_BYTES // 2**20,
        }
        return TemplateResponse(request, "admin/labeling/import_jsonl.html", context)

    def _import_start(self, request: HttpRequest, form: JsonlUploadForm) -> ImportStarted | None:
        upload = form.cleaned_data["file"]
        if not isinstance(upload, SpooledUpload):  # pragma: no cover - the view spools
            form.add_error("file", "the upload was not received whole; send it again")
            return None
        try:
            started = import_job_start(
                spooled=Path(upload.temporary_file_path()),
                sha256=upload.sha256,
                import_format=self.import_format,
                filename=upload.name or "",
                skip_invalid=form.cleaned_data["skip_invalid"],
                user=request.user,
            )
        except JobParamsInvalid as exc:
            form.add_error(None, str(exc))
            return None
        job = started.job
        if started.created:
            messages.success(
                request,
                f"Importing {upload_filename(upload.name)} as {job}: this page follows it; "
                "invalid lines are listed here when it ends, and final answers are graded.",
            )
        else:
            messages.info(request, f"The same file was already sent: {job} is its import.")
        return started


@admin.register(Problem)
class ProblemAdmin(JsonlImportAdminMixin, admin.ModelAdmin):
    import_format = "problems"
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
    import_format = "candidates"
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
        "queued_by",
        "rule",
        "priority",
        "queued_score",
        "required_labels",
        "label_count",
        "late_count",
        "lease_count",
        "created_at",
    ]
    list_filter = ["kind", "generation", "queued_by", "rule"]
    raw_id_fields = ["solution", "gold_label"]
    actions = [use_my_label_as_gold]


@admin.register(Lease)
class LeaseAdmin(admin.ModelAdmin):
    list_display = ["task", "annotator", "created_at", "expires_at"]
    raw_id_fields = ["task", "annotator"]


@admin.register(Label)
class LabelAdmin(ExportAdminMixin, JsonlImportAdminMixin, admin.ModelAdmin):
    import_format = "prm800k"
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
        "late",
    ]
    list_filter = ["finish_reason", "is_gold", "late", "task__kind", "task__generation"]
    raw_id_fields = ["task", "annotator"]
    actions = [export_selected_prm800k, export_selected_stepwise]


@admin.register(AnnotatorProfile)
class AnnotatorProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "labeler", "screening_passed", "is_paused"]
    list_filter = ["screening_passed", "is_paused"]
    actions = [pause_annotators, pause_below_threshold, resume_annotators]
