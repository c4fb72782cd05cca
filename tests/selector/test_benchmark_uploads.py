"""Issue 18, M3: a benchmark upload (the admin's form, the API's evaluate) is spooled to disk
under IMPORT_UPLOAD_MAX_BYTES, checked by its job rather than in the request, and removed when
refused or cancelled; every bad file gets a message naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import Job, JobKind, JobStatus
from jobs.services import job_cancel
from selector.models import SelectorVersion, VersionStatus
from selector.services import job_execute

pytestmark = pytest.mark.django_db

GOOD = json.dumps({"id": "a", "problem": "1+1?", "steps": ["2"], "label": -1}).encode() + b"\n"


@pytest.fixture
def spool(settings, tmp_path) -> Path:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    return settings.IMPORT_UPLOAD_DIR


@pytest.fixture
def ready() -> SelectorVersion:
    return SelectorVersion.objects.create(
        name="ready", base_model="/models/base", status=VersionStatus.READY
    )


def admin_upload(client: Any, version: SelectorVersion, body: bytes, name: str = "pb.jsonl"):
    url = reverse("admin:selector_selectorversion_benchmark", args=[version.pk])
    return client.post(url, {"file": SimpleUploadedFile(name, body), "threshold": "0.5"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Not UTF-8: named by the offset of its first bad byte in the file (it used to be
        # "threshold: expected a number").
        (GOOD + b'{"id": "b", "problem": "caf\xe9"}\n', "pb.jsonl:2: json: not UTF-8 text at byte"),
        # Nested past any record's depth: a line error, never a server error.
        (GOOD + b"[" * 200_000 + b"\n", "pb.jsonl:2: json: invalid JSON: nested deeper than"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "pb.jsonl:1: json: not UTF-8 text at byte 0"),
    ],
)
def test_a_bad_benchmark_file_is_refused_by_its_job_naming_what_is_wrong(
    staff_client, spool, ready, body, message
) -> None:
    response = admin_upload(staff_client, ready, body)
    job = Job.objects.get(kind=JobKind.BENCHMARK)
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert job.status == JobStatus.QUEUED  # nothing was read in the request
    job = job_execute(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert message in job.error, job.error
    assert list(spool.iterdir()) == []  # a refused file is deleted


def test_a_benchmark_past_the_limit_is_a_413_naming_it_and_leaves_nothing(
    staff_client, spool, ready, settings
) -> None:
    settings.IMPORT_UPLOAD_MAX_BYTES = 4096
    response = admin_upload(staff_client, ready, GOOD * 1000)
    assert response.status_code == 413
    assert "larger than 4096 bytes, the limit (STEPWISE_IMPORT_MAX_BYTES)" in (
        response.content.decode()
    )
    assert not Job.objects.exists()
    assert list(spool.iterdir()) == []


def test_a_cancelled_benchmark_job_removes_its_upload(ml_staff, spool, ready) -> None:
    api = APIClient()
    api.force_authenticate(ml_staff)
    form = {"version": "ready", "benchmark": SimpleUploadedFile("pb.jsonl", GOOD)}
    response = api.post("/api/selector/evaluate/", form, format="multipart")
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["job"])
    kept = Path(job.params["path"])
    assert kept.read_bytes() == GOOD
    assert api.post(f"/api/jobs/{job.pk}/cancel/").status_code == 200
    assert not kept.exists() and list(spool.iterdir()) == []
    assert not job_cancel(job=job)


def test_a_refused_job_keeps_no_upload(ml_staff, spool, ready, settings) -> None:
    settings.JOBS_PER_USER = 0
    api = APIClient()
    api.force_authenticate(ml_staff)
    form = {"version": "ready", "benchmark": SimpleUploadedFile("pb.jsonl", GOOD)}
    response = api.post("/api/selector/evaluate/", form, format="multipart")
    assert response.status_code == 409
    assert list(spool.iterdir()) == []


def test_a_benchmark_file_given_to_the_command_is_never_removed(spool, ready, tmp_path) -> None:
    own = tmp_path / "mine.jsonl"
    own.write_bytes(b"not json\n")
    from selector.services import job_start

    job = job_start(kind=JobKind.BENCHMARK, params={"path": str(own)}, version=ready, enqueue=False)
    job = job_execute(job_id=job.pk)
    assert job.status == JobStatus.FAILED and f"{own}:1: json: invalid JSON" in job.error
    assert own.exists()


def test_a_benchmark_upload_by_staff_who_may_not_start_jobs_is_never_spooled(
    spool, ready, monkeypatch
) -> None:
    # Refused before the body is read (``spooling_view``'s ``allowed``), not after the whole
    # file was written to disk; the CSRF check is what would read it first, so it is on.
    from django.conf import settings
    from django.test import Client

    from labeling.api import uploads
    from tests.factories import UserFactory

    made: list[str] = []
    init = uploads.SpooledUpload.__init__

    def recording(self: uploads.SpooledUpload, **kwargs: Any) -> None:
        init(self, **kwargs)
        made.append(self.temporary_file_path())

    monkeypatch.setattr(uploads.SpooledUpload, "__init__", recording)
    client = Client(enforce_csrf_checks=True)
    client.cookies[settings.CSRF_COOKIE_NAME] = token = "a" * 32
    client.force_login(UserFactory(is_staff=True))
    url = reverse("admin:selector_selectorversion_benchmark", args=[ready.pk])
    body = {"file": SimpleUploadedFile("pb.jsonl", GOOD * 1000), "csrfmiddlewaretoken": token}
    response = client.post(url, body)
    assert response.status_code == 403
    assert made == [] and not spool.exists()
    assert not Job.objects.exists()
