"""The annotator API through APIClient: contract shapes, permissions, statuses, query counts."""

import datetime
import uuid

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import Label, Lease, QualitySettings, Task
from tests.factories import SolutionFactory, TaskFactory, UserFactory, annotator
from tests.labeling.api.support import client_for

pytestmark = pytest.mark.django_db

STEPS = ["Let $x = 2$.", "Then $x^2 = 5$.", "# Answer\n\n5"]


@pytest.fixture(autouse=True)
def no_qc() -> None:
    QualitySettings.objects.create(pk=1, qc_rate=0.0)


def next_task(client: APIClient, exclude: list[int] | None = None):
    body = {} if exclude is None else {"exclude": exclude}
    return client.post("/api/queue/next/", body, format="json")


def submit_body(**overrides):
    body = {
        "idempotency_key": str(uuid.uuid4()),
        "ratings": [1, -1],
        "flags": [False, True],
        "human_completion": "Then $x^2 = 4$.",
        "finish_reason": "found_error",
        "finish_note": "",
        "total_time_ms": 4200,
        "started_at": "2026-11-24T18:00:00Z",
    }
    body.update(overrides)
    return body


@pytest.fixture
def task() -> Task:
    return TaskFactory(solution=SolutionFactory(steps=STEPS), generation=3)


