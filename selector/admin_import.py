"""The admin's "Import an existing PRM" form: it starts an ``import_prm`` job, whose worker
checks the path and registers the version (``services.selector_import``). The request checks
only the form's fields: it never looks at the path, so it cannot tell an existing one from a
missing one, and the job fails with one message for every failure.

Kept apart from ``selector/admin.py`` so the version admin stays about training and jobs;
``SelectorVersionAdmin.get_urls`` mounts ``import_view``.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from jobs.models import JobKind
from jobs.params import JobParamsInvalid
from jobs.services import JobError
from selector import services


class ImportSelectorForm(forms.Form):
    model = forms.CharField(
        max_length=500,
        help_text="a model directory on the ml worker, or a Hugging Face hub id in its cache",
    )
    adapter = forms.ChoiceField(
        choices=[("qwen-prm", "Qwen2.5-Math-PRM layout"), ("math-shepherd", "Math-Shepherd")]
    )
    name = forms.CharField(max_length=100, required=False)
    activate = forms.BooleanField(required=False, help_text="make it the active selector now")


def import_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    # Registering a version is what ML staff's "change version" right allows.
    if not model_admin.has_change_permission(request):
        raise PermissionDenied
    form = ImportSelectorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        params = {
            "model": form.cleaned_data["model"],
            "adapter": form.cleaned_data["adapter"],
            "name": form.cleaned_data["name"] or None,
            "activate": form.cleaned_data["activate"],
        }
        try:
            job = services.job_start(kind=JobKind.IMPORT_PRM, params=params, user=request.user)
        except (services.SelectorError, JobParamsInvalid, JobError) as exc:
            form.add_error(None, str(exc))
        else:
            model_admin.message_user(
                request, f"Started {job}: the worker checks the model.", messages.SUCCESS
            )
            return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[job.pk]))
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Import an existing PRM",
        "form": form,
    }
    return TemplateResponse(request, "admin/selector/selectorversion/import.html", context)
