"""Django admin for ML staff: versions with Train / Evaluate / Promote / Score / Fill buttons,
evaluation tables and plots, and the selector's section on a job's page (``jobs.admin``).

Buttons POST to small admin views that call ``services.job_start`` and redirect to the job's
page; the model work runs on the ``ml`` Celery queue, filling the queue on ``default``. The
Fill form offers the selection rules, labelling those the active version cannot fill by.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from jobs import queries as job_queries
from jobs.admin import job_page_section_register
from jobs.models import Job, JobKind, JobStatus
from jobs.params import (
    JobParamsInvalid,
    job_params_bounds,
    job_params_clean,
    job_params_errors_text,
)
from jobs.services import JobError
from labeling.api.uploads import SpooledUpload, spooling_view, uploads_close
from labeling.models import SelectionRule
from selector import admin_eval_set, metric_rows, plots, queries, result_labels, services  # noqa: F401  (registers)
from selector.admin_import import import_view
from selector.models import SelectorVersion, SolutionScore, version_short_name
from selector.services.benchmark import benchmark_upload
from selector.services.job_params import DEFAULT_PROMPT_TEMPLATE
from selector.services.jobs import SELECTOR_KINDS, PromotionRefused, promotion_start
from selector.services.promotion import promotion_check
from selector.services.queue_fill import (
    FILL_RULES,
    fill_rule_unavailable,
    version_ensemble_missing,
)
from selector.services.simulation import simulation_file, simulation_page
from selector.services.training import training_warnings

VERSION_JOBS = [JobKind.EVALUATE, JobKind.PROMOTE, JobKind.SCORE]
GLOBAL_JOBS = [JobKind.TRAIN, JobKind.SCORE, JobKind.FILL, JobKind.SIMULATE, JobKind.GENERATE]


def _job_params(kind: str, post: Any) -> dict[str, Any]:
    """The form's parameters for ``kind``, typed and checked (``JobParamsInvalid`` names the
    field). "Untrained base" takes only a name: the training fields beside it do not apply."""
    if kind == JobKind.TRAIN and post.get("base"):
        post = {"base": post["base"], "name": post.get("name", "")}
    if kind == JobKind.GENERATE and post.get("prompt_template"):
        # A textarea posts CRLF line ends; the template keeps its other whitespace.
        post = {**post.dict(), "prompt_template": post["prompt_template"].replace("\r\n", "\n")}
    return job_params_clean(kind, post, text=True)


@admin.register(SelectorVersion)
class SelectorVersionAdmin(admin.ModelAdmin):
    list_display = [
        "display_name",
        "status",
        "is_active",
        "step_auroc",
        "first_error_f1",
        "eval_set",
        "step_heads",
        "created_at",
        "promoted_at",
    ]
    list_filter = ["status", "is_active"]
    search_fields = ["name"]
    # The training summary and metrics show as tables above, their JSON behind a toggle.
    fields = readonly_fields = (
        "name",
        "base_model",
        "checkpoint_path",
        "status",
        "is_active",
        "ensemble_heads",
        "created_at",
        "promoted_at",
    )
    change_form_template = "admin/selector/selectorversion/change_form.html"
    change_list_template = "admin/selector/selectorversion/change_list.html"
    actions = ["evaluate_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from training (or `train_selector --base`)

    @admin.display(description="version", ordering="created_at")
    def display_name(self, obj: SelectorVersion) -> str:
        return format_html(
            '<span class="selector-version-name" title="{}">{}</span>', obj.name, obj.short_name
        )

    @admin.display(description="step heads", ordering="ensemble_heads")
    def step_heads(self, obj: SelectorVersion) -> str:
        # "—": no ensemble (imported, untrained, or one head), so no uncertainty rule.
        return str(obj.ensemble_heads) if obj.has_ensemble else "—"

    @admin.display(description="evaluation set (labels)")
    def eval_set(self, obj: SelectorVersion) -> str:
        set_id = metric_rows.metric_value(obj.metrics, "eval_set.id")
        if set_id is None:
            return "—"
        labels = metric_rows.metric_value(obj.metrics, "eval_set.labels")
        labels = (
            labels
            if labels is not None
            else metric_rows.metric_value(obj.metrics, "held_out.labels")
        )
        return f"{set_id} ({queries._fmt(labels)})"

    @admin.display(description="step AUROC")
    def step_auroc(self, obj: SelectorVersion) -> str:
        return queries._fmt(metric_rows.metric_value(obj.metrics, "step.auroc"))

    @admin.display(description="first-error F1")
    def first_error_f1(self, obj: SelectorVersion) -> str:
        return queries._fmt(metric_rows.metric_value(obj.metrics, "first_error.f1"))

    @admin.action(description="Evaluate the selected versions", permissions=["add_job"])
    def evaluate_selected(self, request: HttpRequest, queryset: Any) -> None:
        started = 0
        for version in queryset:
            try:
                services.job_start(
                    kind=JobKind.EVALUATE, params={}, user=request.user, version=version
                )
                started += 1
            except (services.SelectorError, JobError) as exc:
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
                "<path:object_id>/promote/",
                wrap(self.promote_view),
                name="selector_selectorversion_promote",
            ),
            path(
                "<path:object_id>/benchmark/",
                spooling_view(
                    wrap(self.benchmark_view),
                    "file",
                    site=self.admin_site,
                    allowed=self.has_add_job_permission,
                ),
                name="selector_selectorversion_benchmark",
            ),
            path(
                "import/",
                wrap(lambda request: import_view(self, request)),
                name="selector_selectorversion_import",
            ),
            path(
                "<path:object_id>/plot/<str:which>.png",
                wrap(self.plot_view),
                name="selector_selectorversion_plot",
            ),
            path(
                "simulation/<int:job_id>/<str:name>",
                wrap(self.simulation_file_view),
                name="selector_selectorversion_simulation_file",
            ),
            *super().get_urls(),
        ]

    def simulation_file_view(self, request: HttpRequest, job_id: int, name: str) -> FileResponse:
        """A simulation job's PNG curves (or its report) for the job page: whoever may view
        jobs may see them; the file name is checked against what the runner writes."""
        if not request.user.has_perm("jobs.view_job"):
            raise PermissionDenied
        job = get_object_or_404(Job, pk=job_id, kind=JobKind.SIMULATE)
        path = simulation_file(job=job, name=name)
        if path is None:
            raise Http404("no such simulation file")
        content_type = {".png": "image/png", ".json": "application/json"}.get(
            path.suffix, "text/plain; charset=utf-8"
        )
        return FileResponse(path.open("rb"), content_type=content_type)

    def start_job_view(
        self, request: HttpRequest, kind: str, object_id: str | None = None
    ) -> HttpResponse:
        return _start_job(self, request, kind, object_id)

    def promote_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Promotion that asks: the verdict against the active version first; a clearly worse
        version needs a second confirmation (``force``)."""
        if not self.has_add_job_permission(request):
            raise PermissionDenied
        version = get_object_or_404(SelectorVersion, pk=object_id)
        back = reverse("admin:selector_selectorversion_change", args=[version.pk])
        check = promotion_check(version=version)
        second = False
        if request.method == "POST" and request.POST.get("confirm"):
            force = bool(request.POST.get("confirm_worse"))
            try:
                job = promotion_start(version=version, force=force, user=request.user)
            except PromotionRefused as refused:
                check, second = refused.check, True
            except services.SelectorError as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return HttpResponseRedirect(back)
            else:
                self.message_user(request, f"Started {job}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Promote {check.version}?",
            "opts": self.model._meta,
            "check": check,
            "verdict_text": VERDICT_TEXT.get(check.verdict, check.verdict),
            "second": second,
            "back": back,
        }
        return TemplateResponse(
            request, "admin/selector/selectorversion/promote_confirm.html", context
        )

    def benchmark_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Upload a ProcessBench / PRM800K file: spooled to disk here (``spooling_view``),
        checked and scored by a background job."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_add_job_permission(request):
            raise PermissionDenied
        version = get_object_or_404(SelectorVersion, pk=object_id)
        back = reverse("admin:selector_selectorversion_change", args=[version.pk])
        try:
            upload = request.FILES.get("file")
            if not isinstance(upload, SpooledUpload) or not upload.size:
                self.message_user(request, "Choose a benchmark file to upload.", messages.ERROR)
                return HttpResponseRedirect(back)
            try:
                threshold = float(request.POST.get("threshold") or 0.5)
            except ValueError:
                self.message_user(request, "threshold: expected a number in 0..1", messages.ERROR)
                return HttpResponseRedirect(back)
            job = benchmark_upload(
                version=version,
                spooled=Path(upload.temporary_file_path()),
                filename=upload.name or "benchmark.jsonl",
                threshold=threshold,
                user=request.user,
            )
        except (services.SelectorError, JobParamsInvalid, JobError) as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(back)
        finally:
            uploads_close(request.FILES)
        self.message_user(request, f"Started {job}: it checks the file first.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))

    def plot_view(self, request: HttpRequest, object_id: str, which: str) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        version = get_object_or_404(SelectorVersion, pk=object_id)
        render = plots.PLOTS.get(which)
        if render is None:
            return HttpResponse(status=404)
        active = services.selector_active()
        png = render(version.metrics or {}, active.name if active else None)
        return HttpResponse(png, content_type="image/png")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            "job_buttons": [(k.value, k.label) for k in GLOBAL_JOBS],
            "generation_prompt_template": DEFAULT_PROMPT_TEMPLATE,
            # The inputs' min/max are the bounds the jobs enforce (jobs.params).
            "param_bounds": {kind.value: job_params_bounds(kind) for kind in GLOBAL_JOBS},
            "train_warning": " ".join(training_warnings(queries.train_labels_available())),
            "can_start_jobs": self.has_add_job_permission(request),
            "active_version": services.selector_active(),
            "open_slots": services.queue_open_slots(),
            "fill_rules": _fill_rule_choices(services.selector_active()),
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
        other_name = _compared_name(other)
        if other is None and active is not None and active.pk != version.pk:
            other, other_name = active.metrics or None, active.short_name
            mine_set = metric_rows.metric_value(version.metrics, "eval_set.id")
            if other and metric_rows.metric_value(other, "eval_set.id") != mine_set:
                other_name = f"{active.short_name} (another evaluation set: not comparable)"
        extra = {
            "version": version,
            "job_buttons": [(k.value, k.label) for k in VERSION_JOBS],
            "can_start_jobs": self.has_add_job_permission(request),
            "metrics_rows": queries.metrics_table(metrics=version.metrics, other=other),
            "other_name": other_name,
            "comparison_warning": metric_rows.comparison_warning(version.metrics),
            "eval_set_note": queries.eval_set_note(version.metrics),
            "has_metrics": bool(version.metrics),
            "promote_url": reverse("admin:selector_selectorversion_promote", args=[version.pk]),
            "training_rows": job_queries.result_rows(version.training_summary),
            "training_json": job_queries.raw_json(version.training_summary or {}),
            "metrics_json": job_queries.raw_json(version.metrics or {}),
            "plots": [
                reverse("admin:selector_selectorversion_plot", args=[version.pk, which])
                for which in plots.PLOTS
            ],
            "recent_jobs": version.jobs.order_by("-created_at")[:10],
            "benchmarks": [
                job.result
                for job in version.jobs.filter(
                    kind=JobKind.BENCHMARK, status=JobStatus.SUCCEEDED
                ).order_by("-finished_at")[:10]
            ],
            "benchmark_url": reverse("admin:selector_selectorversion_benchmark", args=[version.pk]),
            "scored": SolutionScore.objects.filter(version=version).count(),
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})


