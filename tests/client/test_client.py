"""The Python client against the live test server: imports from records, files and bytes
(idempotent), ``wait`` with and without tqdm, the server's field errors as exceptions, exports
streamed to files, labeling as an annotator, cancelling."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from stepwise_client import APIError, Job, JobFailed, Stepwise

from jobs.models import Job as JobRow
from jobs.models import JobKind, JobStatus
from labeling.models import Label, Problem, Solution
from selector.models import SelectorVersion, VersionStatus
from tests.factories import LabelFactory, ProblemFactory, SolutionFactory, TaskFactory

pytestmark = pytest.mark.slow


def problems(*ids: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "problem": f"What is {i} + 1?",
            "solution": f"{i + 1}",
            "answer": str(i + 1),
            "subject": "Algebra",
            "level": 1,
            "unique_id": f"client/{i}.json",
            **extra,
        }
        for i in ids
    ]


@pytest.fixture
def staff(server: str, staff_token: str) -> Stepwise:
    return Stepwise(server, staff_token)


def test_imports_from_records_files_and_bytes_and_the_same_bytes_are_one_job(
    staff: Stepwise, eager_jobs: None, tmp_path: Path
) -> None:
    job = staff.wait(staff.import_problems(problems(1, 2)), progress=False)
    assert (job.kind, job.status, job.result["created"]) == ("import", "succeeded", {"problems": 2})
    assert job.done == job.total > 0 and job.errors == []
    # The same bytes from a file: the server hands back the same job.
    path = tmp_path / "problems.jsonl"
    path.write_bytes(b"".join(json.dumps(p).encode() + b"\n" for p in problems(1, 2)))
    assert staff.import_problems(path).id == job.id
    assert staff.import_problems(path.read_bytes()).id == job.id
    # Lines as text, one of them invalid, skipped on request.
    lines = [json.dumps(p) for p in problems(3)] + ['{"unique_id": 4}']
    skipped = staff.wait(staff.import_problems(lines, skip_invalid=True), progress=False)
    assert skipped.result["created"] == {"problems": 1}
    assert [(e["line"], e["field"]) for e in skipped.errors] == [(2, "unique_id")]
    candidates = [{"unique_id": "client/1.json", "steps": ["Add one.", "# Answer\n\n2"]}]
    done = staff.wait(staff.import_candidates(candidates, filename="c.jsonl"), progress=False)
    assert done.result["source"] == "c.jsonl" and done.result["graded"] == 1
    assert Problem.objects.count() == 3 and Solution.objects.get().grade == "correct"


def test_a_failed_import_raises_job_failed_with_the_line_errors(
    staff: Stepwise, eager_jobs: None
) -> None:
    bad = [*problems(1), *problems(2, level="high")]
    job = staff.import_problems(bad, filename="bad.jsonl")
    with pytest.raises(JobFailed) as caught:
        staff.wait(job, progress=False)
    assert caught.value.job.status == "failed"
    assert caught.value.errors[0] == {
        "line": 2,
        "field": "level",
        "message": caught.value.errors[0]["message"],
    }
    assert "nothing was imported" in caught.value.errors[-1]["message"]
    assert "2:level:" in str(caught.value)
    assert not Problem.objects.exists()


def test_wait_draws_a_tqdm_bar_and_needs_no_tqdm(
    staff: Stepwise, eager_jobs: None, capsys: Any, monkeypatch: Any
) -> None:
    job = staff.import_problems(problems(1))
    staff.wait(job)
    assert f"import #{job.id}" in capsys.readouterr().err  # tqdm writes to stderr
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    assert staff.wait(job).succeeded
    assert f"import #{job.id}" not in capsys.readouterr().err


def test_refusals_raise_api_errors_carrying_the_servers_field_errors(
    staff: Stepwise, server: str, eager_jobs: None
) -> None:
    with pytest.raises(APIError) as caught:
        staff.train(epochs=0)
    assert caught.value.status_code == 400
    assert list(caught.value.errors) == ["epochs"]
    assert "between 1 and" in caught.value.errors["epochs"][0]
    with pytest.raises(APIError) as caught:
        staff.fill(per_problem=5000, colour="red")
    assert set(caught.value.errors) == {"per_problem", "colour"}
    with pytest.raises(APIError) as caught:
        staff.evaluate("no-such-version")
    assert "no selector version" in caught.value.errors["version"][0]

    SelectorVersion.objects.create(name="incumbent", status=VersionStatus.READY, is_active=True)
    worse = {
        "comparison": {
            "against": "incumbent",
            "intervals": {"step.auroc": {"diff": -0.3, "low": -0.5, "high": -0.1}},
        }
    }
    SelectorVersion.objects.create(name="worse", status=VersionStatus.READY, metrics=worse)
    with pytest.raises(APIError) as caught:
        staff.promote("worse")
    assert caught.value.status_code == 409 and "clearly worse" in caught.value.errors["force"][0]
    forced = staff.promote({"id": SelectorVersion.objects.get(name="worse").pk}, force=True)
    # Started (and, eagerly, run: it fails, this version has no checkpoint to score with).
    assert forced.kind == "promote" and JobRow.objects.filter(pk=forced.id).exists()

    with pytest.raises(APIError) as caught:
        Stepwise(server, "not-a-token").versions()
    assert caught.value.status_code in (401, 403) and caught.value.detail == "Invalid token."


def test_a_token_from_the_documented_command_signs_the_client_in(server: str) -> None:
    from io import StringIO

    from django.core.management import call_command

    from tests.factories import staff_with

    staff_with("selector.view_selectorversion", username="scripted")
    out = StringIO()
    call_command("drf_create_token", "scripted", stdout=out)
    token = out.getvalue().split()[2]  # "Generated token KEY for user scripted"
    assert Stepwise(server, token).versions() == []
    with pytest.raises(APIError) as caught:  # the user's permissions, no more
        Stepwise(server, token).train()
    assert caught.value.status_code == 403


def test_exports_stream_into_files(staff: Stepwise, tmp_path: Path) -> None:
    for generation in (1, 1, 2):
        LabelFactory(task=TaskFactory(generation=generation))
    everything = staff.export_prm800k(tmp_path / "all.jsonl")
    assert len(everything.read_text().splitlines()) == 3
    assert not (tmp_path / "all.jsonl.partial").exists()
    second = staff.export_prm800k(tmp_path / "g2.jsonl", generation=2)
    assert len(second.read_text().splitlines()) == 1
    trl = staff.export_stepwise(tmp_path / "trl.jsonl", neutral="negative", include_qc=False)
    assert all("completions" in json.loads(row) for row in trl.read_text().splitlines())
    with pytest.raises(APIError) as caught:
        staff.export_prm800k(tmp_path / "x.jsonl", since="yesterday")
    assert list(caught.value.errors) == ["since"]
    assert not (tmp_path / "x.jsonl").exists()


def test_an_annotator_claims_and_submits_through_the_client(
    server: str, annotator_token: str
) -> None:
    solution = SolutionFactory(
        problem=ProblemFactory(answer="2"), steps=["Add.", "# Answer\n\n2"], answer="2"
    )
    TaskFactory(solution=solution)
    rater = Stepwise(server, annotator_token)
    task = rater.next_task()
    assert task is not None and task["steps"] == ["Add.", "# Answer\n\n2"]
    submitted = rater.submit_label(task, ratings=[1, 1], finish_reason="solution")
    assert submitted["created"] is True
    assert Label.objects.get().ratings == [1, 1]
    assert rater.next_task() is None
    assert rater.me()["labels_total"] == 1


def test_cancel_a_queued_job_and_a_finished_one_is_an_error(
    staff: Stepwise, staff_token: str
) -> None:
    from rest_framework.authtoken.models import Token

    owner = Token.objects.get(key=staff_token).user
    row = JobRow.objects.create(kind=JobKind.FILL, created_by=owner)
    cancelled = staff.cancel(row.pk)
    assert isinstance(cancelled, Job) and cancelled.status == "cancelled"
    assert JobRow.objects.get(pk=row.pk).status == JobStatus.CANCELLED
    with pytest.raises(JobFailed):
        staff.wait(row.pk, progress=False)
    with pytest.raises(APIError) as caught:
        staff.cancel(row.pk)
    assert caught.value.status_code == 409
