"""Authentication that reads what the annotator API needs with the user, in one query.

Every API request loads its user; these load the annotator's profile (paused, screening, the
"QC due?" counter) and whether they are in the annotators group alongside, so the queue
services and the permission check need no queries of their own (decision 0009).
"""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.db.models import Exists, OuterRef, QuerySet
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from labeling.queries import ANNOTATORS_GROUP


def _in_annotators_group(user_ref: str) -> Exists:
    return Exists(
        User.groups.through.objects.filter(user_id=OuterRef(user_ref), group__name=ANNOTATORS_GROUP)
    )


def users_with_annotator_state() -> QuerySet[User]:
    return User.objects.select_related("annotator_profile").annotate(
        in_annotators_group=_in_annotators_group("pk")
    )


class AnnotatorModelBackend(ModelBackend):
    """Django's ModelBackend; the session's user comes with profile and group flag."""

    def get_user(self, user_id: Any) -> User | None:
        user = users_with_annotator_state().filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None


class AnnotatorTokenAuthentication(TokenAuthentication):
    """DRF's token authentication; the token's user comes with profile and group flag."""

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        token = (
            Token.objects.select_related("user", "user__annotator_profile")
            .annotate(in_annotators_group=_in_annotators_group("user_id"))
            .filter(key=key)
            .first()
        )
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        token.user.in_annotators_group = token.in_annotators_group  # type: ignore[attr-defined]
        return token.user, token
