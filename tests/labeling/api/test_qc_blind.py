"""Quality control stays blind, and gold authors are not stuck in screening (issue 11, item 9)."""

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from labeling.models import AnnotatorProfile, QualitySettings
from labeling.services.quality_reports import task_gold_set
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, UserFactory, annotator
from tests.labeling.api.support import submit_body

pytestmark = pytest.mark.django_db

STEPS = ["Let $x = 2$.", "Then $x^2 = 4$.", "# Answer\n\n4"]


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(User.objects.get(pk=user.pk))  # as a request loads it
    return client


def claim(client: APIClient):
    return client.post("/api/queue/next/", {}, format="json")


def test_a_qc_question_looks_like_any_other_task():
    QualitySettings.objects.create(pk=1, qc_rate=0.5)
    normal = TaskFactory(solution=SolutionFactory(steps=STEPS), generation=3, priority=0.9)
    qc = TaskFactory(kind="quality_control", solution=SolutionFactory(steps=STEPS), generation=2)
    qc.gold_label = LabelFactory(task=qc, ratings=[1, 1, 1], is_gold=True)
    qc.save(update_fields=["gold_label"])
    user = annotator()
    # A draw that puts this annotator's first QC question after one normal label.
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=True, qc_draw=0.5)
    client = client_for(user)
    first = claim(client)
    assert first.json()["id"] == normal.pk
    body = submit_body()
    assert client.post(f"/api/tasks/{normal.pk}/submit/", body, format="json").status_code == 201
    second = claim(client_for(user))
    assert second.json()["id"] == qc.pk
    assert set(second.json()) == set(first.json())
    assert second.json()["screening"] is False
    for response in (first, second):
        text = response.content.decode()
        assert "quality" not in text and "kind" not in text and "generation" not in text


def test_staff_who_wrote_the_screening_gold_are_exempt_from_screening():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    screening = TaskFactory(kind="screening", solution=SolutionFactory(steps=STEPS))
    normal = TaskFactory(solution=SolutionFactory(steps=STEPS))
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_task"))
    client = client_for(staff)
    # the gold-less screening question is served to staff to write its answer key
    assert claim(client).json()["id"] == screening.pk
    body = submit_body()
    assert client.post(f"/api/tasks/{screening.pk}/submit/", body, format="json").status_code == 201
    task_gold_set(task_id=screening.pk, user=staff)
    # screening is now pending for everyone; the author is never served their own item and
    # used to get 204 forever
    assert client_for(staff).get("/api/me/").json()["screening"] == "pending"
    response = claim(client_for(staff))
    assert response.status_code == 200
    assert response.json()["id"] == normal.pk
    assert client_for(staff).get("/api/me/").json()["screening"] == "passed"
    # an annotator is still screened on it
    assert claim(client_for(annotator())).json()["id"] == screening.pk
