"""Late work (decision 0003, issue 21): one test per branch of the policy, through the API on
SQLite and PostgreSQL. A label whose lease expired is kept whenever its author held the lease:
in a free slot if the task has one, otherwise as a late label beyond the overlap. Refused are
only work whose lease was taken back more than RELEASED_LEASE_HOURS ago (404) and a second
label on a task the annotator already labeled (409); the page keeps those drafts."""

import datetime
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from labeling.models import Label, Lease, QualitySettings, ReleasedLease, Task
from labeling.services.queue import leases_release_expired, task_claim_next
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, annotator
from tests.labeling.api.support import claim, client_for, submit_body

STEPS = ["Let $x = 2$.", "Then $x^2 = 4$.", "# Answer\n\n4"]


@pytest.fixture(autouse=True)
def no_qc(db) -> None:
    QualitySettings.objects.create(pk=1, qc_rate=0.0)


def submit(client: APIClient, task_id: int, **overrides):
    return client.post(f"/api/tasks/{task_id}/submit/", submit_body(**overrides), format="json")


def expire_leases() -> None:
    Lease.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=1))


def counts(task: Task) -> tuple[int, int, int]:
    task.refresh_from_db()
    assert task.label_count == Label.objects.filter(task=task, late=False).count()
    assert task.late_count == Label.objects.filter(task=task, late=True).count()
    assert task.lease_count == Lease.objects.filter(task=task).count()
    assert task.label_count <= task.required_labels  # the overlap holds for on-time labels
    return task.label_count, task.late_count, task.lease_count


@pytest.fixture
def late_annotator() -> tuple[Task, APIClient]:
    """A task (overlap 1) whose annotator's lease has expired and been taken back."""
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    client = client_for(annotator())
    assert claim(client) == task.pk
    expire_leases()
    assert leases_release_expired() == 1
    return task, client


@pytest.mark.django_db
def test_expired_but_not_yet_taken_back_is_an_ordinary_label():
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    client = client_for(annotator())
    claim(client)
    expire_leases()
    response = submit(client, task.pk)
    assert response.status_code == 201 and response.json()["late"] is False
    assert counts(task) == (1, 0, 0)


@pytest.mark.django_db
def test_taken_back_with_the_slot_still_free_fills_the_slot(late_annotator):
    task, client = late_annotator
    response = submit(client, task.pk)
    assert response.status_code == 201 and response.json()["late"] is False
    assert counts(task) == (1, 0, 0)
    assert not ReleasedLease.objects.exists()  # used up


@pytest.mark.django_db
def test_taken_back_while_a_new_holder_works_is_kept_as_late_and_the_holder_goes_on(
    late_annotator,
):
    task, client = late_annotator
    holder = client_for(annotator())
    assert claim(holder) == task.pk  # the sweep gave the slot to someone else
    response = submit(client, task.pk)
    assert response.status_code == 201 and response.json()["late"] is True
    assert Label.objects.get(pk=response.json()["label_id"]).late
    assert counts(task) == (0, 1, 1)  # the new holder keeps their lease and their work
    assert submit(holder, task.pk).status_code == 201
    assert counts(task) == (1, 1, 0)
    assert not ReleasedLease.objects.exists()


@pytest.mark.django_db
def test_taken_back_after_others_finished_the_task_is_kept_as_late(late_annotator):
    task, client = late_annotator
    quick = client_for(annotator())
    assert claim(quick) == task.pk
    assert submit(quick, task.pk).status_code == 201
    response = submit(client, task.pk)
    assert response.status_code == 201 and response.json()["late"] is True
    assert counts(task) == (1, 1, 0)
    # A late label takes no slot: the task is not offered to anyone again.
    assert client_for(annotator()).post("/api/queue/next/", {}, format="json").status_code == 204


@pytest.mark.django_db
def test_a_retry_of_a_late_label_is_the_same_label(late_annotator):
    task, client = late_annotator
    claim(client_for(annotator()))
    body = submit_body()
    first = client.post(f"/api/tasks/{task.pk}/submit/", body, format="json")
    again = client.post(f"/api/tasks/{task.pk}/submit/", body, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == {**first.json(), "created": False}
    assert counts(task) == (0, 1, 1)


@pytest.mark.django_db
def test_taken_back_longer_ago_than_the_released_lease_hours_is_refused(late_annotator):
    task, client = late_annotator
    leases_release_expired(now=timezone.now() + datetime.timedelta(hours=25))  # forgotten
    response = submit(client, task.pk)
    assert response.status_code == 404
    assert "not leased to you" in response.json()["detail"]
    assert counts(task) == (0, 0, 0)


@pytest.mark.django_db
def test_a_second_label_on_a_task_already_labeled_is_refused(late_annotator):
    task, client = late_annotator
    assert submit(client, task.pk).status_code == 201
    response = submit(client, task.pk)  # another key: new work, not a retry
    assert response.status_code == 409
    assert "already labeled" in response.json()["detail"]
    assert counts(task) == (1, 0, 0)


@pytest.mark.django_db
def test_late_work_on_a_qc_question_is_an_ordinary_label():
    QualitySettings.objects.filter(pk=1).update(qc_rate=1.0)
    qc = TaskFactory(kind="quality_control", solution=SolutionFactory(steps=STEPS))
    qc.gold_label = LabelFactory(task=qc, ratings=[1, 1, 1], is_gold=True)
    qc.save(update_fields=["gold_label"])
    user = annotator()
    user.annotator_profile.screening_passed = True
    user.annotator_profile.save()
    client = client_for(user)
    assert claim(client) == qc.pk
    expire_leases()
    leases_release_expired()
    response = submit(client, qc.pk)
    assert response.status_code == 201 and response.json()["late"] is False  # no slot limit


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_sweep_taking_the_lease_back_during_the_submit_is_not_a_refusal():
    """The sweep locks the task, takes the lease back and gives the slot away while the submit's
    write waits for the lock: that statement cannot see the released lease, so the service
    reads again and writes once more (the label is late: the slot went to someone else)."""
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    late, other = annotator(), annotator()
    client = client_for(late)
    assert claim(client) == task.pk
    expire_leases()
    locked, started = threading.Event(), threading.Event()

    def sweep_and_reassign() -> None:
        try:
            with transaction.atomic():
                Task.objects.select_for_update().get(pk=task.pk)
                locked.set()
                started.wait(10)
                time.sleep(0.5)  # the submit's statement is waiting on our lock
                assert leases_release_expired() == 1
                claim_ = task_claim_next(annotator=other)
                assert claim_ is not None and claim_.task.pk == task.pk
        finally:
            connection.close()

    def before_the_write(execute, sql, params, many, context):
        if "WITH locked AS" in sql and not started.is_set():
            started.set()
        return execute(sql, params, many, context)

    sweeper = threading.Thread(target=sweep_and_reassign)
    sweeper.start()
    assert locked.wait(10)
    with connection.execute_wrapper(before_the_write):
        response = submit(client, task.pk)
    sweeper.join()
    assert response.status_code == 201, response.content
    assert response.json()["late"] is True
    assert counts(task) == (0, 1, 1)
