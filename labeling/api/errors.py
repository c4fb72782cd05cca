"""Errors the API answers in JSON: DRF's own, plus a busy database as 503 with Retry-After."""

from typing import Any

from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import bad_request
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

RETRY_AFTER_SECONDS = 5
# PostgreSQL: lock_not_available, serialization_failure, deadlock_detected, query_canceled
# (a lock or statement timeout); all are worth retrying once the writer is done.
_RETRYABLE_SQLSTATES = {"55P03", "40001", "40P01", "57014"}


def database_busy(error: OperationalError) -> bool:
    """A lock held too long by another writer, as opposed to a broken database."""
    cause = error.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(error) or "database table is locked" in str(error)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, OperationalError) and database_busy(exc):
        # The page's outbox retries 5xx; the label stays queued in the browser meanwhile.
        return Response(
            {"detail": "The database is busy; retry shortly."},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, RequestDataTooBig | BadRequest | SuspiciousOperation):
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return exception_handler(exc, context)


def bad_request_json_for_api(request: HttpRequest, exception: Exception) -> HttpResponse:
    """``handler400``: API paths get JSON (e.g. a body over DATA_UPLOAD_MAX_MEMORY_SIZE caught
    before the view); everything else Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": str(exception) or "Bad request."}, status=400)
    return bad_request(request, exception)
