"""The OpenAPI schema documents the annotator API, and the docs page renders offline."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

ANNOTATOR_PATHS = [
    "/api/queue/next/",
    "/api/tasks/{task_id}/heartbeat/",
    "/api/tasks/{task_id}/submit/",
    "/api/tasks/{task_id}/skip/",
    "/api/me/",
]


def test_schema_lists_every_annotator_endpoint():
    from tests.factories import UserFactory

    client = Client()
    client.force_login(UserFactory(is_staff=True))
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    for path in ANNOTATOR_PATHS:
        assert path in schema["paths"], path
    submit = schema["paths"]["/api/tasks/{task_id}/submit/"]["post"]
    assert {"201", "200", "400", "404", "409"} <= set(submit["responses"])
    task_out = schema["components"]["schemas"]["TaskOut"]["properties"]
    assert "ground_truth_answer" in task_out and "solution" not in task_out
    assert "204" in schema["paths"]["/api/queue/next/"]["post"]["responses"]


def test_docs_page_renders_with_local_assets():
    from tests.factories import UserFactory

    client = Client()
    client.force_login(UserFactory(is_staff=True))
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn.jsdelivr" not in html
