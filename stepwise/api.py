"""What every app's staff API shares: a permission class per Django model permission.

Staff endpoints check the same model permissions as the admin pages they mirror
(docs/decisions/0010-permissions-model.md), so a token can do what its user could do there.
"""

from __future__ import annotations

from functools import cache

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView


@cache
def model_permission(*perms: str) -> type[BasePermission]:
    """A DRF permission class granting signed-in users who hold every one of ``perms``."""

    class HasModelPermissions(BasePermission):
        message = "This needs the permission " + ", ".join(perms) + "."

        def has_permission(self, request: Request, view: APIView) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perms(perms))

    HasModelPermissions.__name__ = HasModelPermissions.__qualname__ = "Has_" + "_and_".join(
        p.replace(".", "_") for p in perms
    )
    return HasModelPermissions
