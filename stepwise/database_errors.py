"""A database that is busy or out of reach answers 503 with ``Retry-After``, never a 500 page.

*Busy*: another writer held a lock too long (SQLite's "database is locked", PostgreSQL's lock
and statement timeouts, deadlocks). *Unavailable*: the server is down, restarting or refusing
connections, or the connection broke under a request. Both clear up by themselves, so the
client is told to come back: API paths get JSON (the DRF handler in ``labeling.api.errors``,
and ``server_error`` for anything raised outside a view), pages get a short "try again in a
moment" page. No restart is needed afterwards: Django closes a connection that raised at the
end of the request, and the next request connects afresh.
"""

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views.defaults import server_error as django_server_error

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
# PostgreSQL: lock_not_available, serialization_failure, deadlock_detected, query_canceled
# (a lock or statement timeout); all are worth retrying once the writer is done.
_BUSY_SQLSTATES = {"55P03", "40001", "40P01", "57014"}
# Connection exceptions (class 08), the server shutting down or starting up
# (admin_shutdown, crash_shutdown, cannot_connect_now), and too many connections.
_UNAVAILABLE_SQLSTATES = {"57P01", "57P02", "57P03", "53300"}
_SQLITE_UNAVAILABLE = ("unable to open database file", "disk i/o error")

BUSY = "busy"
UNAVAILABLE = "unavailable"
_DETAIL = {
    BUSY: "The database is busy; retry shortly.",
    UNAVAILABLE: "The database is unavailable for a moment; retry shortly.",
}


def _sqlstate(error: Exception) -> str | None:
    cause = error.__cause__
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def database_busy(error: Exception) -> bool:
    """A lock held too long by another writer, as opposed to a broken database."""
    if not isinstance(error, OperationalError):
        return False
    if _sqlstate(error) in _BUSY_SQLSTATES:
        return True
    return "database is locked" in str(error) or "database table is locked" in str(error)


def database_unavailable(error: Exception) -> bool:
    """The database cannot be reached: no server, a server going down, a broken connection."""
    if isinstance(error, InterfaceError):
        return True  # Django's "connection already closed"
    if not isinstance(error, OperationalError):
        return False
    cause = error.__cause__
    if cause is not None and type(cause).__module__.startswith("psycopg"):
        # psycopg gives no SQLSTATE to errors raised on the client side: a refused or lost
        # connection, or one that is already closed.
        sqlstate = _sqlstate(error)
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    return str(error).lower().startswith(_SQLITE_UNAVAILABLE)


def database_error_kind(error: Exception) -> str | None:
    """``BUSY``, ``UNAVAILABLE``, or None for any other error (a bug: a 500)."""
    if database_busy(error):
        return BUSY
    if database_unavailable(error):
        return UNAVAILABLE
    return None


def retry_later_detail(kind: str) -> str:
    return _DETAIL[kind]


def retry_later_response(request: HttpRequest, kind: str) -> HttpResponse:
    """503 with Retry-After: JSON on API paths, a short page elsewhere (admin, label page).

    The page is rendered without a request context: the context processors would ask the
    database for the user.
    """
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": _DETAIL[kind]}, status=503)
    else:
        page = loader.get_template("503.html").render(
            {"retry_after": RETRY_AFTER_SECONDS, "busy": kind == BUSY}
        )
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a busy or unreachable database becomes a 503 wherever it was raised (a
    view, or middleware such as the session's); anything else is Django's 500 page."""
    error = sys.exc_info()[1]
    kind = database_error_kind(error) if isinstance(error, Exception) else None
    if kind is None:
        return django_server_error(request)
    logger.warning("database %s on %s %s: %s", kind, request.method, request.path, error)
    return retry_later_response(request, kind)
