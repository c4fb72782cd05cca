"""The Content-Security-Policy header: on every response, strict outside the admin pages."""

import re
from pathlib import Path

import pytest
from django.test import Client

from tests.factories import UserFactory, annotator

ROOT = Path(__file__).resolve().parent.parent.parent


def directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def assert_no_script_loopholes(policy: dict[str, list[str]]) -> None:
    assert policy["script-src"] == ["'self'"]  # no inline scripts, no eval, no other hosts
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    for name, values in policy.items():
        hosts = [v for v in values if re.match(r"(https?:|\*|[\w-]+\.[\w.-]+)", v)]
        assert not hosts, f"{name} allows other hosts: {hosts}"
        assert "'unsafe-eval'" not in values, name


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["/label/", "/api/me/", "/accounts/login/", "/", "/no-such-page/", "/api/schema/"],
)
def test_annotator_pages_and_the_api_get_the_strict_policy(url: str) -> None:
    client = Client()
    client.force_login(annotator("ann"))
    response = client.get(url)
    policy = directives(response)
    assert_no_script_loopholes(policy)
    assert policy["style-src"] == ["'self'"]  # no <style> elements either
    assert policy["connect-src"] == ["'self'"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/admin/", "/admin/dashboard/", "/admin/labeling/label/", "/api/docs/"]
)
def test_admin_and_swagger_pages_may_inline_styles_but_never_scripts(url: str) -> None:
    client = Client()
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    response = client.get(url)
    assert response.status_code == 200
    policy = directives(response)
    assert_no_script_loopholes(policy)
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]


@pytest.mark.django_db
def test_anonymous_redirects_carry_it_too() -> None:
    response = Client().get("/label/")
    assert response.status_code == 302
    assert_no_script_loopholes(directives(response))


def test_no_template_has_an_inline_script() -> None:
    """What the header forbids, the templates must not need (the browser tests check pages)."""
    inline = []
    for template in ROOT.glob("*/templates/**/*.html"):
        for match in re.finditer(r"<script\b([^>]*)>", template.read_text()):
            attrs = match.group(1)
            if "src=" not in attrs and "application/json" not in attrs:
                inline.append(f"{template.relative_to(ROOT)}: {match.group(0)}")
    assert not inline, inline


def test_no_template_has_an_inline_event_handler() -> None:
    """``onclick="…"`` and friends are inline script too: the CSP blocks them silently."""
    handlers = []
    for template in ROOT.glob("*/templates/**/*.html"):
        for match in re.finditer(r"<[a-z][^>]*\son[a-z]+\s*=", template.read_text()):
            handlers.append(f"{template.relative_to(ROOT)}: {match.group(0)[:80]}")
    assert not handlers, handlers
