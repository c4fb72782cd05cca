"""Django admin for ML staff: versions with Train / Evaluate / Promote / Score / Fill buttons,
evaluation tables and plots, and the selector's section on a job's page (``jobs.admin``).

Buttons POST to small admin views that call ``services.job_start`` and redirect to the job's
page; the model work runs on the ``ml`` Celery queue, filling the queue on ``default``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse

from jobs.admin import job_page_section_register
from jobs.models import Job, JobKind
from selector import plots, queries, services
from selector.models import SelectorVersion, SolutionScore
from selector.services.jobs import SELECTOR_KINDS

VERSION_JOBS = [JobKind.EVALUATE, JobKind.PROMOTE, JobKind.SCORE]
GLOBAL_JOBS = [JobKind.TRAIN, JobKind.SCORE, JobKind.FILL]


def _int_or_none(value: str | None, field: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise services.SelectorError(f"{field}: expected a whole number, got {value!r}") from None


def _job_params(kind: str, post: Any) -> dict[str, Any]:
    if kind == JobKind.TRAIN:
        if post.get("base"):
            return {"base": True}
        params: dict[str, Any] = {"epochs": _int_or_none(post.get("epochs"), "epochs") or 3}
        if post.get("name"):
            params["name"] = post["name"]
        return params
    if kind == JobKind.FILL:
        return {
            key: value
            for key, value in {
                "per_problem": _int_or_none(post.get("per_problem"), "per_problem"),
                "generation": _int_or_none(post.get("generation"), "generation"),
            }.items()
            if value is not None
        }
    return {}


@admin.register(SelectorVersion)
class SelectorVersionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "is_active",
        "step_auroc",
        "first_error_f1",
        "created_at",
        "promoted_at",
    ]
    list_filter = ["status", "is_active"]
    search_fields = ["name"]
    readonly_fields = [
        "name",
        "base_model",
        "checkpoint_path",
        "status",
        "is_active",
        "created_at",
        "promoted_at",
        "training_summary",
        "metrics",
    ]
    change_form_template = "admin/selector/selectorversion/change_form.html"
    change_list_template = "admin/selector/selectorversion/change_list.html"
    actions = ["evaluate_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from training (or `train_selector --base`)

    @admin.display(description="step AUROC")
    def step_auroc(self, obj: SelectorVersion) -> str:
        return queries._fmt(queries._get(obj.metrics, "step", "auroc"))

    @admin.display(description="first-error F1")
    def first_error_f1(self, obj: SelectorVersion) -> str:
        return queries._fmt(queries._get(obj.metrics, "first_error", "f1"))

    @admin.action(description="Evaluate the selected versions", permissions=["add_job"])
    def evaluate_selected(self, request: HttpRequest, queryset: Any) -> None:
        started = 0
        for version in queryset:
            try:
                services.job_start(
                    kind=JobKind.EVALUATE, params={}, user=request.user, version=version
                )
                started += 1
            except services.SelectorError as exc:
                self.message_user(request, str(exc), messages.ERROR)
        if started:
            self.message_user(request, f"Started {started} evaluation job(s).", messages.SUCCESS)

    def has_add_job_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("jobs.add_job")

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "start/<str:kind>/",
                wrap(self.start_job_view),
                name="selector_selectorversion_start",
            ),
            path(
                "<path:object_id>/start/<str:kind>/",
                wrap(self.start_job_view),
                name="selector_selectorversion_start_for",
            ),
            path(
                "<path:object_id>/plot/<str:which>.png",
                wrap(self.plot_view),
                name="selector_selectorversion_plot",
            ),
            *super().get_urls(),
        ]

    def start_job_view(
        self, request: HttpRequest, kind: str, object_id: str | None = None
    ) -> HttpResponse:
        return _start_job(self, request, kind, object_id)

    def plot_view(self, request: HttpRequest, object_id: str, which: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        version = get_object_or_404(SelectorVersion, pk=object_id)
        render = plots.PLOTS.get(which)
        if render is None:
            return HttpResponse(status=404)
        return HttpResponse(render(version.metrics or {}), content_type="image/png")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            "job_buttons": [(k.value, k.label) for k in GLOBAL_JOBS],
            "can_start_jobs": self.has_add_job_permission(request),
            "active_version": services.selector_active(),
            "open_slots": services.queue_open_slots(),
        }
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        version = get_object_or_404(SelectorVersion, pk=object_id)
        active = services.selector_active()
        # Prefer the active version's numbers from the same evaluation run (same held-out
        # set); fall back to its own stored evaluation.
        other = (version.metrics or {}).get("compared_with")
        other_name = other.get("version") if other else None
        if other is None and active is not None and active.pk != version.pk:
            other, other_name = active.metrics or None, active.name
        extra = {
            "version": version,
            "job_buttons": [(k.value, k.label) for k in VERSION_JOBS],
            "can_start_jobs": self.has_add_job_permission(request),
            "metrics_rows": queries.metrics_table(metrics=version.metrics, other=other),
            "other_name": other_name,
            "has_metrics": bool(version.metrics),
            "plots": [
                reverse("admin:selector_selectorversion_plot", args=[version.pk, which])
                for which in plots.PLOTS
            ],
            "recent_jobs": version.jobs.order_by("-created_at")[:10],
            "scored": SolutionScore.objects.filter(version=version).count(),
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})


def _start_job(
    model_admin: SelectorVersionAdmin, request: HttpRequest, kind: str, object_id: str | None
) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not model_admin.has_add_job_permission(request):
        raise PermissionDenied
    allowed = VERSION_JOBS if object_id is not None else GLOBAL_JOBS
    if kind not in allowed:
        return HttpResponse(f"unknown job kind {kind!r}", status=400)
    version = get_object_or_404(SelectorVersion, pk=object_id) if object_id else None
    back = (
        reverse("admin:selector_selectorversion_change", args=[version.pk])
        if version
        else reverse("admin:selector_selectorversion_changelist")
    )
    try:
        job = services.job_start(
            kind=kind,
            params=_job_params(kind, request.POST),
            user=request.user,
            version=version,
        )
    except services.SelectorError as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(back)
    model_admin.message_user(request, f"Started {job}.", messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))


def _job_section(job: Job) -> dict[str, Any]:
    """The selector's part of a job's admin page: its version, and evaluation results."""
    version = job.version
    show_eval = job.kind == JobKind.EVALUATE and version is not None and version.metrics
    other = (version.metrics or {}).get("compared_with") if version else None
    if not (show_eval and version):
        return {}
    return {
        "metrics_rows": queries.metrics_table(metrics=version.metrics, other=other),
        "other_name": other.get("version") if other else None,
        "plots": [
            reverse("admin:selector_selectorversion_plot", args=[version.pk, which])
            for which in plots.PLOTS
        ],
    }


job_page_section_register(
    *SELECTOR_KINDS, template="selector/_job_section.html", context=_job_section
)
