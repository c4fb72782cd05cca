"""Issue 18, M1: per-user and global limits on queued and running selector jobs (a 409 in the
API, a message in the admin), owners cancel their own jobs, and a retry needs the permission
that starts the job's kind."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import Job, JobKind, JobStatus
from tests.factories import staff_with

pytestmark = pytest.mark.django_db

TRAIN = "/api/selector/train/"


def api_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_the_api_refuses_a_users_job_past_the_per_user_limit_with_a_409(settings) -> None:
    settings.JOBS_PER_USER, settings.JOBS_GLOBAL = 2, 10
    alice = api_for(staff_with("jobs.add_job", username="alice"))
    assert [alice.post(TRAIN, {}, format="json").status_code for _ in range(2)] == [202, 202]
    refused = alice.post(TRAIN, {}, format="json")
    assert refused.status_code == 409
    assert "STEPWISE_JOBS_PER_USER=2" in refused.json()["detail"]
    # Another kind counts too (every selector kind shares the ml worker); nothing was kept.
    sim = alice.post("/api/selector/fill/", {}, format="json")
    assert sim.status_code == 409
    assert Job.objects.count() == 2
    # Someone else still may; once alice's job finishes, she may again.
    bob = api_for(staff_with("jobs.add_job", username="bob"))
    assert bob.post(TRAIN, {}, format="json").status_code == 202
    Job.objects.filter(created_by__username="alice").update(status=JobStatus.SUCCEEDED)
    assert alice.post(TRAIN, {}, format="json").status_code == 202


def test_the_global_limit_counts_everyones_queued_and_running_jobs(settings) -> None:
    settings.JOBS_PER_USER, settings.JOBS_GLOBAL = 5, 3
    Job.objects.create(kind=JobKind.SIMULATE, status=JobStatus.RUNNING)  # the command's
    Job.objects.create(kind=JobKind.EXPORT, status=JobStatus.RUNNING)  # not a selector job
    first = api_for(staff_with("jobs.add_job", username="carol"))
    second = api_for(staff_with("jobs.add_job", username="dave"))
    assert first.post(TRAIN, {}, format="json").status_code == 202
    assert second.post(TRAIN, {}, format="json").status_code == 202
    refused = first.post(TRAIN, {}, format="json")
    assert refused.status_code == 409
    assert "STEPWISE_JOBS_GLOBAL=3" in refused.json()["detail"]


def test_the_admin_says_why_a_simulation_past_the_limit_was_not_started(client, settings) -> None:
    settings.JOBS_PER_USER = 1
    staff = staff_with("jobs.add_job", "selector.view_selectorversion", username="erin")
    client.force_login(staff)
    url = reverse("admin:selector_selectorversion_start", args=[JobKind.SIMULATE])
    client.post(url, {"preset": "ci"})
    page = client.post(url, {"preset": "ci"}, follow=True).content.decode()
    assert Job.objects.filter(kind=JobKind.SIMULATE).count() == 1
    assert "STEPWISE_JOBS_PER_USER=1" in page


def test_staff_who_start_jobs_cancel_their_own_in_the_admin_but_not_others(client) -> None:
    staff = staff_with("jobs.add_job", username="frank")
    other = staff_with("jobs.add_job", username="grace")
    own = Job.objects.create(kind=JobKind.SIMULATE, created_by=staff)
    theirs = Job.objects.create(kind=JobKind.SIMULATE, created_by=other)
    client.force_login(staff)
    page = client.get(reverse("admin:jobs_job_change", args=[own.pk]))
    assert page.status_code == 200 and reverse("admin:jobs_job_cancel", args=[own.pk]) in (
        page.content.decode()
    )
    response = client.post(reverse("admin:jobs_job_cancel", args=[own.pk]))
    assert response.status_code == 302
    own.refresh_from_db()
    assert own.status == JobStatus.CANCELLED
    assert client.post(reverse("admin:jobs_job_cancel", args=[theirs.pk])).status_code == 403
    theirs.refresh_from_db()
    assert theirs.status == JobStatus.QUEUED


def test_retrying_an_export_job_needs_the_export_permission(
    client, ml_staff, django_capture_on_commit_callbacks
) -> None:
    failed = Job.objects.create(kind=JobKind.EXPORT, status=JobStatus.FAILED, error="boom")
    client.force_login(ml_staff)  # steers jobs, may not export labels
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("admin:jobs_job_changelist"),
            {"action": "retry", "_selected_action": [failed.pk]},
            follow=True,
        )
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED and not callbacks
    assert "needs the labeling.export_labels permission" in response.content.decode()
    exporter = staff_with("jobs.change_job", "jobs.view_job", "labeling.export_labels")
    client.force_login(exporter)
    with django_capture_on_commit_callbacks() as callbacks:
        client.post(
            reverse("admin:jobs_job_changelist"),
            {"action": "retry", "_selected_action": [failed.pk]},
        )
    failed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED and len(callbacks) == 1


def test_the_api_retry_needs_the_kinds_permission_and_counts_toward_the_limit(
    ml_staff, settings
) -> None:
    failed = Job.objects.create(
        kind=JobKind.EXPORT, status=JobStatus.FAILED, error="boom", created_by=ml_staff
    )
    ml = api_for(ml_staff)  # its creator, who steers jobs, but may not export labels
    refused = ml.post(f"/api/jobs/{failed.pk}/retry/")
    assert refused.status_code == 403
    assert "needs the labeling.export_labels permission" in refused.json()["detail"]
    failed.refresh_from_db()
    assert failed.status == JobStatus.FAILED

    exporter = api_for(staff_with("jobs.change_job", "jobs.view_job", "labeling.export_labels"))
    retried = exporter.post(f"/api/jobs/{failed.pk}/retry/")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    assert exporter.post(f"/api/jobs/{failed.pk}/retry/").status_code == 200  # re-sent
    Job.objects.filter(pk=failed.pk).update(status=JobStatus.SUCCEEDED)
    done = exporter.post(f"/api/jobs/{failed.pk}/retry/")
    assert done.status_code == 409 and "start a new job instead" in done.json()["detail"]

    # A selector job retried counts toward its user's limit, as a new one would.
    settings.JOBS_PER_USER = 1
    Job.objects.create(kind=JobKind.TRAIN, status=JobStatus.QUEUED, created_by=ml_staff)
    old = Job.objects.create(kind=JobKind.TRAIN, status=JobStatus.FAILED, created_by=ml_staff)
    limited = ml.post(f"/api/jobs/{old.pk}/retry/")
    assert limited.status_code == 409 and "STEPWISE_JOBS_PER_USER=1" in limited.json()["detail"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_users_simultaneous_starts_never_pass_the_limit(settings) -> None:
    """Four requests at once under a limit of one: the user's row, locked while each counts
    and writes, lets exactly one through."""
    import threading

    from django.db import connections

    from jobs.services import JobLimitReached
    from selector.services import job_start

    settings.JOBS_PER_USER = 1
    user = staff_with("jobs.add_job", username="racer")
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def start() -> None:
        try:
            barrier.wait()
            job_start(kind=JobKind.TRAIN, user=user, enqueue=False)
            outcomes.append("started")
        except JobLimitReached:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["refused", "refused", "refused", "started"]
    assert Job.objects.filter(created_by=user).count() == 1
