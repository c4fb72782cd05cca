"""The database out of reach (issue 21): API paths answer a JSON 503 with Retry-After, pages (the
label page, the admin) a short "try again in a moment" page, never Django's 500 page; and once
the database is back the same process answers normally, with no restart.

In process on both backends (the connection's settings point at nothing), and on PostgreSQL
through real gunicorn whose database connections run through a TCP relay that the test cuts.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from django.db import InterfaceError, OperationalError, connection
from django.test import Client
from rest_framework.authtoken.models import Token

from bench._relay import TcpRelay
from bench._servers import free_port
from labeling.models import QualitySettings
from stepwise.database_errors import database_busy, database_error_kind, database_unavailable
from tests.conftest import ARTIFACTS, ROOT, _database_url_for_subprocess
from tests.factories import SolutionFactory, TaskFactory, UserFactory, annotator

PAGES = ["/label/", "/admin/", "/admin/labeling/task/"]


def assert_json_503(response) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert int(response["Retry-After"]) > 0
    assert "retry shortly" in response.json()["detail"]


def assert_page_503(response) -> None:
    assert response.status_code == 503, response.content[:300]
    assert response["Content-Type"].startswith("text/html")
    assert int(response["Retry-After"]) > 0
    body = response.content.decode()
    assert "Try again in a moment" in body
    assert "Server Error" not in body  # not Django's 500 page


def test_errors_are_sorted_into_busy_unavailable_and_bugs() -> None:
    import psycopg
    import psycopg.errors

    def wrapped(cause: Exception, message: str = "boom") -> OperationalError:
        error = OperationalError(message)
        error.__cause__ = cause
        return error

    refused = wrapped(psycopg.OperationalError("connection failed: Connection refused"))
    shutdown = wrapped(psycopg.errors.AdminShutdown("terminating connection"))
    timeout = wrapped(psycopg.errors.LockNotAvailable("lock timeout"))
    assert database_unavailable(refused) and database_unavailable(shutdown)
    assert database_unavailable(InterfaceError("connection already closed"))
    assert database_unavailable(OperationalError("unable to open database file"))
    assert database_busy(timeout) and not database_unavailable(timeout)
    assert database_error_kind(OperationalError("database is locked")) == "busy"
    # A missing table or a syntax error is a bug, and stays a 500.
    assert database_error_kind(OperationalError("no such table: labeling_task")) is None
    assert database_error_kind(wrapped(psycopg.errors.UndefinedTable("nope"))) is None
    assert database_error_kind(ValueError("not a database error")) is None


@pytest.mark.django_db(transaction=True)
def test_unreachable_database_is_a_503_everywhere_and_clears_without_a_restart() -> None:
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    TaskFactory(solution=SolutionFactory(steps=["One.", "# Answer\n\n2"]))
    staff = UserFactory(is_staff=True, is_superuser=True)
    labeler = annotator()
    api, pages = Client(raise_request_exception=False), Client(raise_request_exception=False)
    api.force_login(labeler)
    pages.force_login(staff)

    settings_dict = connection.settings_dict
    saved = {key: settings_dict[key] for key in ("NAME", "PORT")}
    connection.close()
    if connection.vendor == "sqlite":
        settings_dict["NAME"] = "/nonexistent-directory/stepwise.sqlite3"
    else:
        settings_dict["PORT"] = str(free_port())  # nothing listens there
    try:
        assert_json_503(api.get("/api/me/"))
        assert_json_503(api.post("/api/queue/next/", {}, content_type="application/json"))
        for path in PAGES:
            assert_page_503(pages.get(path))
    finally:
        connection.close()
        settings_dict.update(saved)

    assert api.get("/api/me/").status_code == 200
    assert api.post("/api/queue/next/", {}, content_type="application/json").status_code == 200
    for path in PAGES:
        assert pages.get(path).status_code == 200, path


@pytest.fixture
def gunicorn_behind_relay(transactional_db: None) -> Iterator[tuple[str, TcpRelay, psutil.Process]]:
    """Real gunicorn (one gthread worker, persistent connections) whose database connections
    run through a relay the test can cut."""
    settings_dict = connection.settings_dict
    relay = TcpRelay((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    url = _database_url_for_subprocess()
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    relayed_url = url.replace(f"@{host_port}/", f"@127.0.0.1:{relay.port}/")
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "gunicorn-outage.log", "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "stepwise.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                "2",
            ],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": relayed_url, "DEBUG": "0"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        master = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while not master.children() and time.monotonic() < deadline:
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", relay, master
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        relay.close()


def wait_for(base: str, path: str, headers: dict[str, str], status: int) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = httpx.get(base + path, headers=headers, timeout=10)
            if response.status_code == status or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_gunicorn_answers_503_while_the_connection_is_cut_and_recovers_in_place(
    gunicorn_behind_relay: tuple[str, TcpRelay, psutil.Process],
) -> None:
    base, relay, master = gunicorn_behind_relay
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    staff = UserFactory(is_staff=True, is_superuser=True)
    token = Token.objects.create(user=annotator()).key
    session = Client()
    session.force_login(staff)
    api = {"Authorization": f"Token {token}"}
    page = {"Cookie": f"sessionid={session.cookies['sessionid'].value}"}

    assert wait_for(base, "/api/me/", api, 200).status_code == 200
    for path in PAGES:  # every thread now holds a persistent connection through the relay
        assert httpx.get(base + path, headers=page, timeout=10).status_code == 200, path
    workers = {child.pid for child in master.children()}

    relay.cut()
    for _ in range(3):  # the broken persistent connections, then refused new ones
        response = httpx.get(base + "/api/me/", headers=api, timeout=10)
        assert response.status_code == 503, response.text[:300]
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["retry-after"]) > 0
        submit = httpx.post(
            base + "/api/tasks/999999/submit/", headers=api, json={"ratings": []}, timeout=10
        )
        assert submit.status_code == 503 and submit.json()["detail"], submit.text[:300]
        for path in PAGES:
            response = httpx.get(base + path, headers=page, timeout=10)
            assert response.status_code == 503, (path, response.text[:300])
            assert response.headers["content-type"].startswith("text/html")
            assert "Try again in a moment" in response.text
            assert int(response.headers["retry-after"]) > 0

    relay.restore()
    assert wait_for(base, "/api/me/", api, 200).status_code == 200
    for path in PAGES:
        assert wait_for(base, path, page, 200).status_code == 200, path
    # The same worker process answered throughout: nothing was restarted.
    assert {child.pid for child in master.children()} == workers