ENDPOINTS = [
    ("post", "/api/queue/next/"),
    ("post", "/api/tasks/{id}/heartbeat/"),
    ("post", "/api/tasks/{id}/submit/"),
    ("post", "/api/tasks/{id}/skip/"),
    ("get", "/api/me/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_anonymous_is_forbidden(task, method, url):
    response = getattr(APIClient(), method)(url.format(id=task.pk), {}, format="json")
    assert response.status_code == 403
    assert not Lease.objects.exists()


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_user_outside_annotators_group_is_forbidden(task, method, url):
    client = client_for(UserFactory())
    response = getattr(client, method)(url.format(id=task.pk), {}, format="json")
    assert response.status_code == 403
    assert "annotators" in response.json()["detail"]


def test_next_returns_the_contract_shape_without_reference_solution(task):
    response = next_task(client_for(annotator()))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "id",
        "screening",
        "mode",
        "problem",
        "ground_truth_answer",
        "steps",
        "lease_expires_at",
        "resumed",
    }
    problem = task.solution.problem
    assert body["id"] == task.pk
    assert (body["screening"], body["mode"]) == (False, "phase2")
    assert (body["problem"], body["ground_truth_answer"]) == (problem.problem, problem.answer)
    assert body["steps"] == STEPS
    assert body["resumed"] is False
    assert datetime.datetime.fromisoformat(body["lease_expires_at"]) > timezone.now()
    assert problem.solution not in response.content.decode()


def test_next_is_204_when_queue_is_empty():
    response = next_task(client_for(annotator()))
    assert response.status_code == 204
    assert response.content == b""


def test_staff_can_claim(task):
    response = next_task(client_for(UserFactory(is_staff=True)))
    assert response.status_code == 200
    assert response.json()["id"] == task.pk


def test_reload_resumes_and_prefetch_excludes_current(task):
    other = TaskFactory(priority=0.1)
    client = client_for(annotator())
    first = next_task(client).json()
    assert next_task(client).json() == {**first, "resumed": True}
    prefetched = next_task(client, exclude=[first["id"]]).json()
    assert (prefetched["id"], prefetched["resumed"]) == (other.pk, False)
    # a reload with both leased brings back the older one first, then the prefetched one
    assert next_task(client).json()["id"] == first["id"]
    assert next_task(client, exclude=[first["id"]]).json()["id"] == other.pk


def test_next_rejects_malformed_exclude():
    response = next_task(client_for(annotator()), exclude=["abc"])
    assert response.status_code == 400
    assert "exclude" in response.json()


def test_next_query_count_is_bounded(django_assert_max_num_queries):
    TaskFactory.create_batch(30)
    user = annotator()
    client = client_for(user)
    # Label a few so the NOT EXISTS has something to skip.
    for _ in range(3):
        claimed = next_task(client).json()
        ratings = [1] * len(claimed["steps"])
        body = submit_body(ratings=ratings, flags=None, human_completion=None)
        body["finish_reason"] = "solution"
        assert (
            client.post(f"/api/tasks/{claimed['id']}/submit/", body, format="json").status_code
            == 201
        )
    with django_assert_max_num_queries(11):
        assert next_task(client).status_code == 200
    # force_authenticate bypasses labeling.auth, so the group and profile are read separately
    # here; tests/labeling/api/test_query_counts.py counts real requests.
    with django_assert_max_num_queries(4):
        assert next_task(client).json()["resumed"] is True


def test_heartbeat_extends_own_lease(task):
    user = annotator()
    client = client_for(user)
    next_task(client)
    Lease.objects.update(expires_at=timezone.now() + datetime.timedelta(seconds=30))
    response = client.post(f"/api/tasks/{task.pk}/heartbeat/")
    assert response.status_code == 200
    expires = datetime.datetime.fromisoformat(response.json()["lease_expires_at"])
    assert expires > timezone.now() + datetime.timedelta(minutes=20)
    assert Lease.objects.get().expires_at == expires


def test_heartbeat_skip_on_another_annotators_task_is_404(task):
    next_task(client_for(annotator()))
    intruder = client_for(annotator())
    assert intruder.post(f"/api/tasks/{task.pk}/heartbeat/").status_code == 404
    assert intruder.post(f"/api/tasks/{task.pk}/skip/").status_code == 404
    response = intruder.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    assert response.status_code == 404
    assert Lease.objects.count() == 1 and not Label.objects.exists()


def test_submit_then_retry_returns_same_label(task):
    client = client_for(annotator())
    next_task(client)
    body = submit_body()
    created = client.post(f"/api/tasks/{task.pk}/submit/", body, format="json")
    assert created.status_code == 201
    label = Label.objects.get()
    assert created.json() == {
        "label_id": label.pk,
        "task_id": task.pk,
        "finish_reason": "found_error",
        "created": True,
        "late": False,
    }
    retried = client.post(f"/api/tasks/{task.pk}/submit/", body, format="json")
    assert retried.status_code == 200
    assert retried.json() == {**created.json(), "created": False}
    assert Label.objects.count() == 1
    assert label.steps[1]["human_completion"]["text"] == "Then $x^2 = 4$."


def test_submit_retry_after_lease_expiry_is_still_accepted(task):
    client = client_for(annotator())
    next_task(client)
    Lease.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    body = submit_body()
    assert client.post(f"/api/tasks/{task.pk}/submit/", body, format="json").status_code == 201
    assert client.post(f"/api/tasks/{task.pk}/submit/", body, format="json").status_code == 200
    task.refresh_from_db()
    assert (task.label_count, task.lease_count) == (1, 0)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ratings": [1, 1]}, "ratings"),
        ({"ratings": [1, 5]}, "ratings"),
        ({"ratings": "good"}, "ratings"),
        ({"flags": [True]}, "flags"),
        ({"finish_reason": "done"}, "finish_reason"),
        ({"finish_reason": "give_up", "finish_note": ""}, "finish_note"),
        ({"total_time_ms": -1}, "total_time_ms"),
        ({"started_at": "yesterday"}, "started_at"),
        ({"idempotency_key": ""}, "idempotency_key"),
        (
            {"ratings": [1, 0], "finish_reason": "give_up", "finish_note": "hard"},
            "human_completion",
        ),
    ],
)
def test_submit_validation_error_names_the_field(task, overrides, field):
    client = client_for(annotator())
    next_task(client)
    response = client.post(f"/api/tasks/{task.pk}/submit/", submit_body(**overrides), format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Label.objects.exists()


def test_skip_releases_and_next_moves_on(task):
    later = TaskFactory(priority=0.1)
    client = client_for(annotator())
    assert next_task(client).json()["id"] == task.pk
    response = client.post(f"/api/tasks/{task.pk}/skip/")
    assert response.status_code == 204
    assert next_task(client).json()["id"] == later.pk


def test_me_reports_counts_and_screening(task):
    user = annotator(username="ann")
    client = client_for(user)
    assert client.get("/api/me/").json() == {
        "username": "ann",
        "labels_today": 0,
        "labels_total": 0,
        "gold_agreement": None,
        "screening": "none",
    }
    next_task(client)
    client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    body = client.get("/api/me/").json()
    assert (body["labels_today"], body["labels_total"]) == (1, 1)


def test_token_auth_works_for_scripts(task):
    user = annotator()
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert next_task(client).status_code == 200


def test_session_auth_requires_csrf_header(task):
    user = annotator()
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert next_task(client).status_code == 403
    client.get("/api/me/")  # any GET; the CSRF cookie comes from the page in real life
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    response = client.post("/api/queue/next/", {}, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


def test_staff_outside_the_group_can_do_the_whole_loop(task):
    client = client_for(UserFactory(is_staff=True))
    assert next_task(client).json()["id"] == task.pk
    assert client.post(f"/api/tasks/{task.pk}/heartbeat/").status_code == 200
    assert (
        client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json").status_code
        == 201
    )
    assert client.get("/api/me/").json()["labels_total"] == 1


def test_me_reports_screening_pending_failed_passed_and_gold_agreement():
    from tests.factories import LabelFactory

    screening = TaskFactory(kind="screening", solution=SolutionFactory(steps=STEPS))
    screening.gold_label = LabelFactory(task=screening, ratings=[1, 1, 1], is_gold=True)
    screening.save(update_fields=["gold_label"])
    user = annotator()
    client = client_for(user)
    assert client.get("/api/me/").json()["screening"] == "pending"
    assert next_task(client).json()["screening"] is True
    body = submit_body(ratings=[1, 0, 1], flags=None, human_completion=None)
    body["finish_reason"] = "solution"
    assert client.post(f"/api/tasks/{screening.pk}/submit/", body, format="json").status_code == 201
    me = client.get("/api/me/").json()
    # 2 of 3 steps agree with gold: below the default 0.75 pass mark
    assert (me["screening"], me["gold_agreement"]) == ("failed", 0.6667)
    assert next_task(client).status_code == 204
    user.annotator_profile.screening_passed = True
    user.annotator_profile.save()
    assert client.get("/api/me/").json()["screening"] == "passed"
