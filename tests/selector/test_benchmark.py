"""Standard benchmarks: ProcessBench F1, PRM800K records, bad input, the admin upload."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from jobs.models import Job, JobKind, JobStatus
from labeling.prm800k import step_ratings
from selector.ml.metrics import processbench_f1
from selector.services import job_execute, selector_create_base, selector_permissions_grant
from selector.services.benchmark import BenchmarkError, benchmark_read
from tests.factories import UserFactory
from tests.labeling.prm800k_records import generate_records, shape_records


def processbench_items(n: int = 12) -> list[dict]:
    items = []
    for i in range(n):
        steps = [f"Step {j} of item {i}: {i} + {j} = {i + j}." for j in range(3 + i % 4)]
        items.append(
            {
                "id": f"pb-{i}",
                "generator": "test",
                "problem": f"What is {i} + 1?",
                "steps": steps,
                "label": -1 if i % 3 == 0 else i % len(steps),
                "final_answer_correct": i % 3 == 0,
            }
        )
    return items


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_processbench_f1_is_the_harmonic_mean_of_the_two_accuracies():
    scores = [[0.9, 0.2, 0.9], [0.9, 0.9], [0.1, 0.9], [0.9, 0.9, 0.4]]
    labels = [1, -1, -1, 0]
    predicted, m = processbench_f1(scores, labels, threshold=0.5)
    assert predicted == [1, -1, 0, 2]
    assert (m["acc_erroneous"], m["acc_correct"]) == (0.5, 0.5)
    assert m["f1"] == pytest.approx(0.5)
    _, only_correct = processbench_f1([[0.9]], [-1])
    assert only_correct["f1"] is None and only_correct["acc_correct"] == 1.0


@pytest.mark.slow
def test_command_reports_f1_that_the_predictions_file_reproduces(db, selector_settings, tmp_path):
    version = selector_create_base(name="pb-base")
    bench = write_jsonl(tmp_path / "processbench.jsonl", processbench_items())
    first = tmp_path / "first.jsonl"
    call_command("evaluate_selector", "--benchmark", bench, "--predictions", first,
                 "--version", version.name, "--json", stdout=io.StringIO())  # fmt: skip
    lowest = sorted(min(json.loads(line)["step_scores"]) for line in first.read_text().splitlines())
    # An item is flagged when its lowest step is below the threshold: the median of the
    # lowest steps flags about half of them.
    threshold = lowest[len(lowest) // 2]
    out = io.StringIO()
    predictions = tmp_path / "predictions.jsonl"
    call_command("evaluate_selector", "--benchmark", bench, "--predictions", predictions,
                 "--version", version.name, "--threshold", str(threshold), "--json",
                 stdout=out)  # fmt: skip
    reported = json.loads(out.getvalue())
    labels = {item["id"]: item["label"] for item in processbench_items()}
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(labels)
    for row in rows:  # first_error is the first step below the threshold, -1 when none
        below = [j for j, s in enumerate(row["step_scores"]) if s < threshold]
        assert row["first_error"] == (below[0] if below else -1)
    err = [r["first_error"] == labels[r["id"]] for r in rows if labels[r["id"]] != -1]
    ok = [r["first_error"] == -1 for r in rows if labels[r["id"]] == -1]
    acc_err, acc_ok = sum(err) / len(err), sum(ok) / len(ok)
    f1 = 0.0 if acc_err + acc_ok == 0 else 2 * acc_err * acc_ok / (acc_err + acc_ok)
    assert reported["format"] == "processbench" and reported["items"] == len(labels)
    assert reported["acc_erroneous"] == pytest.approx(acc_err)
    assert reported["acc_correct"] == pytest.approx(acc_ok)
    assert reported["f1"] == pytest.approx(f1)
    assert any(r["first_error"] != -1 for r in rows) and any(r["first_error"] == -1 for r in rows)


def test_bad_benchmark_lines_are_named_by_file_line_and_field(db, selector_settings, tmp_path):
    good = processbench_items(1)[0]
    bench = tmp_path / "bad.jsonl"
    bench.write_text(
        "\n".join(
            [
                json.dumps(good),
                "{not json",
                json.dumps({**good, "id": "b", "steps": []}),
                json.dumps({**good, "id": "c", "label": 7}),
                json.dumps({**good, "id": "d", "problem": None}),
                json.dumps(good),
            ]
        ),
        encoding="utf-8",
    )
    with pytest.raises(BenchmarkError) as caught:
        benchmark_read(path=bench)
    message = str(caught.value)
    for expected in [f"{bench}:2: json", f"{bench}:3: steps", f"{bench}:4: label",
                     f"{bench}:5: problem", f"{bench}:6: id: 'pb-0' repeats line 1"]:  # fmt: skip
        assert expected in message, expected
    version = selector_create_base(name="pb-bad")
    predictions = tmp_path / "never.jsonl"
    with pytest.raises(CommandError, match=":3: steps"):
        call_command("evaluate_selector", "--benchmark", bench, "--predictions", predictions,
                     "--version", version.name)  # fmt: skip
    assert not predictions.exists()


def test_prm800k_records_give_first_errors_and_skip_what_has_none(tmp_path):
    records = generate_records(40)
    bench = write_jsonl(tmp_path / "prm800k.jsonl", records)
    items, info = benchmark_read(path=bench)
    assert info["format"] == "prm800k"

    expected = []
    for record in records:
        # The trajectory's ratings, as training reads them (the one PRM800K reader).
        ratings = step_ratings(
            record["label"]["steps"], own_steps=record["question"].get("pre_generated_steps")
        )
        if record["label"]["finish_reason"] == "bad_problem":
            continue
        if -1 in ratings:
            expected.append(ratings.index(-1))
        elif record["label"]["finish_reason"] == "solution":
            expected.append(-1)
    assert [item.label for item in items] == expected
    assert info["skipped"] == len(records) - len(expected) > 0  # give_up, bad_problem, …
    assert {-1} < {item.label for item in items}  # both correct and erroneous items


def test_prm800k_items_follow_the_trajectory_never_a_labeler_written_step(tmp_path):
    """Phase 1 rates several alternatives per step. Where all were rated -1 and the labeler
    wrote the step, the trajectory goes on with that step: a finished solution has no error
    there (the old reader paired completions[0]'s -1 with the human step's text)."""
    shapes = shape_records()
    human = shapes["phase1_all_negative_then_human"]
    stopped = json.loads(json.dumps(shapes["phase1_all_negative_then_human"]))
    stopped["label"]["steps"][1]["human_completion"] = None
    stopped["label"]["steps"] = stopped["label"]["steps"][:2]
    stopped["label"]["finish_reason"] = "found_error"
    corrected = shapes["phase2_error_with_human_completion"]
    bench = write_jsonl(tmp_path / "prm800k.jsonl", [human, stopped, corrected])
    items, info = benchmark_read(path=bench)
    assert info == {"format": "prm800k", "skipped": 0}
    by_line = {item.id: item for item in items}
    assert by_line["line-1"].steps == ["Add 3 and 4.", "3 + 4 = 7", "# Answer\n\n7"]
    assert by_line["line-1"].label == -1
    # The labeler stopped at a step whose every alternative is wrong: the first is the error.
    assert by_line["line-2"].steps == ["Add 3 and 4.", "3 + 4 = 8"]
    assert by_line["line-2"].label == 1
    # Phase 2: the pre-generated solution, its own rated step the error, not the correction.
    own = corrected["question"]["pre_generated_steps"]
    assert by_line["line-3"].steps == own and by_line["line-3"].label == 1


def test_real_prm800k_phase2_records_are_all_erroneous_items(shared_data):
    items, info = benchmark_read(path=shared_data / "prm800k_phase2_sample.jsonl")
    assert info == {"format": "prm800k", "skipped": 0} and len(items) == 9
    for item in items:
        assert 0 <= item.label < len(item.steps)


@pytest.mark.slow
def test_admin_upload_runs_a_benchmark_job_and_shows_its_f1(
    db, selector_settings, client, tmp_path, django_capture_on_commit_callbacks
):
    selector_settings.VAR_DIR = tmp_path / "var"
    selector_settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    user = UserFactory(username="ml", is_staff=True)
    user.groups.add(selector_permissions_grant())
    client.force_login(user)
    version = selector_create_base(name="pb-admin")
    url = reverse("admin:selector_selectorversion_benchmark", args=[version.pk])
    bad = io.BytesIO(b'{"id": 1, "problem": "p", "steps": [], "label": -1}\n')
    bad.name = "broken.jsonl"
    with django_capture_on_commit_callbacks():
        response = client.post(url, {"file": bad, "threshold": "0.5"}, follow=True)
    refused = job_execute(job_id=Job.objects.get().pk)  # the job checks it, not the request
    assert refused.status == JobStatus.FAILED
    assert "broken.jsonl:1: steps" in refused.error
    page = client.get(reverse("admin:jobs_job_change", args=[refused.pk])).content.decode()
    assert "broken.jsonl:1: steps" in page
    assert not list((tmp_path / "spool").iterdir())  # refused files are not kept
    refused.delete()
    page = reverse("admin:selector_selectorversion_change", args=[version.pk])

    upload = io.BytesIO("".join(json.dumps(r) + "\n" for r in processbench_items()).encode())
    upload.name = "pb.jsonl"
    with django_capture_on_commit_callbacks():
        response = client.post(url, {"file": upload, "threshold": "0.6"})
    job = Job.objects.get()
    assert (job.kind, job.version, job.params["threshold"]) == (JobKind.BENCHMARK, version, 0.6)
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    job = job_execute(job_id=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    body = client.get(page).content.decode()
    assert 'id="benchmark-results"' in body and "pb.jsonl" in body
    assert f"{job.result['acc_correct']:.3f}" in body
