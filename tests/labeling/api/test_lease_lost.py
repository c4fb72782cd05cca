"""What the page learns when its hold on a task is gone (issue 19 §6, issue 18 §3): the
heartbeat says why, with a ``code`` the page acts on, and whether work on the task is still
kept (decision 0003); and screening still to answer blocks a submit as it blocks a claim."""

import datetime

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import AnnotatorProfile, Label, Lease, QualitySettings, Task
from labeling.services.queue import leases_release_expired
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, annotator
from tests.labeling.api.support import claim, client_for, submit_body

STEPS = ["Let $x = 2$.", "Then $x^2 = 4$.", "# Answer\n\n4"]


@pytest.fixture(autouse=True)
def no_qc(db) -> None:
    QualitySettings.objects.create(pk=1, qc_rate=0.0)


def heartbeat(client: APIClient, task_id: int):
    return client.post(f"/api/tasks/{task_id}/heartbeat/")


def take_back() -> None:
    Lease.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    assert leases_release_expired() == 1


@pytest.fixture
def task() -> Task:
    return TaskFactory(solution=SolutionFactory(steps=STEPS))


@pytest.mark.django_db
def test_heartbeat_on_a_task_already_submitted_says_so(task):
    """A second tab's heartbeat: the page must drop its draft, not offer to redo the task."""
    client = client_for(annotator())
    claim(client)
    assert client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json").status_code
    response = heartbeat(client, task.pk)
    assert response.status_code == 409
    assert response.json()["code"] == "already_labeled"
    assert f"already labeled task {task.pk}" in response.json()["detail"]


@pytest.mark.django_db
def test_heartbeat_on_a_hold_taken_back_with_the_slot_free_says_work_is_kept(task):
    client = client_for(annotator())
    claim(client)
    take_back()
    response = heartbeat(client, task.pk)
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "taken_back"
    assert "your work is saved" in body["detail"]
    kept_until = datetime.datetime.fromisoformat(body["kept_until"])
    assert kept_until > timezone.now() + datetime.timedelta(hours=23)
    assert (
        client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json").json()["late"]
        is False
    )


@pytest.mark.django_db
def test_heartbeat_on_a_hold_now_held_by_another_says_work_is_kept_as_an_extra_label(task):
    client = client_for(annotator())
    claim(client)
    take_back()
    assert claim(client_for(annotator())) == task.pk  # someone else holds the only slot
    response = heartbeat(client, task.pk)
    assert response.status_code == 409
    assert response.json()["code"] == "held_by_another"
    assert "another annotator" in response.json()["detail"]
    assert "extra label" in response.json()["detail"]
    # What it promised: the work is kept, as a late label.
    submitted = client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    assert submitted.status_code == 201 and submitted.json()["late"] is True


@pytest.mark.django_db
def test_heartbeat_on_a_hold_forgotten_says_work_would_not_be_saved(task):
    client = client_for(annotator())
    claim(client)
    take_back()
    leases_release_expired(now=timezone.now() + datetime.timedelta(hours=25))  # forgotten
    response = heartbeat(client, task.pk)
    assert response.status_code == 404
    assert response.json()["code"] == "not_leased"
    assert "would not be saved" in response.json()["detail"]
    submitted = client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    assert submitted.status_code == 404 and submitted.json()["code"] == "not_leased"


@pytest.mark.django_db
def test_submit_refusals_carry_a_code(task):
    client = client_for(annotator())
    claim(client)
    assert client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    again = client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    assert (again.status_code, again.json()["code"]) == (409, "already_labeled")


@pytest.mark.django_db
def test_pending_screening_blocks_a_submit_on_a_lease_taken_before_screening_began(task):
    """Issue 18 §3: screening switched on while an annotator holds a normal task."""
    user = annotator()
    client = client_for(user)
    assert claim(client) == task.pk  # no screening yet: a normal task
    screening = TaskFactory(kind="screening", solution=SolutionFactory(steps=STEPS))
    screening.gold_label = LabelFactory(task=screening, ratings=[1, 1, 1], is_gold=True)
    screening.save(update_fields=["gold_label"])

    response = client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "screening_pending"
    assert "screening questions first" in response.json()["detail"]
    assert not Label.objects.filter(annotator=user).exists()

    # The screening question comes next; once it is passed, the held task can be submitted.
    assert claim(client) == screening.pk
    answered = client.post(f"/api/tasks/{screening.pk}/submit/", submit_body(), format="json")
    assert answered.status_code == 201
    assert AnnotatorProfile.objects.get(user=user).screening_passed is True
    late = client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    assert late.status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize("gold, required", [(False, None), (True, 0)])
def test_screening_that_asks_nothing_does_not_block_a_submit(task, gold, required):
    client = client_for(annotator())
    claim(client)
    screening = TaskFactory(kind="screening", solution=SolutionFactory(steps=STEPS))
    if gold:
        screening.gold_label = LabelFactory(task=screening, ratings=[1, 1, 1], is_gold=True)
        screening.save(update_fields=["gold_label"])
    QualitySettings.objects.filter(pk=1).update(screening_required=required)
    response = client.post(f"/api/tasks/{task.pk}/submit/", submit_body(), format="json")
    assert response.status_code == 201
