"""The staff dashboard: one page of progress and quality, plots as PNGs, pause/resume.

Staff status gets a user to the admin's sign-in; the pages themselves need model permissions
(``labeling.permissions``), so staff without them get 403.
"""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from labeling import dashboard, permissions
from labeling.services.quality_reports import (
    annotators_pause_set,
    quality_report_build,
    report_rows,
)


@staff_member_required
@permission_required(permissions.VIEW_DASHBOARD, raise_exception=True)
def dashboard_view(request: HttpRequest) -> HttpResponse:
    report = quality_report_build()
    ratings = dashboard.rating_distribution()
    context = {
        "title": "Stepwise dashboard",
        "progress": dashboard.progress_by_generation(),
        "ratings": [(dashboard.RATING_NAMES[k], n) for k, n in ratings.items()],
        "finish_reasons": dashboard.finish_reasons(),
        "report": report,
        "annotators": report_rows(report),
        # Sections the apps above labeling registered (``dashboard.dashboard_section_register``).
        "sections": [
            {"template": section.template, "context": section.context()}
            for section in dashboard.DASHBOARD_SECTIONS.values()
        ],
        "plots": list(dashboard.PLOTS),
    }
    return render(request, "labeling/dashboard.html", context)


@staff_member_required
@permission_required(permissions.VIEW_DASHBOARD, raise_exception=True)
def dashboard_plot(request: HttpRequest, name: str) -> HttpResponse:
    plot = dashboard.PLOTS.get(name)
    if plot is None:
        raise Http404(f"no plot named {name!r}")
    response = HttpResponse(plot(), content_type="image/png")
    response["Cache-Control"] = "private, max-age=30"
    return response


@staff_member_required
@permission_required(permissions.PAUSE_ANNOTATORS, raise_exception=True)
@require_POST
def annotator_pause(request: HttpRequest, profile_id: int) -> HttpResponse:
    paused = request.POST.get("paused") == "1"
    if annotators_pause_set(profile_ids=[profile_id], paused=paused) != 1:
        raise Http404("no such annotator")
    messages.success(request, "Annotator paused." if paused else "Annotator resumed.")
    return redirect("dashboard")
