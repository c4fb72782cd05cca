"""The import services against the database: the PRM800K storage contract on real records."""

import io
import json
import uuid
from datetime import UTC, datetime

import pytest

from labeling.models import AnnotatorProfile, Label, Problem, Solution, Task, TaskKind, text_sha256
from labeling.prm800k import step_ratings
from labeling.services.imports import (
    ImportFailed,
    candidates_import,
    prm800k_import,
    problems_import,
    solution_text_split,
)
from tests.factories import ProblemFactory, SolutionFactory, UserFactory
from tests.labeling.prm800k_records import shape_records

pytestmark = pytest.mark.django_db


def stream(*records):
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in records).encode())


def read_records(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_solution_text_keeps_the_answer_marker_with_its_answer():
    text = "First.\n\nSecond.\n# Answer\n\n42\n"
    assert solution_text_split(text) == ["First.", "Second.", "# Answer\n\n42"]
    assert solution_text_split("One.\n \nTwo.") == ["One.", "Two."]


def test_problems_upsert_resets_grades_when_the_answer_changes():
    solution = SolutionFactory(problem=ProblemFactory(unique_id="u/1", answer="1"), grade="correct")
    record = {"unique_id": "u/1", "problem": "New text", "answer": "2", "level": 3}
    report = problems_import(stream=stream(record), source="s")
    problem = Problem.objects.get(unique_id="u/1")
    assert (problem.problem, problem.answer, problem.problem_hash) == (
        "New text",
        "2",
        text_sha256("New text"),
    )
    solution.refresh_from_db()
    assert solution.grade == "ungraded"
    assert report.problem_ids == {problem.id}


def test_a_failed_import_leaves_no_partial_state():
    ProblemFactory(unique_id="u/1")
    good = {"unique_id": "u/1", "steps": ["# Answer\n\n1"]}
    with pytest.raises(ImportFailed) as exc:
        candidates_import(stream=stream(good, {"unique_id": 5, "steps": ["x"]}), source="f")
    assert exc.value.report.error_lines() == ["f:2: unique_id: must be a string, got number"]
    assert not Solution.objects.exists()


def test_phase2_sample_creates_labels_with_exact_steps_and_flags(shared_data):
    path = shared_data / "prm800k_phase2_sample.jsonl"
    records = read_records(path)
    with path.open("rb") as f:
        report = prm800k_import(stream=f, source=str(path))
    assert report.created == {"problems": 4, "solutions": 9, "tasks": 9, "labels": 9}
    assert Label.objects.count() == 9

    for record in records:
        question = record["question"]
        label = Label.objects.select_related("task__solution__problem").get(
            labeler=uuid.UUID(record["labeler"]),
            task__solution__text_hash=text_sha256("\n".join(question["pre_generated_steps"])),
        )
        task, solution = label.task, label.task.solution
        problem = solution.problem
        assert label.steps == record["label"]["steps"]  # flags, nulls and alternatives kept
        assert label.finish_reason == record["label"]["finish_reason"] == "found_error"
        assert label.total_time_ms == record["label"]["total_time"]
        assert label.created_at == datetime.fromisoformat(record["timestamp"]).replace(tzinfo=UTC)
        assert label.annotator is None
        assert solution.steps == question["pre_generated_steps"]
        assert solution.answer == question["pre_generated_answer"]
        assert (solution.source, solution.generator) == ("prm800k", "prm800k")
        assert problem.unique_id == f"prm800k/{text_sha256(question['problem'])[:16]}"
        assert problem.answer == question["ground_truth_answer"]
        assert problem.solution == question["ground_truth_solution"]
        assert (task.kind, task.generation) == (TaskKind.NORMAL, 6)
        assert task.queued_score == question["pre_generated_verifier_score"]
        assert task.priority == task.queued_score
        assert (task.label_count, task.required_labels) == (1, 1)
        # Every phase-2 record stops at its first negative step.
        assert label.ratings[-1] == -1
        assert len(label.ratings) == len(record["label"]["steps"])
        assert label.record_extras == {
            "question_keys": list(question),
            "question_overrides": {},
            "is_quality_control_question": False,
            "is_initial_screening_question": False,
            "generation": 6,
            "label_keys": list(record["label"]),
        }
    flagged = [
        c.get("flagged") for r in records for s in r["label"]["steps"] for c in s["completions"]
    ]
    stored = [
        c.get("flagged") for lb in Label.objects.all() for s in lb.steps for c in s["completions"]
    ]
    assert sorted(map(str, stored)) == sorted(map(str, flagged))


def test_phase1_sample_keeps_human_completions_in_labels_and_trajectory(shared_data):
    path = shared_data / "prm800k_phase1_sample.jsonl"
    records = read_records(path)
    with path.open("rb") as f:
        prm800k_import(stream=f, source=str(path))
    assert Label.objects.count() == 3
    for record in records:
        label = Label.objects.get(
            labeler=uuid.UUID(record["labeler"]),
            task__solution__problem__problem=record["question"]["problem"],
        )
        assert label.steps == record["label"]["steps"]
        assert label.task.generation is None
        assert label.task.queued_score is None
        assert label.record_extras["question_keys"] == ["problem", "ground_truth_answer"]
        expected = []
        for step in record["label"]["steps"]:
            if step["chosen_completion"] is not None:
                expected.append(step["completions"][step["chosen_completion"]]["text"])
            elif step["human_completion"] is not None:
                expected.append(step["human_completion"]["text"])
            else:
                break
        assert label.task.solution.steps == expected
        humans = [i for i, s in enumerate(record["label"]["steps"]) if s["human_completion"]]
        assert humans, "the sample has human completions"
        for i in humans:
            assert label.steps[i]["human_completion"]["source"] == "human"
            assert (
                label.task.solution.steps[i]
                == record["label"]["steps"][i]["human_completion"]["text"]
            )


def test_reimport_is_a_no_op_and_labels_link_to_known_annotators(shared_data):
    path = shared_data / "prm800k_phase2_sample.jsonl"
    first = read_records(path)[0]
    user = UserFactory()
    AnnotatorProfile.objects.create(user=user, labeler=uuid.UUID(first["labeler"]))
    for _ in range(2):
        with path.open("rb") as f:
            prm800k_import(stream=f, source=str(path))
    assert Label.objects.count() == 9
    assert Label.objects.filter(annotator=user).count() == sum(
        r["labeler"] == first["labeler"] for r in read_records(path)
    )


def test_two_labelers_on_one_solution_share_a_task_and_overrides_are_kept(shared_data):
    record = read_records(shared_data / "prm800k_phase2_sample.jsonl")[0]
    ProblemFactory(problem=record["question"]["problem"], answer="28,800", solution="")
    second = json.loads(json.dumps(record)) | {"labeler": str(uuid.uuid4())}
    qc = json.loads(json.dumps(record)) | {"is_quality_control_question": True}
    prm800k_import(stream=stream(record, second, qc), source="s")

    normal = Task.objects.get(kind=TaskKind.NORMAL)
    assert (normal.label_count, normal.required_labels) == (2, 2)
    assert Task.objects.get(kind=TaskKind.QUALITY_CONTROL).label_count == 1
    assert Problem.objects.count() == 1  # matched by text, not created
    extras = Label.objects.filter(task=normal).first().record_extras
    assert extras["question_overrides"] == {
        "ground_truth_answer": record["question"]["ground_truth_answer"],
        "ground_truth_solution": record["question"]["ground_truth_solution"],
    }


def test_every_record_shape_of_the_release_imports_without_skip_invalid():
    shapes = shape_records()
    report = prm800k_import(stream=stream(*shapes.values()), source="shapes.jsonl")
    assert report.error_lines() == []
    assert Label.objects.count() == len(shapes)
    for record in shapes.values():
        label = Label.objects.get(labeler=uuid.UUID(record["labeler"]))
        assert label.steps == record["label"]["steps"]
        own = record["question"].get("pre_generated_steps")
        assert label.ratings == step_ratings(record["label"]["steps"], own_steps=own)
    # The rated -1 beside a corrected step is kept (it used to be replaced by the human text).
    fixed = shapes["phase2_error_with_human_completion"]
    assert Label.objects.get(labeler=uuid.UUID(fixed["labeler"])).ratings == [1, -1]
    screening = shapes["phase2_screening_null_ground_truth"]
    task = Task.objects.get(labels__labeler=uuid.UUID(screening["labeler"]))
    assert (task.kind, task.generation) == (TaskKind.SCREENING, -1)
    assert (task.solution.problem.answer, task.solution.problem.solution) == ("", "")


def test_a_null_ground_truth_does_not_hide_another_records_answer():
    screening = shape_records()["phase2_screening_null_ground_truth"]
    normal = json.loads(json.dumps(screening))
    normal.update(labeler=str(uuid.uuid4()), is_initial_screening_question=False, generation=2)
    normal["question"]["ground_truth_answer"] = "7"
    prm800k_import(stream=stream(screening, normal), source="s")
    assert Problem.objects.get().answer == "7"


def test_lines_that_are_not_prm800k_records_are_refused_with_nothing_imported():
    shapes = list(shape_records().values())
    lines = [
        *shapes[:3],
        {"unique_id": "test/algebra/1.json", "problem": "1+1?", "answer": "2"},  # a MATH line
        {**shapes[0], "label": {**shapes[0]["label"], "steps": {"completions": []}}},
        {**shapes[5], "question": {**shapes[5]["question"], "ground_truth_answer": 7}},
        {**shapes[1], "label": {**shapes[1]["label"], "steps": [{"completions": [{"txt": "a"}]}]}},
    ]
    with pytest.raises(ImportFailed) as exc:
        prm800k_import(stream=stream(*lines), source="mixed.jsonl")
    assert exc.value.report.error_lines() == [
        "mixed.jsonl:4: labeler: is required",
        "mixed.jsonl:5: label.steps: must be an array, got object",
        "mixed.jsonl:6: question.ground_truth_answer: must be a string or null, got number",
        "mixed.jsonl:7: label.steps[0].completions[0].txt: is not a PRM800K field",
    ]
    assert not Label.objects.exists()
    assert not Problem.objects.exists()


def test_records_spread_over_batches_share_tasks_counts_and_overrides(tmp_path):
    """Runs on either backend: on PostgreSQL it covers the set-based writer (ids resolved by
    joins, counts of tasks that had labels, duplicates within and across batches)."""
    from labeling.services.export import ExportFilters, prm800k_export

    shapes = shape_records()
    phase1 = shapes["phase1_nulls_and_flags"]  # generation null: its task is matched by IS NULL
    phase2 = shapes["phase2_solution"]
    phase1_again = json.loads(json.dumps(phase1)) | {"labeler": str(uuid.uuid4())}
    phase2_again = json.loads(json.dumps(phase2)) | {"labeler": str(uuid.uuid4())}
    phase2_again["question"] |= {"pre_generated_answer": "seven", "pre_generated_verifier_score": 1}
    lines = [phase1, phase2, phase2, phase2_again, phase1_again, phase1]
    report = prm800k_import(stream=stream(*lines), source="s", batch_size=3)

    assert report.imported == 6
    assert (report.created["tasks"], report.created["labels"]) == (2, 4)
    for task in Task.objects.all():
        assert (task.label_count, task.required_labels) == (2, 2)
        assert task.labels.count() == 2
    extras = Label.objects.get(labeler=uuid.UUID(phase2_again["labeler"])).record_extras
    assert extras["question_overrides"] == {
        "pre_generated_answer": "seven",
        "pre_generated_verifier_score": 1,
    }
    for record in (phase1, phase2, phase1_again):
        label = Label.objects.get(labeler=uuid.UUID(record["labeler"]))
        assert label.record_extras["question_overrides"] == {}
    out = io.BytesIO()
    prm800k_export(out=out, filters=ExportFilters(include_qc=True, include_screening=True))
    expected = [phase1, phase2, phase2_again, phase1_again]
    assert out.getvalue().decode("utf-8").splitlines() == [json.dumps(r) for r in expected]


def test_imported_tasks_are_marked_as_queued_by_the_import():
    """Phase 2's candidates were picked by OpenAI's PRM, so no imported task is ever "uniform"
    (the evaluation set's rule); both writers (ORM here, SQL on PostgreSQL) say so."""
    prm800k_import(stream=stream(*shape_records().values()), source="s")
    assert Task.objects.exists()
    assert set(Task.objects.values_list("queued_by", flat=True)) == {"import"}


def test_the_garbage_collector_is_back_on_after_an_import_good_or_bad():
    import gc

    assert gc.isenabled()
    prm800k_import(stream=stream(*shape_records().values()), source="s")
    assert gc.isenabled()
    with pytest.raises(ImportFailed):
        prm800k_import(stream=stream({"labeler": 5}), source="s")
    assert gc.isenabled()


@pytest.mark.postgres
def test_the_postgresql_writer_leaves_the_sessions_jit_setting_as_it_found_it():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = on")
        prm800k_import(stream=stream(*shape_records().values()), source="s")
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "on"
