"""Headless Chromium (the Debian package, never a downloaded browser) against live_server."""

from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import Page


@pytest.fixture(scope="session")
def frontend_built() -> Path:
    manifest = Path(settings.FRONTEND_DIST) / ".vite" / "manifest.json"
    if not manifest.exists():
        pytest.fail(f"{manifest} is missing: run `make frontend` before the browser tests")
    return manifest


@pytest.fixture
def page(frontend_built: Path, page: Page) -> Page:
    """The shared page fixture, for tests that also need the built annotator page."""
    return page


def login(page: Page, username: str, password: str = "pw") -> None:
    """Signs in through the real login form, starting from the page that needs it."""
    page.goto("/label/")
    page.wait_for_url("**/accounts/login/**")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/label/")
