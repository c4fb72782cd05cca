"""Export API: export_labels permission, streamed, filters validated, background jobs."""

import json
import threading
import time
from typing import Any

import pytest
from django.db import connection, transaction
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import Job, JobStatus
from labeling import permissions
from labeling.models import TaskKind
from labeling.services.export import ExportFilters, StepwiseOptions
from labeling.services.export_jobs import (
    ExportJobBusy,
    export_job_create,
    export_job_run,
    export_path,
)
from tests.factories import LabelFactory, TaskFactory, UserFactory, annotator, staff_with
from tests.labeling.prm800k_records import (
    STEPWISE_OPTIONS,
    row_completions,
    stepwise_option_labels,
)

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
    client.force_authenticate(staff_with(permissions.EXPORT_LABELS, username="boss"))
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
    # Staff status alone is not enough: exporting is its own permission.
    client.force_authenticate(UserFactory(username="bare", is_staff=True))
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
    # Two to load the user's permissions (direct and through groups), one for the export.
    with django_assert_num_queries(3):
        response = staff_client.get("/api/export/prm800k/")
        assert len(body_lines(response)) == 30


def test_stepwise_export_endpoint(staff_client: APIClient) -> None:
    label = LabelFactory()
    response = staff_client.get("/api/export/stepwise/", {"neutral": "negative"})
    [record] = body_lines(response)
    assert record["prompt"] == label.task.solution.problem.problem
    assert record["labels"] == [True] * len(label.steps)


@pytest.mark.parametrize("option", STEPWISE_OPTIONS)
def test_stepwise_export_endpoint_passes_each_option_through(
    staff_client: APIClient, option: str
) -> None:
    expected = stepwise_option_labels()
    response = staff_client.get("/api/export/stepwise/", {option: "true"} if option else {})
    assert response.status_code == 200
    assert row_completions(body_lines(response)) == expected[option]


@pytest.mark.parametrize("option", STEPWISE_OPTIONS[1:])
def test_bad_stepwise_option_is_a_400_naming_the_field(
    staff_client: APIClient, option: str
) -> None:
    response = staff_client.get("/api/export/stepwise/", {option: "maybe"})
    assert response.status_code == 400
    assert list(response.json()) == [option]
    body = {"format": "stepwise", option: "maybe"}
    response = staff_client.post("/api/export/jobs/", body, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [option]
    assert Job.objects.count() == 0


@pytest.mark.parametrize("option", STEPWISE_OPTIONS)
def test_stepwise_export_job_records_and_honours_each_option(
    staff_client: APIClient, option: str, django_capture_on_commit_callbacks: Any
) -> None:
    expected = stepwise_option_labels()
    body = {"format": "stepwise", **({option: True} if option else {})}
    with django_capture_on_commit_callbacks(execute=False):
        response = staff_client.post("/api/export/jobs/", body, format="json")
    assert response.status_code == 202
    params = response.json()["params"]
    assert {k: params[k] for k in STEPWISE_OPTIONS[1:]} == {
        k: k == option for k in STEPWISE_OPTIONS[1:]
    }
    export_job_run(job_id=response.json()["id"])
    download = staff_client.get(f"/api/export/jobs/{response.json()['id']}/download/")
    rows = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]
    assert row_completions(rows) == expected[option]


def test_export_job_params_hold_the_trl_options_only_for_a_stepwise_job() -> None:
    options = StepwiseOptions(neutral="negative", trajectories_only=True, include_unreliable=True)
    prm800k = export_job_create(created_by=None, filters=ExportFilters(), stepwise=options)
    stepwise = export_job_create(
        created_by=None, filters=ExportFilters(), export_format="stepwise", stepwise=options
    )
    assert not set(options.as_params()) & set(prm800k.params)
    assert StepwiseOptions.from_params(stepwise.params) == options


def test_stepwise_options_refuse_an_unknown_neutral() -> None:
    with pytest.raises(ValueError, match="neutral: 'maybe'"):
        StepwiseOptions.from_params({"neutral": "maybe"})


