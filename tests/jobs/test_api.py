"""The jobs API: follow a job (kind, status, progress, result, errors) and cancel it; who may;
and the progress a long transaction writes from the side (``DetachedProgress``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections, transaction
from rest_framework.test import APIClient

from jobs.models import Job, JobKind, JobStatus
from jobs.services import DetachedProgress, JobAbandoned, job_cancel, job_run
from labeling.models import Problem
from tests.factories import ProblemFactory, UserFactory, staff_with


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
def test_a_job_reads_as_kind_status_progress_result_and_errors(
    django_assert_num_queries: Any,
) -> None:
    viewer = staff_with("jobs.view_job")
    job = Job.objects.create(
        kind=JobKind.IMPORT,
        status=JobStatus.FAILED,
        progress_done=3,
        progress_total=8,
        result={"errors": [{"line": 4, "field": "level", "message": "must be an integer"}]},
        error="ImportRefused: 1 invalid line(s) in f.jsonl; nothing was imported",
    )
    client = client_for(viewer)
    with django_assert_num_queries(3):  # the job, then the permission check (user, group perms)
        body = client.get(f"/api/jobs/{job.pk}/").json()
    assert {k: body[k] for k in ("kind", "status", "progress", "result")} == {
        "kind": "import",
        "status": "failed",
        "progress": {"done": 3, "total": 8},
        "result": {},
    }
    assert body["errors"] == [
        {"line": 4, "field": "level", "message": "must be an integer"},
        {"line": None, "field": None, "message": job.error},
    ]


@pytest.mark.django_db
def test_a_succeeded_job_shows_its_result_and_no_errors() -> None:
    job = Job.objects.create(
        kind=JobKind.FILL, status=JobStatus.SUCCEEDED, result={"created": 4}, error=""
    )
    body = client_for(staff_with("jobs.view_job")).get(f"/api/jobs/{job.pk}/").json()
    assert (body["result"], body["errors"]) == ({"created": 4}, [])


@pytest.mark.django_db
def test_only_viewers_of_jobs_and_the_creator_see_a_job() -> None:
    creator = staff_with("labeling.add_problem")
    job = Job.objects.create(kind=JobKind.IMPORT, created_by=creator)
    url = f"/api/jobs/{job.pk}/"
    assert client_for(creator).get(url).status_code == 200
    assert client_for(staff_with("jobs.view_job")).get(url).status_code == 200
    assert client_for(UserFactory()).get(url).status_code == 404
    assert APIClient().get(url).status_code == 403
    assert client_for(creator).get("/api/jobs/999999/").status_code == 404
    assert client_for(creator).get(f"/api/jobs/{2**63}/").status_code == 404


@pytest.mark.django_db
def test_the_creator_or_a_steward_cancels_and_a_finished_job_is_a_conflict() -> None:
    creator = staff_with("labeling.add_problem")
    job = Job.objects.create(kind=JobKind.IMPORT, created_by=creator)
    url = f"/api/jobs/{job.pk}/cancel/"
    # Seeing every job is not steering them.
    assert client_for(staff_with("jobs.view_job")).post(url).status_code == 403
    response = client_for(creator).post(url)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["errors"][0]["message"] == "cancelled while queued"
    again = client_for(staff_with("jobs.change_job", "jobs.view_job")).post(url)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    # A cancelled job never runs.
    ran: list[int] = []
    job_run(job_id=job.pk, runner=lambda j, p: ran.append(j.pk) or {})
    assert ran == [] and Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


@pytest.mark.django_db
def test_get_on_cancel_and_post_on_detail_are_refused() -> None:
    job = Job.objects.create(kind=JobKind.FILL)
    client = client_for(staff_with("jobs.view_job", "jobs.change_job"))
    assert client.get(f"/api/jobs/{job.pk}/cancel/").status_code == 405
    assert client.post(f"/api/jobs/{job.pk}/").status_code == 405


# --- DetachedProgress -------------------------------------------------------------------------


@pytest.mark.django_db
def test_inside_a_callers_transaction_progress_is_written_once_at_the_end() -> None:
    job = Job.objects.create(kind=JobKind.IMPORT, status=JobStatus.RUNNING)
    with DetachedProgress(job, interval=0.01) as progress:
        progress(2, 10)
        progress(7, 10)
        assert Job.objects.get(pk=job.pk).progress_done == 0
    assert (Job.objects.get(pk=job.pk).progress_done, job.progress_total) == (7, 10)


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_progress_shows_during_a_long_transaction_and_a_cancel_rolls_it_back() -> None:
    """On PostgreSQL a second connection sees the figures while the work's transaction is
    open, can cancel (the job's row is not locked by it), and the work then stops and rolls
    back. (On SQLite the open transaction holds the only write lock: figures wait for it.)"""
    job = Job.objects.create(kind=JobKind.IMPORT, status=JobStatus.RUNNING)
    seen: dict[str, Any] = {}

    def watch_and_cancel() -> None:
        try:
            wait_for(lambda: Job.objects.get(pk=job.pk).progress_done == 5)
            seen["cancelled"] = job_cancel(job=Job.objects.get(pk=job.pk))
        finally:
            connections.close_all()

    watcher = threading.Thread(target=watch_and_cancel)
    with (
        pytest.raises(JobAbandoned),
        DetachedProgress(job, interval=0.02) as progress,
        transaction.atomic(),
    ):
        ProblemFactory()
        progress(5, 10)
        watcher.start()
        watcher.join(timeout=20)
        progress(6, 10)  # noted; the side thread's write finds the job cancelled
        wait_for(lambda: progress._abandoned.is_set())
        progress(7, 10)  # so the next call stops the work
    assert seen == {"cancelled": True}
    assert not Problem.objects.exists()  # rolled back
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
