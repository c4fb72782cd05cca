"""The jobs admin: live progress JSON, the worker's heartbeat, "mark failed" and "retry"."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from jobs.models import Job, JobKind, JobStatus
from selector.services import selector_permissions_grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:jobs_job_changelist"


@pytest.fixture
def ml_client(client):
    user = UserFactory(username="ml", is_staff=True)
    user.groups.add(selector_permissions_grant())
    client.force_login(user)
    return client


def lost_job() -> Job:
    long_ago = timezone.now() - timedelta(hours=2)
    return Job.objects.create(
        kind=JobKind.TRAIN,
        status=JobStatus.RUNNING,
        started_at=long_ago,
        heartbeat_at=long_ago,
        worker="ml-host:77",
        attempts=1,
        progress_done=4,
        progress_total=3136,
    )


def act(client, action, jobs):
    return client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [j.pk for j in jobs]}
    )


def test_ml_staff_mark_a_hung_job_failed(ml_client):
    job = lost_job()
    act(ml_client, "mark_failed", [job])
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert job.error == "marked failed by ml while running"


def test_ml_staff_retry_failed_jobs_and_are_told_what_cannot_be_retried(
    ml_client, django_capture_on_commit_callbacks
):
    failed = Job.objects.create(kind=JobKind.SCORE, status=JobStatus.FAILED, error="boom")
    done = Job.objects.create(kind=JobKind.SCORE, status=JobStatus.SUCCEEDED)
    with django_capture_on_commit_callbacks() as callbacks:
        response = act(ml_client, "retry", [failed, done])
    failed.refresh_from_db()
    done.refresh_from_db()
    assert (failed.status, done.status) == (JobStatus.QUEUED, JobStatus.SUCCEEDED)
    assert len(callbacks) == 1
    page = ml_client.get(response["Location"]).content.decode()
    assert "1 job(s) queued again." in page and "succeeded; start a new job instead" in page


def test_staff_who_may_only_view_jobs_cannot_steer_them(client):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client.force_login(viewer)
    job = lost_job()
    assert "mark_failed" not in client.get(reverse(CHANGELIST)).content.decode()
    act(client, "mark_failed", [job])
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING


def test_job_page_shows_worker_heartbeat_and_progress(ml_client):
    job = lost_job()
    html = ml_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "Worker ml-host:77, last heartbeat" in html and "(attempt 1)" in html
    assert 'id="job-progress-bar"' in html
    progress = ml_client.get(reverse("admin:jobs_job_progress", args=[job.pk])).json()
    assert (progress["done"], progress["total"], progress["finished"]) == (4, 3136, False)


def test_job_page_shows_params_and_result_as_tables_with_the_json_behind_a_toggle(ml_client):
    job = Job.objects.create(
        kind=JobKind.FILL,
        status=JobStatus.SUCCEEDED,
        params={"per_problem": 6},
        result={"created": 12, "seconds": 0.25, "wrong_share": 0.75, "errors": []},
        progress_done=12,
        progress_total=12,
    )
    page = ml_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "<td>Tasks per problem</td><td>6 tasks</td>" in page
    assert "<td>Tasks created</td><td>12 tasks</td>" in page
    assert "<td>Time taken</td><td>0.25 s</td>" in page
    before, toggle = page.split('<details class="job-raw" id="job-raw">', 1)
    assert '"per_problem"' not in before and "&quot;per_problem&quot;: 6" in toggle
    # The progress figures live in the bar only (a static copy beside it lagged behind).
    assert "field-progress_done" not in page and "field-result" not in page
