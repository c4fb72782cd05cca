"""Export API: staff only, streamed, filters validated, background jobs with a download."""

import json
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import Job, JobStatus
from labeling.models import TaskKind
from labeling.services.export import ExportFilters, export_job_create, export_job_run
from tests.factories import LabelFactory, TaskFactory, UserFactory, annotator

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings: Any, tmp_path: Any) -> Any:
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


ENDPOINTS = [
    ("get", "/api/export/prm800k/"),
    ("get", "/api/export/stepwise/"),
    ("get", "/api/export/jobs/"),
    ("post", "/api/export/jobs/"),
    ("get", "/api/export/jobs/1/"),
    ("get", "/api/export/jobs/1/download/"),
]


@pytest.fixture
def staff_client() -> APIClient:
    client = APIClient()
    client.force_authenticate(UserFactory(username="boss", is_staff=True))
    return client


def body_lines(response: Any) -> list[dict[str, Any]]:
    content = b"".join(response.streaming_content).decode("utf-8")
    return [json.loads(line) for line in content.splitlines()]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_anonymous_and_annotators_are_refused(method: str, url: str) -> None:
    client = APIClient()
    assert getattr(client, method)(url).status_code == 403
    client.force_authenticate(annotator("worker"))
    assert getattr(client, method)(url).status_code == 403


def test_prm800k_export_streams_with_filters(staff_client: APIClient) -> None:
    LabelFactory(task=TaskFactory(generation=1))
    LabelFactory(task=TaskFactory(generation=2))
    LabelFactory(task=TaskFactory(generation=2, kind=TaskKind.QUALITY_CONTROL))
    response = staff_client.get("/api/export/prm800k/", {"generation": 2})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/jsonl"
    assert [r["generation"] for r in body_lines(response)] == [2]
    response = staff_client.get("/api/export/prm800k/", {"generation": 2, "include_qc": "true"})
    flags = [r["is_quality_control_question"] for r in body_lines(response)]
    assert flags == [False, True]


def test_bad_filter_is_a_400_naming_the_field(staff_client: APIClient) -> None:
    response = staff_client.get("/api/export/prm800k/", {"since": "last week"})
    assert response.status_code == 400
    assert "since" in response.json()
    response = staff_client.get("/api/export/stepwise/", {"neutral": "maybe"})
    assert response.status_code == 400
    assert "neutral" in response.json()


def test_prm800k_export_query_count_does_not_grow_with_rows(
    staff_client: APIClient, django_assert_num_queries: Any
) -> None:
    for _ in range(30):
        LabelFactory()
    with django_assert_num_queries(1):
        response = staff_client.get("/api/export/prm800k/")
        assert len(body_lines(response)) == 30


def test_stepwise_export_endpoint(staff_client: APIClient) -> None:
    label = LabelFactory()
    response = staff_client.get("/api/export/stepwise/", {"neutral": "negative"})
    [record] = body_lines(response)
    assert record["prompt"] == label.task.solution.problem.problem
    assert record["labels"] == [True] * len(label.steps)


def test_export_job_runs_and_offers_download(
    staff_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    LabelFactory()
    LabelFactory(task=TaskFactory(kind=TaskKind.SCREENING))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_client.post(
            "/api/export/jobs/", {"format": "prm800k", "include_screening": True}, format="json"
        )
    assert response.status_code == 202
    assert len(callbacks) == 1  # the Celery task is sent only after the commit
    job_id = response.json()["id"]
    assert response.json()["download_url"] is None
    assert staff_client.get(f"/api/export/jobs/{job_id}/download/").status_code == 404

    export_job_run(job_id=job_id)  # what the worker does

    detail = staff_client.get(f"/api/export/jobs/{job_id}/").json()
    assert detail["status"] == "succeeded"
    assert (detail["progress_done"], detail["progress_total"], detail["progress_percent"]) == (
        2,
        2,
        100,
    )
    assert detail["download_url"] == reverse("export-job-download", args=[job_id])
    download = staff_client.get(detail["download_url"])
    assert download.status_code == 200
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == detail["result"]["lines"] == 2
    assert 'attachment; filename="prm800k-' in download["Content-Disposition"]


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_export_job_through_a_real_worker(celery_worker_process: Any, wait_until: Any) -> None:
    for _ in range(5):
        LabelFactory()
    staff = UserFactory(username="boss2", is_staff=True)
    job = export_job_create(
        created_by=staff, filters=ExportFilters(), export_format="stepwise", neutral="positive"
    )
    wait_until(
        lambda: Job.objects.get(pk=job.pk).status in (JobStatus.SUCCEEDED, JobStatus.FAILED),
        timeout=120,
        message="the export job to finish",
    )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["lines"] == 5


def test_failed_export_job_records_the_error_and_leaves_no_file(staff_client: APIClient) -> None:
    from labeling.services.export import export_path

    label = LabelFactory(record_extras={"question_keys": ["mystery"]})
    job = Job.objects.create(kind="export", params={"format": "prm800k", "token": "t"})
    assert export_job_run(job_id=job.pk).status == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "mystery" in job.error
    assert f"label {label.pk}" in job.error
    assert not export_path(job).exists()
    assert not export_path(job).with_suffix(".partial").exists()
    assert staff_client.get(f"/api/export/jobs/{job.pk}/download/").status_code == 404
