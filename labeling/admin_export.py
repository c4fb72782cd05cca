"""Admin pages and actions for exports and quality control.

Kept beside ``admin.py`` (which wires them into the ModelAdmins) so that file stays a list of
registrations. Every write goes through ``labeling.services``.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from jobs.models import Job, JobKind, JobStatus
from labeling import permissions
from labeling.models import AnnotatorProfile, QualitySettings, Solution, Task, TaskKind
from labeling.services.export import (
    ExportFilters,
    StepwiseOptions,
    labels_for_export,
    prm800k_chunks,
    stepwise_chunks,
)
from labeling.services.export_jobs import (
    ExportJobBusy,
    export_empty_reason,
    export_job_create,
)
from labeling.services.quality import quality_settings_get
from labeling.services.quality_reports import (
    GoldLabelMissing,
    annotators_pause_set,
    quality_report_build,
    quality_tasks_create,
    task_gold_set,
)


def _jsonl_download(chunks: Any, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        (block.encode("utf-8") for block, _lines, _rows in chunks),
        content_type="application/jsonl",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- Labels: export the filtered changelist, or the whole set from a page -----------------------


@admin.action(description="Export selected as PRM800K JSONL", permissions=["export"])
def export_selected_prm800k(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponseBase:
    # What the admin selected is what they get: QC and screening labels keep their flags.
    return _jsonl_download(prm800k_chunks(labels=queryset), "prm800k-selected.jsonl")


@admin.action(description="Export selected as TRL stepwise JSONL", permissions=["export"])
def export_selected_stepwise(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]
) -> HttpResponseBase:
    return _jsonl_download(stepwise_chunks(labels=queryset), "stepwise-selected.jsonl")


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        choices=[("prm800k", "PRM800K JSONL"), ("stepwise", "TRL stepwise supervision JSONL")]
    )
    generation = forms.IntegerField(
        required=False, min_value=0, max_value=2**31 - 1, help_text="only this queue round"
    )
    since = forms.DateTimeField(required=False, help_text="only labels made at or after (UTC)")
    include_qc = forms.BooleanField(required=False, label="Include quality-control labels")
    include_screening = forms.BooleanField(required=False, label="Include screening labels")
    neutral = forms.ChoiceField(
        choices=[("positive", "positive"), ("negative", "negative")],
        help_text="TRL only: how a neutral step is labeled",
    )
    trajectories_only = forms.BooleanField(
        required=False,
        help_text="TRL only: one row per label, its chosen trajectory (no alternative completions)",
    )
    include_flagged = forms.BooleanField(
        required=False,
        label="Include flagged steps",
        help_text="TRL only: keep flagged steps as targets (by default a row ends before one)",
    )
    include_unreliable = forms.BooleanField(
        required=False,
        label="Include unreliable annotators",
        help_text="TRL only: keep labels of annotators who failed screening or are paused",
    )
    exclude_human_completions = forms.BooleanField(
        required=False,
        label="Exclude steps the labeler wrote",
        help_text="TRL only: leave out steps the labeler wrote (by default labeled true)",
    )

    def stepwise_options(self) -> StepwiseOptions:
        return StepwiseOptions.from_params(self.cleaned_data)

    def filters(self) -> ExportFilters:
        data = self.cleaned_data
        return ExportFilters(
            generation=data["generation"],
            since=data["since"],
            include_qc=data["include_qc"],
            include_screening=data["include_screening"],
        )


class ExportAdminMixin:
    """An "Export" page on the Label changelist: stream now, or run as a background job."""

    change_list_template: Any = "admin/labeling/label/change_list_export.html"

    def has_export_permission(self, request: HttpRequest) -> bool:
        # Also what `permissions=["export"]` on the export actions asks for.
        return request.user.has_perm(permissions.EXPORT_LABELS)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"can_export": self.has_export_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)  # type: ignore[misc]

    def get_urls(self) -> list[URLPattern]:
        model_admin: admin.ModelAdmin = self  # type: ignore[assignment]
        view = model_admin.admin_site.admin_view(self.export_view)
        return [path("export/", view, name="labeling_label_export"), *super().get_urls()]  # type: ignore[misc]

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        model_admin: admin.ModelAdmin = self  # type: ignore[assignment]
        if not self.has_export_permission(request):
            raise PermissionDenied
        form = ExportForm(request.POST or None, initial={"format": "prm800k"})
        if request.method == "POST" and form.is_valid():
            filters = form.filters()
            export_format = form.cleaned_data["format"]
            stepwise = form.stepwise_options()
            # An empty file says nothing: say that it would be empty, and why, instead.
            empty = export_empty_reason(filters=filters)
            if empty is not None:
                form.add_error(None, empty)
            elif "background" in request.POST:
                try:
                    job = export_job_create(
                        created_by=request.user if isinstance(request.user, User) else None,
                        filters=filters,
                        export_format=export_format,
                        stepwise=stepwise,
                    )
                except ExportJobBusy as busy:
                    messages.error(request, str(busy))
                else:
                    messages.success(request, f"Export job #{job.pk} queued; it appears below.")
                return redirect(reverse("admin:labeling_label_export"))
            else:
                labels = labels_for_export(filters=filters)
                if export_format == "stepwise":
                    chunks = stepwise_chunks(labels=labels, **stepwise.as_params())
                    return _jsonl_download(chunks, "stepwise.jsonl")
                return _jsonl_download(prm800k_chunks(labels=labels), "prm800k.jsonl")
        jobs = list(Job.objects.filter(kind=JobKind.EXPORT).order_by("-created_at")[:20])
        context = {
            **model_admin.admin_site.each_context(request),
            "opts": model_admin.opts,
            "title": "Export labels",
            "form": form,
            "jobs": [
                {
                    "job": job,
                    "download_url": reverse("export-job-download", args=[job.pk])
                    if job.status == JobStatus.SUCCEEDED
                    else None,
                }
                for job in jobs
            ],
            "refresh": any(j.status in (JobStatus.QUEUED, JobStatus.RUNNING) for j in jobs),
        }
        return TemplateResponse(request, "admin/labeling/label/export.html", context)


# --- Tasks and solutions: gold labels and quality-control questions ------------------------------


@admin.action(description="Use my label as gold", permissions=["change"])
def use_my_label_as_gold(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Task]
) -> None:
    assert isinstance(request.user, User)
    made, missing = 0, []
    for task_id in queryset.values_list("pk", flat=True):
        try:
            task_gold_set(task_id=task_id, user=request.user)
            made += 1
        except GoldLabelMissing:
            missing.append(task_id)
    if made:
        modeladmin.message_user(request, f"Your label is now gold on {made} task(s).")
    if missing:
        shown = ", ".join(map(str, missing[:20]))
        modeladmin.message_user(
            request,
            f"You have no label on task(s) {shown}: label them first, then mark them gold.",
            messages.ERROR,
        )


def _queue_quality(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Solution], kind: str
) -> None:
    created = quality_tasks_create(
        solution_ids=list(queryset.values_list("pk", flat=True)), kind=kind
    )
    modeladmin.message_user(
        request,
        f"Created {created} {TaskKind(kind).label.lower()} task(s); each needs a gold label "
        "(label it yourself, then “Use my label as gold” on the task).",
    )


@admin.action(description="Queue selected as quality-control questions", permissions=["change"])
def queue_as_quality_control(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Solution]
) -> None:
    _queue_quality(modeladmin, request, queryset, TaskKind.QUALITY_CONTROL)


@admin.action(description="Queue selected as screening questions", permissions=["change"])
def queue_as_screening(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Solution]
) -> None:
    _queue_quality(modeladmin, request, queryset, TaskKind.SCREENING)


# --- Annotators: pause and resume ------------------------------------------------------------


@admin.action(description="Pause selected annotators", permissions=["change"])
def pause_annotators(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AnnotatorProfile]
) -> None:
    n = annotators_pause_set(profile_ids=queryset.values_list("pk", flat=True), paused=True)
    modeladmin.message_user(request, f"Paused {n} annotator(s); their labels are kept.")


@admin.action(
    description="Pause those of the selected below the quality threshold", permissions=["change"]
)
def pause_below_threshold(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AnnotatorProfile]
) -> None:
    selected = set(queryset.values_list("pk", flat=True))
    below = [
        r
        for r in quality_report_build().annotators
        if r.profile_id in selected and r.below_threshold and not r.is_paused
    ]
    annotators_pause_set(profile_ids=[r.profile_id for r in below if r.profile_id], paused=True)
    names = ", ".join(r.username or str(r.labeler) for r in below)
    modeladmin.message_user(
        request,
        f"Paused {len(below)} annotator(s) below the threshold{': ' + names if names else ''}.",
    )


@admin.action(description="Resume selected annotators", permissions=["change"])
def resume_annotators(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AnnotatorProfile]
) -> None:
    n = annotators_pause_set(profile_ids=queryset.values_list("pk", flat=True), paused=False)
    modeladmin.message_user(request, f"Resumed {n} annotator(s).")


@admin.register(QualitySettings)
class QualitySettingsAdmin(admin.ModelAdmin):
    """The singleton: the changelist goes straight to its form."""

    list_display = ["__str__", "qc_rate", "screening_pass_mark", "screening_required"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied  # a redirect would tell anyone that the page exists
        row = quality_settings_get()
        return redirect(reverse("admin:labeling_qualitysettings_change", args=[row.pk]))
