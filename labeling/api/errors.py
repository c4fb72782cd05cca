"""Errors the API answers in JSON: DRF's own, plus a busy or unreachable database as 503 with
Retry-After (stepwise.database_errors)."""

from typing import Any

from django.core.exceptions import BadRequest, RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import bad_request
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from stepwise.database_errors import RETRY_AFTER_SECONDS, database_error_kind, retry_later_detail


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    kind = database_error_kind(exc)
    if kind is not None:
        # The page's outbox retries 5xx; the label stays queued in the browser meanwhile.
        return Response(
            {"detail": retry_later_detail(kind)},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
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
