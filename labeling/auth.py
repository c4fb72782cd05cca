"""Authentication that reads what the annotator API needs with the user, in one query.

Every API request loads its user; these load the annotator's profile (paused, screening, the
"QC due?" counter) and whether they are in the annotators group alongside, so the queue
services and the permission check need no queries of their own (decision 0009).
"""

from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

from labeling import rawsql
from labeling.models import AnnotatorProfile
from labeling.queries import ANNOTATORS_GROUP

_USER_STATE = f"""
    {rawsql.columns(User, "u")}, {rawsql.columns(AnnotatorProfile, "p")},
    EXISTS (SELECT 1 FROM auth_user_groups ug JOIN auth_group g ON g.id = ug.group_id
            WHERE ug.user_id = u.id AND g.name = %s)
"""
_USER_BY_ID = f"""
SELECT {_USER_STATE}
FROM auth_user u LEFT JOIN labeling_annotatorprofile p ON p.user_id = u.id
WHERE u.id = %s
"""
_USER_BY_TOKEN = f"""
SELECT {rawsql.columns(Token, "t")}, {_USER_STATE}
FROM authtoken_token t JOIN auth_user u ON u.id = t.user_id
LEFT JOIN labeling_annotatorprofile p ON p.user_id = u.id
WHERE t.key = %s
"""


def _user_from_row(row: tuple[Any, ...]) -> User:
    users = rawsql.width(User)
    user = rawsql.instance(User, row[:users])
    profile_values = row[users : users + rawsql.width(AnnotatorProfile)]
    if profile_values[0] is not None:  # no profile yet: annotator_profile_get creates it
        user.annotator_profile = rawsql.instance(AnnotatorProfile, profile_values)
    user.in_annotators_group = bool(row[-1])  # type: ignore[attr-defined]
    user.annotator_state_loaded = True  # type: ignore[attr-defined]  # see annotator_profile_get
    return user


def user_with_annotator_state(user_id: Any) -> User | None:
    with connection.cursor() as cursor:
        cursor.execute(_USER_BY_ID, [ANNOTATORS_GROUP, user_id])
        row = cursor.fetchone()
    return None if row is None else _user_from_row(row)


class AnnotatorModelBackend(ModelBackend):
    """Django's ModelBackend; the session's user comes with profile and group flag."""

    def get_user(self, user_id: Any) -> User | None:
        try:
            user = user_with_annotator_state(int(user_id))
        except (TypeError, ValueError, OverflowError):
            return None
        return user if user is not None and self.user_can_authenticate(user) else None


class AnnotatorTokenAuthentication(TokenAuthentication):
    """DRF's token authentication; the token's user comes with profile and group flag."""

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        with connection.cursor() as cursor:
            cursor.execute(_USER_BY_TOKEN, [ANNOTATORS_GROUP, key])
            row = cursor.fetchone()
        if row is None:
            raise AuthenticationFailed("Invalid token.")
        tokens = rawsql.width(Token)
        token = rawsql.instance(Token, row[:tokens])
        user = _user_from_row(row[tokens:])
        token.user = user
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return user, token
