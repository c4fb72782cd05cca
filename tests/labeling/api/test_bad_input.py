"""Inputs that used to end in an unhandled 500 (issue 11, item 7): each gets a clear answer."""

import io
import json
import sqlite3

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from labeling.models import Label, Problem, QualitySettings
from labeling.services.imports import ImportFailed, problems_import
from labeling.services.jsonl import JSON_MAX_DEPTH
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, UserFactory, annotator
from tests.labeling.api.support import client_for, submit_body

STEPS = ["Let $x = 2$.", "Then $x^2 = 4$.", "# Answer\n\n4"]
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def quality() -> None:
    QualitySettings.objects.create(pk=1, qc_rate=0.0)


def body(**overrides) -> dict:
    return submit_body(**{"started_at": "2026-11-30T10:00:00Z", **overrides})


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["/api/queue/next/", "/api/tasks/1/submit/", "/api/export/jobs/"], ids=str
)
@pytest.mark.parametrize("payload", [DEEP, '{"a":' * 5000 + "1" + "}" * 5000, "[" * 50_000])
def test_deeply_nested_json_is_a_400_that_says_so(url, payload):
    user = UserFactory(is_staff=True, is_superuser=True)
    response = client_for(user).post(url, payload, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert f"nested deeper than {JSON_MAX_DEPTH} levels" in response.json()["detail"]


@pytest.mark.django_db
def test_json_nested_within_the_limit_is_parsed(quality):
    nested = {"exclude": [], "note": json.loads("[" * 60 + "]" * 60)}
    response = client_for(annotator()).post("/api/queue/next/", nested, format="json")
    assert response.status_code == 204  # parsed; the queue is empty


@pytest.mark.django_db
def test_body_over_the_upload_limit_is_a_json_400(settings, quality):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    payload = json.dumps({"exclude": [], "padding": "x" * 20_000})
    response = client_for(annotator()).post(
        "/api/queue/next/", payload, content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in response.json()["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("task_id", [2**63, 2**64, 10**30])
@pytest.mark.parametrize("action", ["heartbeat", "submit", "skip"])
def test_task_ids_beyond_64_bits_are_404(task_id, action, quality):
    response = client_for(annotator()).post(
        f"/api/tasks/{task_id}/{action}/", body(), format="json"
    )
    assert response.status_code == 404


@pytest.mark.django_db
def test_largest_64_bit_task_id_is_a_plain_404(quality):
    response = client_for(annotator()).post(
        f"/api/tasks/{2**63 - 1}/submit/", body(), format="json"
    )
    assert response.status_code == 404
    assert "does not exist" in response.json()["detail"]


@pytest.mark.django_db
def test_reusing_an_idempotency_key_with_a_different_body_is_422(quality):
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    client = client_for(annotator())
    assert client.post("/api/queue/next/", {}, format="json").json()["id"] == task.pk
    first = body()
    assert client.post(f"/api/tasks/{task.pk}/submit/", first, format="json").status_code == 201
    assert client.post(f"/api/tasks/{task.pk}/submit/", first, format="json").status_code == 200
    changed = {**first, "ratings": [1, -1], "finish_reason": "found_error"}
    response = client.post(f"/api/tasks/{task.pk}/submit/", changed, format="json")
    assert response.status_code == 422
    # Words the annotator can act on; the key and label ids stay in the log.
    refusal = response.json()
    assert refusal["code"] == "already_submitted"
    assert refusal["detail"].startswith(f"you already submitted task {task.pk}")
    assert "kept" in refusal["detail"]
    for internal in ("idempotency", "key", first["idempotency_key"][:8], "new key"):
        assert internal not in refusal["detail"]
    assert Label.objects.get().ratings == [1, 1, 1]


@pytest.mark.django_db(transaction=True)
def test_submit_while_another_connection_holds_the_write_lock_is_a_json_503(quality):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's database-wide write lock")
    task = TaskFactory(solution=SolutionFactory(steps=STEPS))
    client = client_for(annotator())
    assert client.post("/api/queue/next/", {}, format="json").status_code == 200
    connection.close()
    options = connection.settings_dict["OPTIONS"]
    saved_timeout = options.get("timeout")
    options["timeout"] = 0.2  # seconds: how long a writer waits for the lock
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
        response = client.post(f"/api/tasks/{task.pk}/submit/", body(), format="json")
        assert response.status_code == 503
        assert response["Content-Type"] == "application/json"
        assert int(response["Retry-After"]) > 0
        assert "busy" in response.json()["detail"]
    finally:
        holder.rollback()
        holder.close()
        connection.close()
        options["timeout"] = saved_timeout
    # once the writer is done, the page's retry goes through
    assert client.post(f"/api/tasks/{task.pk}/submit/", body(), format="json").status_code == 201


def problems_file(*lines: str) -> io.BytesIO:
    return io.BytesIO("".join(line + "\n" for line in lines).encode())


def problem_line(unique_id: str, answer: str = "2") -> str:
    return json.dumps({"unique_id": unique_id, "problem": "1+1?", "answer": answer})


@pytest.mark.django_db
def test_duplicate_unique_id_in_one_file_is_an_error_naming_both_lines():
    stream = problems_file(problem_line("a"), problem_line("b"), problem_line("a", answer="3"))
    with pytest.raises(ImportFailed) as failed:
        problems_import(stream=stream, source="p.jsonl")
    assert failed.value.report.error_lines() == [
        "p.jsonl:3: unique_id: 'a' already appears on line 1"
    ]
    assert not Problem.objects.exists()


@pytest.mark.django_db
def test_duplicate_unique_id_across_batches_is_caught_and_skippable():
    lines = [problem_line(str(n)) for n in range(5)] + [problem_line("1", answer="9")]
    report = problems_import(
        stream=problems_file(*lines), source="p.jsonl", skip_invalid=True, batch_size=2
    )
    assert report.error_lines() == ["p.jsonl:6: unique_id: '1' already appears on line 2"]
    assert Problem.objects.get(unique_id="1").answer == "2"  # the first line stands
    assert Problem.objects.count() == 5


@pytest.mark.django_db
def test_import_problems_on_a_nested_line_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "problems.jsonl"
    path.write_text(problem_line("a") + "\n" + DEEP + "\n")
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_problems", str(path), "--no-grade", verbosity=0)
    err = capsys.readouterr().err
    assert f"{path}:2: line: invalid JSON: nested deeper than {JSON_MAX_DEPTH} levels" in err
    assert "Traceback" not in err
    assert not Problem.objects.exists()


@pytest.mark.django_db
def test_admin_import_page_reports_a_nested_line(client, settings, tmp_path):
    from jobs.models import Job
    from labeling.services.import_jobs import import_job_run

    settings.IMPORT_UPLOAD_DIR = tmp_path
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    upload = SimpleUploadedFile("p.jsonl", (problem_line("a") + "\n" + DEEP + "\n").encode())
    response = client.post(reverse("admin:labeling_problem_import_jsonl"), {"file": upload})
    assert response.status_code == 302  # to its import job's page
    job = import_job_run(job_id=Job.objects.get().pk)
    page = client.get(response["Location"]).content.decode()
    assert f"line 2: line: invalid JSON: nested deeper than {JSON_MAX_DEPTH} levels" in page
    assert job.status == "failed" and not Problem.objects.exists()


def test_a_400_raised_before_an_api_view_is_json_elsewhere_django_s_page(rf):
    from django.core.exceptions import RequestDataTooBig

    from labeling.api.errors import bad_request_json_for_api

    error = RequestDataTooBig("Request body exceeded settings.DATA_UPLOAD_MAX_MEMORY_SIZE.")
    api = bad_request_json_for_api(rf.post("/api/tasks/1/submit/"), error)
    assert (api.status_code, api["Content-Type"]) == (400, "application/json")
    assert json.loads(api.content)["detail"] == str(error)
    page = bad_request_json_for_api(rf.post("/admin/"), error)
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")


HUGE = 2**63  # one past the largest 64-bit id: overflowed SQLite's integer binding


@pytest.mark.django_db
@pytest.mark.parametrize("task_id", [HUGE, 10**30])
def test_an_exclude_id_past_64_bits_is_a_400_naming_the_field(quality, task_id):
    response = client_for(annotator()).post(
        "/api/queue/next/", {"exclude": [task_id]}, format="json"
    )
    assert response.status_code == 400
    assert "exclude" in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"])
def test_a_since_that_leaves_the_calendar_in_utc_is_a_400(since):
    # Read as UTC these fall in year 10000 or year 0, which no datetime holds: the filter
    # overflowed on SQLite while the response streamed.
    client = client_for(UserFactory(is_staff=True, is_superuser=True))
    for kind in ("prm800k", "stepwise"):
        response = client.get(f"/api/export/{kind}/", {"since": since})
        assert response.status_code == 400
        assert "out of range" in response.json()["since"][0]
    body = {"format": "prm800k", "since": since}
    response = client.post("/api/export/jobs/", body, format="json")
    assert response.status_code == 400
    assert "since" in str(response.json())


@pytest.mark.django_db
@pytest.mark.parametrize("since", ["9999-12-31", "9999-12-31T23:59:59+14:00", "0001-01-01"])
def test_a_since_at_the_edge_of_the_calendar_is_answered(since):
    LabelFactory()
    client = client_for(UserFactory(is_staff=True, is_superuser=True))
    response = client.get("/api/export/prm800k/", {"since": since})
    assert response.status_code == 200
    lines = b"".join(response.streaming_content).splitlines()
    assert len(lines) == (1 if since.startswith("0001") else 0)


@pytest.mark.django_db
@pytest.mark.parametrize("generation", [2**63, -(2**63) - 1, 10**30])
def test_an_export_generation_past_64_bits_is_a_400(generation):
    client = client_for(UserFactory(is_staff=True, is_superuser=True))
    for kind in ("prm800k", "stepwise"):
        response = client.get(f"/api/export/{kind}/", {"generation": generation})
        assert response.status_code == 400
        assert "generation" in response.json()
    body = {"format": "prm800k", "generation": generation}
    response = client.post("/api/export/jobs/", body, format="json")
    assert response.status_code == 400
    assert "generation" in str(response.json())
