"""The evaluation sets in the admin: newest first, what each freeze changed, and the button
that freezes a new one (``selector.add_evalset``)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import URLPattern, path, reverse

from selector.models import EvalSet
from selector.services.eval_set import eval_labels, eval_set_changes_text, eval_set_freeze


@admin.register(EvalSet)
class EvalSetAdmin(admin.ModelAdmin):
    """The frozen evaluation sets, newest first, and the button that freezes a new one
    (``selector.add_evalset``); each freeze is logged with what changed."""

    list_display = ["id", "labels", "problems", "created_at", "created_by", "what_changed"]
    fields = readonly_fields = ("id", "labels", "problems", "created_at", "created_by",
                                "what_changed", "fraction", "seed")  # fmt: skip
    change_list_template = "admin/selector/evalset/change_list.html"

    @admin.display(description="labels")
    def labels(self, obj: EvalSet) -> int:
        return len(obj.label_ids)

    @admin.display(description="what changed")
    def what_changed(self, obj: EvalSet) -> str:
        return eval_set_changes_text(obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # frozen by the button below, never typed in

    def has_change_permission(self, request: HttpRequest, obj: EvalSet | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: EvalSet | None = None) -> bool:
        return False  # metrics name their set: it stays

    def has_freeze_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("selector.add_evalset")

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "freeze/",
                self.admin_site.admin_view(self.freeze_view),
                name="selector_evalset_freeze",
            ),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"can_freeze": self.has_freeze_permission(request), "usable": eval_labels().count()}
        return super().changelist_view(request, {**extra, **(extra_context or {})})

    def freeze_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_freeze_permission(request):
            raise PermissionDenied
        frozen = eval_set_freeze(user=request.user)
        text = eval_set_changes_text(frozen)
        self.log_addition(request, frozen, text)
        self.message_user(request, text, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:selector_evalset_changelist"))
