"""Shared fixtures: offline Hugging Face, database-kind markers, and a real Celery worker."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
ARTIFACTS = ROOT / "test-artifacts"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if settings.IS_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL=postgres://…)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    """Real hashing costs ~100 ms per user; tests create hundreds of users."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def shared_data() -> Path:
    """The read-only real-data samples beside the checkout; skips when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


CHROMIUM = Path(os.environ.get("STEPWISE_CHROMIUM", "/usr/bin/chromium"))
# The flags this machine needs: no sandbox as root, and no background calls to the network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the session (never a downloaded browser)."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between page actions are still plain synchronous code, so Django's async guard relaxes.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A fresh browser context on the live server; fails the test on any JavaScript error."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def _database_url_for_subprocess() -> str:
    """The URL of the database the tests are using right now (the test database)."""
    from django.db import connection

    cfg = connection.settings_dict
    if cfg["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{cfg['NAME']}"
    host = cfg.get("HOST") or "127.0.0.1"
    port = cfg.get("PORT") or 5432
    user = cfg.get("USER") or "postgres"
    password = f":{cfg['PASSWORD']}" if cfg.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port}/{cfg['NAME']}"


WorkerStarter = Callable[..., "subprocess.Popen[bytes]"]


@pytest.fixture
def celery_worker_factory(transactional_db: None) -> Iterator[WorkerStarter]:
    """Start real `celery worker` processes on the test database.

    ``start(queues="ml", name="ml", env={...})`` returns the process (its own process group,
    so a test can SIGKILL it whole). Every process still alive is stopped at teardown. Tests
    that use it must see the workers' writes, hence `transactional_db`.
    """
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        queues: str = "default,ml", name: str = "worker", env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        worker_env = dict(os.environ)
        worker_env["DATABASE_URL"] = _database_url_for_subprocess()
        worker_env["CELERY_TASK_ALWAYS_EAGER"] = "0"
        worker_env.update(env or {})
        ARTIFACTS.mkdir(exist_ok=True)
        log = ARTIFACTS / f"celery-{name}.log"
        with open(log, "ab") as log_file:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "stepwise",
                    "worker",
                    "-Q",
                    queues,
                    "-n",
                    f"{name}-{len(procs)}@%h",
                    "--pool=solo",
                    "--loglevel=INFO",
                    "--without-heartbeat",
                    "--without-mingle",
                    "--without-gossip",
                ],
                cwd=ROOT,
                env=worker_env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is not None:
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def celery_worker_process(celery_worker_factory: WorkerStarter) -> subprocess.Popen[bytes]:
    """A real `celery worker` process on the test database, consuming every queue."""
    return celery_worker_factory()


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """Poll a condition (e.g. a row a worker writes) until it holds or the timeout passes."""

    def wait(condition: Callable[[], bool], timeout: float = 60.0, message: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}")

    return wait
