"""Jobs in the Django admin: a live progress bar, the worker's heartbeat, and the two things an
admin can do about a job that went wrong: mark it failed, or retry it.

Apps add their own part to a job's page (the selector shows evaluation results) by registering
a section for their kinds, so this app never imports theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse

from jobs import queries, services
from jobs.models import Job


@dataclass(frozen=True)
class JobPageSection:
    template: str
    context: Callable[[Job], dict[str, Any]]


JOB_PAGE_SECTIONS: dict[str, JobPageSection] = {}


def job_page_section_register(
    *kinds: str, template: str, context: Callable[[Job], dict[str, Any]]
) -> None:
    for kind in kinds:
        JOB_PAGE_SECTIONS[kind] = JobPageSection(template=template, context=context)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "status",
        "version",
        "progress_percent",
        "attempts",
        "heartbeat_at",
        "created_by",
        "created_at",
        "finished_at",
    ]
    list_filter = ["kind", "status"]
    list_select_related = ["version", "created_by"]
    # Progress, error, parameters and result show above the form: the bar live, the others
    # as tables with the raw JSON behind a toggle.
    fields = readonly_fields = (
        "kind",
        "status",
        "version",
        "created_by",
        "created_at",
        "started_at",
        "heartbeat_at",
        "worker",
        "attempts",
        "finished_at",
    )
    change_form_template = "admin/jobs/job/change_form.html"
    actions = ["mark_failed", "retry"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are started from the pages of what they work on

    def has_change_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        return False  # a job's record is written by its worker; the actions below steer it

    def has_steer_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.change_job")

    def has_view_permission(self, request: HttpRequest, obj: Job | None = None) -> bool:
        # Whoever started a job follows it, as in the API (``jobs.queries.job_visible_to``).
        if obj is not None and queries.job_visible_to(obj, request.user):
            return True
        return super().has_view_permission(request, obj)

    @admin.action(description="Mark the selected jobs failed", permissions=["steer"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        def act(job: Job) -> Job:
            return services.job_mark_failed(job_id=job.pk, user=request.user)

        self._each(request, queryset, "marked failed", act)

    @admin.action(description="Retry the selected jobs", permissions=["steer"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        def act(job: Job) -> Job:
            return services.job_retry(job_id=job.pk, user=request.user)

        self._each(request, queryset, "queued again", act)

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Job],
        done: str,
        act: Callable[[Job], Job],
    ) -> None:
        count = 0
        for job in queryset:
            try:
                act(job)
                count += 1
            except services.JobError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if count:
            self.message_user(request, f"{count} job(s) {done}.", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/progress/",
                self.admin_site.admin_view(self.progress_view),
                name="jobs_job_progress",
            ),
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(self.cancel_view),
                name="jobs_job_cancel",
            ),
            *super().get_urls(),
        ]

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        job = get_object_or_404(Job, pk=object_id)
        # Those who steer jobs, or the job's creator (as the API allows).
        if not queries.job_cancellable_by(job, request.user):
            raise PermissionDenied
        if services.job_cancel(job=job):
            self.message_user(request, f"Cancelling {job}: it stops at its next check.")
        else:
            self.message_user(request, f"{job} has already ended.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def progress_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        job = get_object_or_404(Job, pk=object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return JsonResponse(queries.job_progress(job))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        job = get_object_or_404(Job.objects.select_related("version"), pk=object_id)
        section = JOB_PAGE_SECTIONS.get(job.kind)
        extra: dict[str, Any] = {
            "job": job,
            "progress": queries.job_progress(job),
            "progress_url": reverse("admin:jobs_job_progress", args=[job.pk]),
            "can_cancel": queries.job_cancellable_by(job, request.user) and not job.finished,
            "cancel_url": reverse("admin:jobs_job_cancel", args=[job.pk]),
            "section_template": section.template if section else None,
            "params_rows": queries.result_rows(job.params),
            "result_rows": queries.result_rows(
                {k: v for k, v in (job.result or {}).items() if k != queries.RESULT_ERRORS}
            ),
            "result_errors": (job.result or {}).get(queries.RESULT_ERRORS) or [],
            "result_json": queries.raw_json({"params": job.params, "result": job.result}),
            **(section.context(job) if section else {}),
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})
