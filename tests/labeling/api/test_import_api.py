"""The import API: a JSONL file in (raw body or multipart), spooled to disk, imported by a job
with the importers' atomicity, line errors as {"line", "field", "message"}, re-sends idempotent,
and every odd body a 4xx that names what is wrong, never a 500 or a half import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from jobs.models import Job, JobKind, JobStatus
from labeling import permissions
from labeling.models import Grade, Label, Problem, Solution
from labeling.services.import_jobs import import_job_run
from tests.factories import ProblemFactory, UserFactory, staff_with
from tests.labeling.prm800k_records import generate_records

pytestmark = pytest.mark.django_db

ALL_IMPORTS = (
    permissions.IMPORT_PROBLEMS,
    permissions.IMPORT_CANDIDATES,
    permissions.IMPORT_LABELS,
)


def problem(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "problem": f"What is {i} + {i}?",
        "solution": f"It is {2 * i}.",
        "answer": str(2 * i),
        "subject": "Algebra",
        "level": 1,
        "unique_id": f"test/algebra/{i}.json",
        **extra,
    }


def jsonl(*records: Any) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


@pytest.fixture
def uploads(settings: Any, tmp_path: Path) -> Path:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "imports"
    settings.IMPORT_UPLOAD_DIR.mkdir()
    return settings.IMPORT_UPLOAD_DIR


@pytest.fixture
def api(uploads: Path) -> APIClient:
    client = APIClient()
    client.force_authenticate(staff_with(*ALL_IMPORTS, "jobs.view_job"))
    return client


def send_raw(api: APIClient, kind: str, body: bytes, query: str = "") -> Any:
    return api.post(f"/api/imports/{kind}/{query}", body, content_type="application/x-ndjson")


def send_form(api: APIClient, kind: str, body: bytes, name: str = "f.jsonl", **fields: Any) -> Any:
    upload = SimpleUploadedFile(name, body, content_type="application/jsonl")
    return api.post(f"/api/imports/{kind}/", {"file": upload, **fields}, format="multipart")


def run(response: Any) -> Job:
    assert "job" in response.json(), response.content
    import_job_run(job_id=response.json()["job"])
    return Job.objects.get(pk=response.json()["job"])


def job_view(api: APIClient, job: Job) -> dict[str, Any]:
    response = api.get(f"/api/jobs/{job.pk}/")
    assert response.status_code == 200
    return response.json()


def test_a_raw_body_is_spooled_and_imported_by_a_job(api: APIClient, uploads: Path) -> None:
    body = jsonl(problem(1), problem(2))
    response = send_raw(api, "problems", body, "?filename=math.jsonl")
    assert response.status_code == 202
    job = Job.objects.get()
    assert response.json() == {"job": job.pk, "url": f"http://testserver/api/jobs/{job.pk}/"}
    assert (job.kind, job.status) == (JobKind.IMPORT, JobStatus.QUEUED)
    assert job.params["format"] == "problems" and job.params["filename"] == "math.jsonl"
    kept = Path(job.params["path"])
    assert kept.read_bytes() == body and list(uploads.iterdir()) == [kept]
    assert not Problem.objects.exists()  # nothing is imported inside the request

    job = run(response)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert Problem.objects.count() == 2
    assert not kept.exists()  # imported: the upload is removed
    view = job_view(api, job)
    assert view["kind"] == "import" and view["status"] == "succeeded"
    assert view["progress"]["done"] == view["progress"]["total"] > 0
    assert view["errors"] == []
    assert view["result"]["created"] == {"problems": 2}
    assert view["result"]["source"] == "math.jsonl"


def test_a_multipart_file_imports_candidates_and_grades_them(api: APIClient) -> None:
    ProblemFactory(unique_id="p/1", answer="\\frac{14}{3}")
    body = jsonl(
        {"unique_id": "p/1", "steps": ["Divide.", "# Answer\n\n14/3"]},
        {"unique_id": "p/1", "steps": ["Guess.", "# Answer\n\n5"]},
    )
    response = send_form(api, "candidates", body, name="cands.jsonl")
    assert response.status_code == 202
    job = run(response)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["created"] == {"solutions": 2} and job.result["graded"] == 2
    grades = dict(Solution.objects.values_list("answer", "grade"))
    assert grades == {"14/3": Grade.CORRECT, "5": Grade.INCORRECT}


def test_prm800k_records_import_through_the_api(api: APIClient) -> None:
    records = generate_records(6)
    job = run(send_raw(api, "prm800k", jsonl(*records)))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert Label.objects.count() == 6


def test_invalid_lines_fail_the_job_naming_line_and_field_and_import_nothing(
    api: APIClient,
) -> None:
    body = jsonl(problem(1), {**problem(2), "level": "hard"}, "{not json", problem(3))
    job = run(send_raw(api, "problems", body, "?filename=bad.jsonl"))
    assert job.status == JobStatus.FAILED
    assert not Problem.objects.exists()
    errors = job_view(api, job)["errors"]
    assert errors[:2] == [
        {"line": 2, "field": "level", "message": errors[0]["message"]},
        {"line": 3, "field": "line", "message": errors[1]["message"]},
    ]
    assert "invalid JSON" in errors[1]["message"]
    assert errors[2]["line"] is None and errors[2]["field"] is None
    assert "2 invalid line(s) in bad.jsonl; nothing was imported" in errors[2]["message"]
    assert "skip_invalid=true" in errors[2]["message"]


@pytest.mark.parametrize("send", ["raw", "form"])
def test_skip_invalid_imports_the_valid_lines_and_lists_the_others(
    api: APIClient, send: str
) -> None:
    body = jsonl(problem(1), {**problem(2), "unique_id": 7}, problem(3))
    if send == "raw":
        response = send_raw(api, "problems", body, "?skip_invalid=true")
    else:
        response = send_form(api, "problems", body, skip_invalid="true")
    job = run(response)
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert Problem.objects.count() == 2
    assert [(e["line"], e["field"]) for e in job_view(api, job)["errors"]] == [(2, "unique_id")]


def test_the_same_file_again_returns_its_job_until_that_job_failed(
    api: APIClient, uploads: Path
) -> None:
    body = jsonl(problem(1))
    first = send_raw(api, "problems", body)
    again = send_form(api, "problems", body, name="another-name.jsonl")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()
    assert Job.objects.count() == 1 and len(list(uploads.iterdir())) == 1  # the copy is gone
    run(first)
    assert send_raw(api, "problems", body).json() == first.json()
    # Another format, or another skip_invalid, is another import.
    assert send_raw(api, "problems", body, "?skip_invalid=1").status_code == 202
    assert send_raw(api, "candidates", body).status_code == 202
    assert Job.objects.count() == 3

    # A failed import's file gets a fresh job; and a second run of the same records is a no-op
    # (the importers deduplicate).
    bad = jsonl(problem(2), {"unique_id": "x"})
    failed = run(send_raw(api, "problems", bad))
    assert failed.status == JobStatus.FAILED
    retried = send_raw(api, "problems", bad, "")
    assert retried.status_code == 202 and retried.json()["job"] != failed.pk
    rerun = run(send_raw(api, "problems", jsonl(problem(1)), "?skip_invalid=yes"))
    assert rerun.result["created"] == {} and Problem.objects.count() == 1


@pytest.mark.parametrize("send", ["raw", "form"])
def test_a_file_over_the_limit_is_refused_with_413_and_leaves_nothing(
    api: APIClient, uploads: Path, settings: Any, send: str
) -> None:
    settings.IMPORT_UPLOAD_MAX_BYTES = 100
    body = jsonl(problem(1), problem(2))
    assert len(body) > 100
    response = (send_raw if send == "raw" else send_form)(api, "problems", body)
    assert response.status_code == 413
    assert "larger than 100 bytes" in response.json()["file"][0]
    assert not Job.objects.exists()
    assert list(uploads.iterdir()) == []


@pytest.mark.parametrize(
    ("request_kwargs", "status", "field", "message"),
    [
        ({"data": b"", "content_type": "application/x-ndjson"}, 400, "file", "is required"),
        ({"data": {}, "format": "multipart"}, 400, "file", "is required"),
        (
            {"data": {"file": SimpleUploadedFile("e.jsonl", b"")}, "format": "multipart"},
            400,
            "file",
            "is empty",
        ),
        (
            {"data": {"other": SimpleUploadedFile("o.jsonl", b"{}\n")}, "format": "multipart"},
            400,
            "file",
            "is required",
        ),
        ({"data": b"{}\n", "content_type": "application/json"}, 415, "detail", "Unsupported"),
        ({"data": b"{}\n", "content_type": "text/plain"}, 415, "detail", "Unsupported"),
        (
            {"data": b"a=1", "content_type": "multipart/form-data; boundary="},
            400,
            "detail",
            "Multipart form parse error",
        ),
    ],
)
def test_odd_bodies_get_a_4xx_naming_the_problem(
    api: APIClient, uploads: Path, request_kwargs: dict, status: int, field: str, message: str
) -> None:
    response = api.post("/api/imports/problems/", **request_kwargs)
    assert response.status_code == status, response.content
    detail = response.json()[field]
    assert message in (detail if isinstance(detail, str) else detail[0])
    assert not Job.objects.exists() and list(uploads.iterdir()) == []


@pytest.mark.parametrize("value", ["maybe", "2", ""])
def test_a_bad_skip_invalid_is_named(api: APIClient, uploads: Path, value: str) -> None:
    response = send_raw(api, "problems", jsonl(problem(1)), f"?skip_invalid={value}")
    assert response.status_code == 400
    assert list(response.json()) == ["skip_invalid"]
    assert not Job.objects.exists() and list(uploads.iterdir()) == []


def test_bytes_that_are_not_utf8_fail_the_job_by_line(api: APIClient) -> None:
    job = run(send_raw(api, "problems", b"\xff\xfe\x00garbage\n" + jsonl(problem(1))))
    assert job.status == JobStatus.FAILED
    error = job_view(api, job)["errors"][0]
    assert error["line"] == 1 and error["message"].startswith("not UTF-8 text at byte 0")
    assert not Problem.objects.exists()


def test_a_cancelled_import_removes_its_upload(api: APIClient, uploads: Path) -> None:
    response = send_raw(api, "problems", jsonl(problem(1)))
    kept = Path(Job.objects.get().params["path"])
    assert kept.exists()
    assert api.post(f"/api/jobs/{response.json()['job']}/cancel/").status_code == 200
    assert list(uploads.iterdir()) == []


def test_a_long_filename_is_cut_to_its_base_name(api: APIClient) -> None:
    response = send_form(api, "problems", jsonl(problem(1)), name="../../" + "n" * 300)
    assert response.status_code == 202
    assert Job.objects.get().params["filename"] == "n" * 200
    # Control characters (a NUL, which PostgreSQL cannot store) are left out of the name.
    response = send_raw(api, "problems", jsonl(problem(2)), "?filename=a%00b%0Ac.jsonl")
    assert response.status_code == 202
    assert Job.objects.get(pk=response.json()["job"]).params["filename"] == "abc.jsonl"


def test_a_nul_character_in_a_record_is_an_error_naming_its_field(api: APIClient) -> None:
    candidate = {"unique_id": "test/algebra/1.json", "steps": ["ok", "# Answer\n\n2\u0000"]}
    body = jsonl(problem(1), {**problem(2), "problem": "What\u0000?"})
    job = run(send_raw(api, "problems", body))
    assert job.status == JobStatus.FAILED and not Problem.objects.exists()
    assert job_view(api, job)["errors"][0] == {
        "line": 2,
        "field": "problem",
        "message": "must not contain the NUL character (\\u0000)",
    }
    ProblemFactory(unique_id="test/algebra/1.json")
    job = run(send_raw(api, "candidates", jsonl(candidate)))  # json.dumps escapes it: \u0000
    assert [(e["line"], e["field"]) for e in job_view(api, job)["errors"][:1]] == [(1, "steps[1]")]


@pytest.mark.parametrize(
    ("perms", "kind", "status"),
    [
        ((permissions.IMPORT_PROBLEMS,), "problems", 202),
        ((permissions.IMPORT_PROBLEMS,), "candidates", 403),
        ((permissions.IMPORT_CANDIDATES,), "candidates", 202),
        ((permissions.IMPORT_CANDIDATES,), "prm800k", 403),
        ((permissions.IMPORT_LABELS,), "prm800k", 202),
        (("labeling.view_problem", "jobs.add_job"), "problems", 403),
    ],
)
def test_each_import_needs_the_admins_add_permission(
    uploads: Path, perms: tuple[str, ...], kind: str, status: int
) -> None:
    client = APIClient()
    client.force_authenticate(staff_with(*perms))
    assert send_raw(client, kind, jsonl(problem(1))).status_code == status
    if status == 403:
        assert list(uploads.iterdir()) == []  # refused before the body was read


def test_a_token_authenticates_and_the_creator_follows_their_import(uploads: Path) -> None:
    from rest_framework.authtoken.models import Token

    user = staff_with(permissions.IMPORT_PROBLEMS)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    response = send_raw(client, "problems", jsonl(problem(1)))
    assert response.status_code == 202
    # No jobs.view_job, but it is their job; someone else's is not found.
    assert client.get(response.json()["url"]).status_code == 200
    other = Job.objects.create(kind=JobKind.IMPORT, created_by=UserFactory())
    assert client.get(f"/api/jobs/{other.pk}/").status_code == 404
    assert APIClient().post("/api/imports/problems/").status_code == 403
