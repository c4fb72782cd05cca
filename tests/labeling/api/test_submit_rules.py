"""Who may submit a label (issue 11, item 2): only the holder of the task's lease, for every
kind of task, and only an eligible annotator. Through APIClient, on SQLite and PostgreSQL."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from labeling.models import AnnotatorProfile, Label, QualitySettings, Task
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, UserFactory, annotator
from tests.labeling.api.support import client_for, submit_body

pytestmark = pytest.mark.django_db

STEPS = ["Let $x = 2$.", "Then $x^2 = 4$.", "# Answer\n\n4"]


@pytest.fixture(autouse=True)
def no_qc() -> None:
    QualitySettings.objects.create(pk=1, qc_rate=0.0)


def claim(client: APIClient) -> dict:
    response = client.post("/api/queue/next/", {}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def submit(client: APIClient, task_id: int, **overrides):
    return client.post(f"/api/tasks/{task_id}/submit/", submit_body(**overrides), format="json")


def gold_task(kind: str) -> Task:
    task = TaskFactory(kind=kind, solution=SolutionFactory(steps=STEPS), generation=1)
    task.gold_label = LabelFactory(task=task, ratings=[1, 1, 1], is_gold=True)
    task.save(update_fields=["gold_label"])
    return task


def passed_annotator(**kwargs):
    user = annotator(**kwargs)
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=True)
    return user


@pytest.mark.parametrize("kind", ["normal", "quality_control", "screening"])
def test_submit_to_a_task_never_claimed_is_404_for_every_kind(kind):
    task = (
        gold_task(kind) if kind != "normal" else TaskFactory(solution=SolutionFactory(steps=STEPS))
    )
    response = submit(client_for(annotator()), task.pk)
    assert response.status_code == 404
    assert "not leased to you" in response.json()["detail"]
    assert not Label.objects.filter(annotator__isnull=False).exists()


def test_submit_with_own_live_lease_is_accepted():
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    client = client_for(annotator())
    assert claim(client)["id"] == task.pk
    assert submit(client, task.pk).status_code == 201


def test_submit_to_a_task_leased_by_someone_else_is_404():
    task = TaskFactory(solution=SolutionFactory(steps=STEPS), required_labels=2)
    claim(client_for(annotator()))  # the other holds a lease; a slot is still free
    assert submit(client_for(annotator()), task.pk).status_code == 404
    task.refresh_from_db()
    assert (task.label_count, task.lease_count) == (0, 1)


def test_qc_task_needs_the_submitters_own_lease():
    QualitySettings.objects.filter(pk=1).update(qc_rate=1.0)  # every claim is a QC question
    qc = gold_task("quality_control")
    holder, intruder = client_for(passed_annotator()), client_for(passed_annotator())
    assert claim(holder)["id"] == qc.pk
    assert submit(intruder, qc.pk).status_code == 404
    assert submit(holder, qc.pk).status_code == 201


def test_paused_annotator_cannot_submit_even_with_a_lease():
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    user = annotator()
    claim(client_for(user))
    AnnotatorProfile.objects.filter(user=user).update(is_paused=True)
    response = submit(client_for(UserFactory._meta.model.objects.get(pk=user.pk)), task.pk)
    assert response.status_code == 403
    assert "paused" in response.json()["detail"]
    assert not Label.objects.exists()


def test_annotator_who_failed_screening_cannot_submit():
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    user = annotator()
    claim(client_for(user))
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=False)
    fresh = UserFactory._meta.model.objects.get(pk=user.pk)
    response = submit(client_for(fresh), task.pk)
    assert response.status_code == 403
    assert "screening" in response.json()["detail"]


def test_screening_questions_are_only_for_annotators_being_screened():
    screening = gold_task("screening")
    user = annotator()
    assert claim(client_for(user))["id"] == screening.pk  # pending: served screening first
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=True)
    fresh = UserFactory._meta.model.objects.get(pk=user.pk)
    response = submit(client_for(fresh), screening.pk)
    assert response.status_code == 403
    assert "being screened" in response.json()["detail"]


def test_annotator_being_screened_submits_screening_questions():
    screening = gold_task("screening")
    client = client_for(annotator())
    assert claim(client)["id"] == screening.pk
    assert submit(client, screening.pk).status_code == 201
    assert client.get("/api/me/").json()["screening"] == "passed"


def test_staff_who_may_set_gold_are_served_gold_less_questions_and_may_label_them():
    qc = TaskFactory(kind="quality_control", solution=SolutionFactory(steps=STEPS))
    TaskFactory(solution=SolutionFactory(steps=STEPS), priority=9.0)  # normal work waits
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_task"))
    client = client_for(UserFactory._meta.model.objects.get(pk=staff.pk))
    assert claim(client)["id"] == qc.pk
    assert submit(client, qc.pk).status_code == 201
    # staff without the permission, and annotators, are not served gold-less questions
    other = TaskFactory(kind="quality_control", solution=SolutionFactory(steps=STEPS))
    assert claim(client_for(UserFactory(is_staff=True)))["id"] != other.pk