VERDICT_TEXT = {
    "better": "better than the active version",
    "worse": "clearly worse than the active version",
    "no difference": "no difference from the active version",
    "unclear": "unclear: not clearly better or worse",
    "not compared": "not compared with the active version yet",
    "first": "no other version is active",
}


def _compared_name(other: dict[str, Any] | None) -> str | None:
    if not other:
        return None
    name = str(other.get("version") or "")
    return version_short_name(name, other.get("version_id")) if name else None


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
    if kind == JobKind.PROMOTE and version is not None:
        # Promotion asks first: its confirmation page shows the verdict.
        return HttpResponseRedirect(
            reverse("admin:selector_selectorversion_promote", args=[version.pk])
        )
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
    except JobParamsInvalid as exc:
        what = JobKind(kind).label
        text = job_params_errors_text(exc.errors)
        model_admin.message_user(request, f"{what} was not started: {text}.", messages.ERROR)
        return HttpResponseRedirect(back)
    except (services.SelectorError, JobError) as exc:
        model_admin.message_user(request, str(exc), messages.ERROR)
        return HttpResponseRedirect(back)
    model_admin.message_user(request, f"Started {job}.", messages.SUCCESS)
    return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))


def _fill_rule_choices(active: SelectorVersion | None) -> list[dict[str, Any]]:
    """The Fill form's rule options: the setting's preselected, and each rule the active
    version cannot fill by labelled so (submitting it anyway is refused, naming the rule)."""
    choices = []
    for rule in FILL_RULES:
        label = f"{rule}: {SelectionRule(rule).label}"
        unavailable = active is not None and fill_rule_unavailable(rule=rule, version=active)
        if unavailable:
            assert active is not None
            why = version_ensemble_missing(active)
            label = f"{rule} — unavailable: the active version {active.name} {why}"
        choices.append(
            {
                "value": rule,
                "label": label,
                "selected": rule == settings.SELECTOR_RULE,
                "title": unavailable or "",
            }
        )
    return choices


def _job_section(job: Job) -> dict[str, Any]:
    """The selector's part of a job's admin page: its version, and evaluation results; for a
    simulation, its curves, data-efficiency ratio and summary."""
    if job.kind == JobKind.SIMULATE:
        page = simulation_page(job=job)
        if not page:
            return {}
        return {
            "simulation": page,
            "simulation_plots": [
                reverse("admin:selector_selectorversion_simulation_file", args=[job.pk, name])
                for name in page["plots"]
            ],
        }
    version = job.version
    show_eval = job.kind == JobKind.EVALUATE and version is not None and version.metrics
    other = (version.metrics or {}).get("compared_with") if version else None
    if not (show_eval and version):
        return {}
    return {
        "metrics_rows": queries.metrics_table(metrics=version.metrics, other=other),
        "other_name": _compared_name(other),
        "comparison_warning": metric_rows.comparison_warning(version.metrics),
        "eval_set_note": queries.eval_set_note(version.metrics),
        "plots": [
            reverse("admin:selector_selectorversion_plot", args=[version.pk, which])
            for which in plots.PLOTS
        ],
    }


job_page_section_register(
    *SELECTOR_KINDS, template="selector/_job_section.html", context=_job_section
)
