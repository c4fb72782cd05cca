"""The admin's "Import an existing PRM" form: a thin view over ``services.selector_import``.

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

from selector import services


class ImportSelectorForm(forms.Form):
    model = forms.CharField(
        max_length=500, help_text="a local model directory, or a Hugging Face hub id when online"
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
        try:
            version = services.selector_import(
                model=form.cleaned_data["model"],
                adapter=form.cleaned_data["adapter"],
                name=form.cleaned_data["name"] or None,
                activate=form.cleaned_data["activate"],
            )
        except services.SelectorError as exc:
            form.add_error(None, str(exc))
        else:
            model_admin.message_user(request, f"Imported {version.name}.", messages.SUCCESS)
            return HttpResponseRedirect(
                reverse("admin:selector_selectorversion_change", args=[version.pk])
            )
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "title": "Import an existing PRM",
        "form": form,
    }
    return TemplateResponse(request, "admin/selector/selectorversion/import.html", context)
