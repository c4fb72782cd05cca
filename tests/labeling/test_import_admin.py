"""The admin "Import JSONL" pages: staff upload a file, spooled to disk and imported by an
import job (the API's), never read inside the request; every bad file is named for why."""

import json

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from jobs.models import Job, JobKind, JobStatus
from labeling.models import Grade, Label, Problem, Solution
from labeling.services.import_jobs import import_job_run
from tests.factories import ProblemFactory, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "a" * 32  # a CSRF secret, as the cookie and the form both carry it


@pytest.fixture
def staff_client(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def upload(name, *records):
    body = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    return SimpleUploadedFile(name, body.encode(), content_type="application/jsonl")


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.mark.parametrize("model", ["problem", "solution", "label"])
def test_changelists_show_the_import_button(staff_client, model):
    response = staff_client.get(reverse(f"admin:labeling_{model}_changelist"))
    assert response.status_code == 200
    assert reverse(f"admin:labeling_{model}_import_jsonl").encode() in response.content


def started_job(response):
    """The import job a form post started (it redirects to the job's page)."""
    assert response.status_code == 302, response.content.decode()[:500]
    job = Job.objects.get(kind=JobKind.IMPORT)
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    return job


def test_candidate_upload_runs_as_an_import_job_that_grades(staff_client, settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    ProblemFactory(unique_id="p/1", answer="3")
    url = reverse("admin:labeling_solution_import_jsonl")
    assert staff_client.get(url).status_code == 200
    response = staff_client.post(
        url, {"file": upload("c.jsonl", {"unique_id": "p/1", "steps": ["# Answer\n\n3"]})}
    )
    job = started_job(response)
    assert job.params["format"] == "candidates" and job.params["filename"] == "c.jsonl"
    # Nothing was read inside the request.
    assert not Solution.objects.exists()
    job = import_job_run(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["imported"] == 1
    assert Solution.objects.get().grade == Grade.CORRECT
    assert list((tmp_path / "spool").iterdir()) == []  # the job removed its file


def test_upload_with_invalid_lines_imports_nothing_and_its_page_shows_each_error(
    staff_client, settings, tmp_path
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    response = staff_client.post(
        reverse("admin:labeling_problem_import_jsonl"),
        {
            "file": upload(
                "p.jsonl",
                {"unique_id": "a", "problem": "1+1?", "answer": "2"},
                "oops",
                {"unique_id": "b", "problem": "", "answer": "2"},
            )
        },
    )
    job = import_job_run(job_id=started_job(response).pk)
    assert job.status == JobStatus.FAILED and "nothing was imported" in job.error
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "line 2: line: invalid JSON: Expecting value at column 1" in page
    assert "line 3: problem: must not be empty" in page
    assert not Problem.objects.exists()
    assert list((tmp_path / "spool").iterdir()) == []


def test_upload_with_skip_invalid_imports_the_valid_lines(
    staff_client, shared_data, settings, tmp_path
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    record = (shared_data / "prm800k_phase2_sample.jsonl").read_text().splitlines()[0]
    response = staff_client.post(
        reverse("admin:labeling_label_import_jsonl"),
        {"file": upload("r.jsonl", record, "{}"), "skip_invalid": "on"},
    )
    job = import_job_run(job_id=started_job(response).pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "line 2: labeler: is required" in page
    assert Label.objects.count() == 1


def test_a_file_that_is_not_utf8_or_nests_too_deeply_is_named_for_what_is_wrong(
    staff_client, settings, tmp_path
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    good = json.dumps({"unique_id": "a", "problem": "1+1?", "answer": "2"}).encode() + b"\n"
    body = good + b'{"unique_id": "b", "problem": "caf\xe9"}\n' + b"[" * 100_000 + b"\n"
    response = staff_client.post(
        reverse("admin:labeling_problem_import_jsonl"),
        {"file": SimpleUploadedFile("p.jsonl", body)},
    )
    job = import_job_run(job_id=started_job(response).pk)
    errors = {e["line"]: e["message"] for e in job.result["errors"]}
    offset = len(good) + len(b'{"unique_id": "b", "problem": "caf')
    assert errors[2].startswith(f"not UTF-8 text at byte {offset}")
    assert errors[3] == "invalid JSON: nested deeper than 64 levels"
    assert not Problem.objects.exists()


def test_an_upload_past_the_limit_is_a_413_naming_it_and_leaves_nothing(
    staff_client, settings, tmp_path
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    settings.IMPORT_UPLOAD_MAX_BYTES = 1000
    response = staff_client.post(
        reverse("admin:labeling_problem_import_jsonl"),
        {"file": SimpleUploadedFile("p.jsonl", b"x" * 5000)},
    )
    assert response.status_code == 413
    assert "larger than 1000 bytes, the limit (STEPWISE_IMPORT_MAX_BYTES)" in (
        response.content.decode()
    )
    assert not Job.objects.exists()
    assert list((tmp_path / "spool").iterdir()) == []


def test_non_staff_cannot_reach_the_import_page(client):
    client.force_login(UserFactory())
    response = client.get(reverse("admin:labeling_problem_import_jsonl"))
    assert response.status_code == 302  # to the admin login


@pytest.fixture
def spooled(monkeypatch, settings, tmp_path):
    """Every upload the request spooled, recorded when it is created (a refused request's
    spool file is deleted at the end of the request, so the folder alone would not tell)."""
    from labeling.api import uploads

    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    made: list[str] = []
    init = uploads.SpooledUpload.__init__

    def recording(self, **kwargs):
        init(self, **kwargs)
        made.append(self.temporary_file_path())

    monkeypatch.setattr(uploads.SpooledUpload, "__init__", recording)
    return made


@pytest.mark.parametrize(
    ("who", "status"),
    [("anonymous", 302), ("not staff", 302), ("staff without add_problem", 403)],
)
def test_a_refused_upload_is_never_spooled_to_disk(spooled, tmp_path, who, status):
    # The refusal must come before the body is read: a user who may not import could
    # otherwise make the server write gigabytes to disk before being turned away. The CSRF
    # check is what reads the form first, so this client enforces it, with a valid token.
    client = Client(enforce_csrf_checks=True)
    client.cookies[django_settings.CSRF_COOKIE_NAME] = TOKEN
    if who != "anonymous":
        client.force_login(UserFactory(is_staff=who.startswith("staff")))
    url = reverse("admin:labeling_problem_import_jsonl")
    body = {"file": SimpleUploadedFile("p.jsonl", b"x" * 300_000), "csrfmiddlewaretoken": TOKEN}
    response = client.post(url, body)
    assert response.status_code == status
    if status == 302:
        assert response["Location"].startswith(reverse("admin:login"))
    assert spooled == []
    assert not (tmp_path / "spool").exists()
    assert not Job.objects.exists()
