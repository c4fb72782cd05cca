"""The /label/ page: login required, and it loads the Vite build named in the manifest."""

import json

import pytest
from django.conf import settings
from django.test import Client

from labeling.views import frontend_assets
from tests.factories import annotator

pytestmark = pytest.mark.django_db

MANIFEST = settings.FRONTEND_DIST / ".vite" / "manifest.json"


@pytest.fixture
def built_manifest() -> dict:
    assert MANIFEST.exists(), f"{MANIFEST} is missing: run `make frontend` before the tests"
    return json.loads(MANIFEST.read_text())


def test_label_page_redirects_anonymous_users_to_login(client: Client) -> None:
    response = client.get("/label/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/label/")


def test_label_page_serves_the_built_script_and_styles(client: Client, built_manifest) -> None:
    client.force_login(annotator("ann"))
    response = client.get("/label/")
    assert response.status_code == 200
    html = response.content.decode()
    entry = built_manifest["src/main.ts"]
    assert f'src="/static/{entry["file"]}"' in html
    for css in entry["css"]:
        assert f'href="/static/{css}"' in html
    assert 'data-username="ann"' in html
    # The page's API calls need the CSRF cookie and token.
    assert "csrftoken" in response.cookies
    assert 'data-csrf-token="' in html


def test_built_assets_exist_on_disk(built_manifest) -> None:
    assets = frontend_assets()
    assert (settings.FRONTEND_DIST / assets.script).is_file()
    assert assets.styles, "the KaTeX and page CSS should be bundled"
    for css in assets.styles:
        assert (settings.FRONTEND_DIST / css).is_file()


def test_label_page_explains_a_missing_build(client: Client, settings, tmp_path) -> None:
    settings.FRONTEND_DIST = tmp_path
    client.force_login(annotator("ann2"))
    response = client.get("/label/")
    assert response.status_code == 503
    assert "make frontend" in response.content.decode()


def test_login_page_signs_in_and_lands_on_label(client: Client) -> None:
    annotator("ann3")
    page = client.get("/accounts/login/?next=/label/")
    assert page.status_code == 200
    assert 'name="password"' in page.content.decode()
    response = client.post(
        "/accounts/login/", {"username": "ann3", "password": "pw", "next": "/label/"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/label/"


def test_login_page_shows_errors_for_a_wrong_password(client: Client) -> None:
    annotator("ann4")
    response = client.post("/accounts/login/", {"username": "ann4", "password": "nope"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