def test_a_stepwise_job_queued_without_options_exports_with_the_defaults() -> None:
    """Jobs queued before the options existed (a re-queued one, say) keep label hygiene."""
    expected = stepwise_option_labels()
    job = Job.objects.create(kind="export", params={"format": "stepwise", "token": "t"})
    assert export_job_run(job_id=job.pk).status == JobStatus.SUCCEEDED
    rows = [json.loads(line) for line in export_path(job).read_text().splitlines()]
    assert row_completions(rows) == expected[""]


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
    job = export_job_create(created_by=staff, filters=ExportFilters(), export_format="stepwise")
    wait_until(
        lambda: Job.objects.get(pk=job.pk).status in (JobStatus.SUCCEEDED, JobStatus.FAILED),
        timeout=120,
        message="the export job to finish",
    )
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["lines"] == 5


def test_failed_export_job_records_the_error_and_leaves_no_file(staff_client: APIClient) -> None:
    label = LabelFactory(record_extras={"question_keys": ["mystery"]})
    job = Job.objects.create(kind="export", params={"format": "prm800k", "token": "t"})
    assert export_job_run(job_id=job.pk).status == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and "mystery" in job.error
    assert f"label {label.pk}" in job.error
    assert not export_path(job).exists()
    assert not export_path(job).with_suffix(".partial").exists()
    assert staff_client.get(f"/api/export/jobs/{job.pk}/download/").status_code == 404


def test_one_queued_or_running_export_job_per_user(
    staff_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    LabelFactory()
    with django_capture_on_commit_callbacks(execute=False):
        first = staff_client.post("/api/export/jobs/", {}, format="json")
        second = staff_client.post("/api/export/jobs/", {"format": "stepwise"}, format="json")
    assert first.status_code == 202
    assert second.status_code == 409
    assert f"Export job #{first.json()['id']} is still queued" in second.json()["detail"]
    assert "one export job per user" in second.json()["detail"]
    assert Job.objects.count() == 1

    # Another exporter is not held up by it.
    other = APIClient()
    other.force_authenticate(staff_with(permissions.EXPORT_LABELS, username="other"))
    with django_capture_on_commit_callbacks(execute=False):
        assert other.post("/api/export/jobs/", {}, format="json").status_code == 202

    Job.objects.filter(pk=first.json()["id"]).update(status=JobStatus.RUNNING)
    with django_capture_on_commit_callbacks(execute=False):
        assert staff_client.post("/api/export/jobs/", {}, format="json").status_code == 409

    # Its worker was lost and it was queued again; once it has run, the next one may start.
    Job.objects.filter(pk=first.json()["id"]).update(status=JobStatus.QUEUED)
    export_job_run(job_id=first.json()["id"])
    with django_capture_on_commit_callbacks(execute=False):
        assert staff_client.post("/api/export/jobs/", {}, format="json").status_code == 202


def test_the_admin_export_page_refuses_a_second_background_job(
    client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(staff_with(permissions.EXPORT_LABELS, "labeling.view_label", username="b"))
    LabelFactory()  # an export with nothing to export is refused as empty
    form = {"format": "prm800k", "neutral": "positive", "background": "1"}
    with django_capture_on_commit_callbacks(execute=False):
        client.post("/admin/labeling/label/export/", form)
        response = client.post("/admin/labeling/label/export/", form, follow=True)
    assert Job.objects.count() == 1
    assert "one export job per user at a time" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_simultaneous_export_requests_start_one_job(monkeypatch: Any) -> None:
    """The second request waits on the first one's lock, then sees its job (PostgreSQL)."""
    user = staff_with(permissions.EXPORT_LABELS, username="racer")
    # Committed jobs would be sent to the broker, where a later test's worker would find them.
    sent: list[int] = []
    monkeypatch.setattr("jobs.services._send", lambda _task, job_id: sent.append(job_id))
    first_holds_lock = threading.Event()
    outcomes: list[str] = []

    def first() -> None:
        try:
            with transaction.atomic():
                export_job_create(created_by=user, filters=ExportFilters())
                first_holds_lock.set()
                time.sleep(1.0)  # the job row is not committed yet
            outcomes.append("created")
        finally:
            first_holds_lock.set()
            connection.close()

    def second() -> None:
        first_holds_lock.wait(10)
        try:
            export_job_create(created_by=user, filters=ExportFilters())
            outcomes.append("created")
        except ExportJobBusy:
            outcomes.append("busy")
        finally:
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["busy", "created"]
    assert Job.objects.filter(created_by=user).count() == 1
    assert len(sent) == 1
