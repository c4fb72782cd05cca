"""Round trips per claim and per submit through the views (issue 11, item 10), counted with
the authentication queries and transaction statements a real request makes.

PostgreSQL: four each with session auth (session, user with profile, state, one statement),
three with a token. SQLite has no data-modifying CTEs and its writers open and close a
transaction explicitly, so its numbers are higher; they are locked here too.
"""

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import QualitySettings
from tests.factories import TaskFactory, annotator
from tests.labeling.api.support import submit_body

pytestmark = pytest.mark.django_db(transaction=True)  # real transactions, as in production

EXPECTED = {
    # (claim, submit) per authentication kind
    "postgresql": {"session": (4, 4), "token": (3, 3)},
    "sqlite": {"session": (8, 9), "token": (7, 8)},
}


@pytest.fixture
def queue() -> None:
    QualitySettings.objects.create(pk=1)  # defaults: QC on (10%), as in production
    TaskFactory.create_batch(30)


def logged_in(user, auth: str) -> APIClient:
    client = APIClient()
    if auth == "session":
        client.force_login(user)  # the session row is read on every request
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def claim_then_submit(client: APIClient) -> tuple[object, object]:
    claimed = client.post("/api/queue/next/", {}, format="json")
    assert claimed.status_code == 200
    task = claimed.json()
    body = submit_body(ratings=[1] * len(task["steps"]))
    return task, client.post(f"/api/tasks/{task['id']}/submit/", body, format="json")


@pytest.mark.parametrize("auth", ["session", "token"])
def test_claim_and_submit_query_counts(queue, auth, django_assert_num_queries):
    claim_count, submit_count = EXPECTED[connection.vendor][auth]
    client = logged_in(annotator(), auth)
    for _ in range(3):  # some labels behind the annotator, so the NOT EXISTS probes hit rows
        claim_then_submit(client)
    with django_assert_num_queries(claim_count):
        claimed = client.post("/api/queue/next/", {}, format="json")
    assert claimed.status_code == 200
    task = claimed.json()
    body = submit_body(ratings=[1] * len(task["steps"]))
    with django_assert_num_queries(submit_count):
        submitted = client.post(f"/api/tasks/{task['id']}/submit/", body, format="json")
    assert submitted.status_code == 201


def test_prefetch_claim_with_a_task_on_screen_costs_the_same(queue, django_assert_num_queries):
    client = logged_in(annotator(), "session")
    on_screen = client.post("/api/queue/next/", {}, format="json").json()
    claim_count = EXPECTED[connection.vendor]["session"][0]
    with django_assert_num_queries(claim_count):
        prefetched = client.post("/api/queue/next/", {"exclude": [on_screen["id"]]}, format="json")
    assert prefetched.json()["id"] != on_screen["id"]


def test_reload_resumes_the_lease_in_four_queries(queue, django_assert_num_queries):
    client = logged_in(annotator(), "session")
    first = client.post("/api/queue/next/", {}, format="json").json()
    with django_assert_num_queries(4):  # session, user, state, the lease with its task
        again = client.post("/api/queue/next/", {}, format="json").json()
    assert (again["id"], again["resumed"]) == (first["id"], True)
