"""Headless Chromium (the Debian package, never a downloaded browser) against live_server."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Browser, Page


@pytest.fixture(scope="session")
def frontend_built() -> Path:
    manifest = Path(settings.FRONTEND_DIST) / ".vite" / "manifest.json"
    if not manifest.exists():
        pytest.fail(f"{manifest} is missing: run `make frontend` before the browser tests")
    return manifest


@pytest.fixture
def page(browser: Browser, frontend_built: Path, live_server) -> Iterator[Page]:
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


def login(page: Page, username: str, password: str = "pw") -> None:
    """Signs in through the real login form, starting from the page that needs it."""
    page.goto("/label/")
    page.wait_for_url("**/accounts/login/**")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/label/")
