"""Schemathesis over the annotator and export APIs: no generated request is a server error.

Every operation under ``/api/queue/``, ``/api/tasks/``, ``/api/me/`` and ``/api/export/`` in the
OpenAPI schema gets requests that fit it (positive) and requests that break it (negative), sent
with a token as the annotator (annotator API) or as staff who may export (export API). Any
status of 500 or more, or an exception while the response streams, fails the test. Runs on
whichever database the suite runs on (SQLite by default, PostgreSQL with DATABASE_URL).
"""

import json
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient
from schemathesis import GenerationMode

from labeling.models import AnnotatorProfile, QualitySettings, TaskKind
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, UserFactory, annotator

pytestmark = pytest.mark.django_db

EXAMPLES = 30  # per operation and generation mode: about a minute in all on SQLite
ANNOTATOR_API = r"^/api/(queue|tasks|me)/"
EXPORT_API = r"^/api/export/"
STEPS = ["Let $x = 2$.", "Then $x^2 = 4$.", "# Answer\n\n4"]


def openapi_schema() -> dict[str, Any]:
    client = APIClient()
    client.force_authenticate(UserFactory(username="schema-reader", is_staff=True))
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def seed() -> None:
    """Enough state for every path to do real work: open tasks, a QC question, labels."""
    QualitySettings.objects.create(pk=1, qc_rate=0.2)
    for index in range(5):
        TaskFactory(solution=SolutionFactory(steps=STEPS), priority=1 - index / 10)
    qc = TaskFactory(kind=TaskKind.QUALITY_CONTROL, solution=SolutionFactory(steps=STEPS))
    qc.gold_label = LabelFactory(task=qc, ratings=[1, 1, -1], is_gold=True)
    qc.save(update_fields=["gold_label"])
    for _ in range(3):
        LabelFactory(task=TaskFactory(generation=1))


def token_client(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def encoded(case: Any) -> tuple[bytes | str, str]:
    """The generated body as the request carries it, in the case's media type."""
    media_type = case.media_type or "application/json"
    body = case.body
    if body is None or type(body).__name__ == "NotSet":
        return b"", media_type
    if isinstance(body, str | bytes):
        return body, media_type
    if media_type == "application/x-www-form-urlencoded" and isinstance(body, dict):
        return urlencode(body, doseq=True), media_type
    if media_type.startswith("multipart/") and isinstance(body, dict):
        fields = {k: v if isinstance(v, str) else as_json(v) for k, v in body.items()}
        return encode_multipart(BOUNDARY, fields), MULTIPART_CONTENT
    return as_json(body), media_type


def as_json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.decode("latin-1") if isinstance(v, bytes) else v)


def send(client: APIClient, case: Any) -> int:
    path = case.formatted_path
    if case.query:
        path = f"{path}?{urlencode(case.query, doseq=True)}"
    data, content_type = encoded(case)
    extra = {
        f"HTTP_{name.upper().replace('-', '_')}": str(value)
        for name, value in (case.headers or {}).items()
        if name.lower() not in ("authorization", "content-type", "content-length")
    }
    response = client.generic(case.method, path, data, content_type=content_type, **extra)
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)  # an error while streaming counts too
    return response.status_code


def server_errors(client: APIClient, operations: list[Any]) -> list[str]:
    """What went wrong with a status of 500 or more; asserts that some requests succeeded (the
    fuzzing reached the code behind validation) and some were refused (it tried bad input)."""
    errors: list[str] = []
    statuses: set[int] = set()
    strategies = [
        operation.as_strategy(generation_mode=mode)
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]

    @settings(
        max_examples=EXAMPLES * len(strategies),
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        status = send(client, case)
        statuses.add(status)
        if status >= 500:
            request = f"{case.method} {case.formatted_path} {case.query} {case.body!r}"
            errors.append(f"{status}: {request}")

    run()
    assert any(200 <= status < 300 for status in statuses), statuses
    assert 400 in statuses, statuses
    return errors


def operations(schema: Any, path_regex: str) -> list[Any]:
    found = [result.ok() for result in schema.include(path_regex=path_regex).get_all_operations()]
    assert found
    return found


@pytest.fixture
def schema() -> Any:
    return schemathesis.openapi.from_dict(openapi_schema())


def test_the_annotator_api_has_no_server_errors(schema: Any) -> None:
    seed()
    user = annotator("fuzzed")
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=True)
    found = operations(schema, ANNOTATOR_API)
    assert {op.path for op in found} >= {"/api/queue/next/", "/api/tasks/{task_id}/submit/"}
    assert server_errors(token_client(user), found) == []


def test_the_export_api_has_no_server_errors(schema: Any) -> None:
    seed()
    staff = UserFactory(username="exporter", is_staff=True, is_superuser=True)
    found = operations(schema, EXPORT_API)
    assert {op.path for op in found} >= {"/api/export/prm800k/", "/api/export/jobs/"}
    assert server_errors(token_client(staff), found) == []
