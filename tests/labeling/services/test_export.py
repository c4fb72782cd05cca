"""PRM800K and TRL exports: schema, round trip, filters, streaming memory, query counts."""

import io
import json
import threading
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction

from labeling.models import AnnotatorProfile, Label, TaskKind
from labeling.services.export import (
    ExportError,
    ExportFilters,
    labels_for_export,
    parse_since,
    prm800k_chunks,
    prm800k_export,
    stepwise_export,
)
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, annotator
from tests.labeling.prm800k_records import (
    QUESTION_KEYS_PHASE2,
    generate_records,
    load_records,
    load_shared_samples,
    shape_records,
)

pytestmark = pytest.mark.django_db

ALL = ExportFilters(include_qc=True, include_screening=True)
DEFAULT = ExportFilters()


def export_lines(filters: ExportFilters = ALL, **kwargs: Any) -> list[dict[str, Any]]:
    out = io.BytesIO()
    count = prm800k_export(out=out, filters=filters, **kwargs)
    lines = out.getvalue().decode("utf-8").splitlines()
    assert len(lines) == count
    return [json.loads(line) for line in lines]


def check_prm800k_schema(record: dict[str, Any]) -> None:
    """Types and nulls of brief §3."""
    assert list(record)[:5] == [
        "labeler",
        "timestamp",
        "generation",
        "is_quality_control_question",
        "is_initial_screening_question",
    ]
    assert list(record)[5:] == ["question", "label"]
    assert str(uuid.UUID(record["labeler"])) == record["labeler"]
    stamp = datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S.%f")
    assert stamp.tzinfo is None and len(record["timestamp"]) == 26
    assert record["generation"] is None or isinstance(record["generation"], int)
    assert isinstance(record["is_quality_control_question"], bool)
    assert isinstance(record["is_initial_screening_question"], bool)
    question = record["question"]
    assert isinstance(question["problem"], str) and isinstance(question["ground_truth_answer"], str)
    if "pre_generated_steps" in question:
        assert all(isinstance(s, str) for s in question["pre_generated_steps"])
        assert isinstance(question["pre_generated_answer"], str)
        score = question["pre_generated_verifier_score"]
        assert score is None or (isinstance(score, float) and 0.0 <= score <= 1.0)
    label = record["label"]
    assert list(label) == ["steps", "total_time", "finish_reason"]
    assert isinstance(label["total_time"], int)
    assert label["finish_reason"] in {"found_error", "solution", "bad_problem", "give_up"}
    for step in label["steps"]:
        assert set(step) == {"completions", "human_completion", "chosen_completion"}
        for completion in step["completions"]:
            assert set(completion) == {"text", "rating", "flagged"}
            assert completion["rating"] in (-1, 0, 1, None)
            assert completion["flagged"] in (True, False, None)
        assert step["chosen_completion"] is None or isinstance(step["chosen_completion"], int)


def test_native_label_exports_full_phase2_shape_with_profile_labeler() -> None:
    user = annotator("ada")
    profile = AnnotatorProfile.objects.get(user=user)
    task = TaskFactory(generation=3, queued_score=0.25)
    LabelFactory(
        task=task,
        annotator=user,
        labeler=profile.labeler,
        total_time_ms=4321,
        created_at=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    )
    [record] = export_lines()
    check_prm800k_schema(record)
    assert record["labeler"] == str(profile.labeler)
    assert record["timestamp"] == "2024-05-06T07:08:09.000000"
    assert record["generation"] == 3
    assert list(record["question"]) == QUESTION_KEYS_PHASE2
    assert record["question"]["pre_generated_steps"] == task.solution.steps
    assert record["question"]["ground_truth_answer"] == task.solution.problem.answer
    assert record["question"]["ground_truth_solution"] == task.solution.problem.solution
    assert record["question"]["pre_generated_verifier_score"] == 0.25
    assert record["label"]["total_time"] == 4321
    assert record["label"]["finish_reason"] == "solution"
    assert record["is_quality_control_question"] is False
    assert record["is_initial_screening_question"] is False


def test_native_label_with_unknown_queue_score_exports_null() -> None:
    LabelFactory(task=TaskFactory(generation=None, queued_score=None))
    [record] = export_lines()
    assert record["generation"] is None
    assert record["question"]["pre_generated_verifier_score"] is None


def test_qc_and_screening_excluded_unless_asked_and_always_flagged() -> None:
    normal = LabelFactory(task=TaskFactory(kind=TaskKind.NORMAL))
    qc = LabelFactory(task=TaskFactory(kind=TaskKind.QUALITY_CONTROL))
    screening = LabelFactory(task=TaskFactory(kind=TaskKind.SCREENING, generation=-1))

    def ids(filters: ExportFilters) -> set[int]:
        return set(labels_for_export(filters=filters).values_list("id", flat=True))

    assert ids(ExportFilters()) == {normal.id}
    assert ids(ExportFilters(include_qc=True)) == {normal.id, qc.id}
    assert ids(ExportFilters(include_screening=True)) == {normal.id, screening.id}
    flags = {
        (r["is_quality_control_question"], r["is_initial_screening_question"], r["generation"])
        for r in export_lines(ALL)
    }
    assert flags == {(False, False, 1), (True, False, 1), (False, True, -1)}


def test_generation_and_since_filters() -> None:
    early = LabelFactory(
        task=TaskFactory(generation=1), created_at=datetime(2024, 1, 1, tzinfo=UTC)
    )
    late = LabelFactory(
        task=TaskFactory(generation=2), created_at=datetime(2024, 3, 1, 12, tzinfo=UTC)
    )
    assert [r["generation"] for r in export_lines(ExportFilters(generation=2))] == [2]
    since = parse_since("2024-02-01")
    assert set(
        labels_for_export(filters=ExportFilters(since=since)).values_list("id", flat=True)
    ) == {late.id}
    assert early.id in labels_for_export(filters=ExportFilters()).values_list("id", flat=True)


def test_parse_since_rejects_garbage_with_field_name() -> None:
    with pytest.raises(ValueError, match="since: 'yesterday'"):
        parse_since("yesterday")
    assert parse_since("2024-02-01T10:00:00+02:00") == datetime(2024, 2, 1, 8, tzinfo=UTC)


def test_export_uses_one_query_per_chunk(django_assert_num_queries: Any) -> None:
    for _ in range(25):
        LabelFactory()
    qs = labels_for_export(filters=ALL)
    # 25 rows in chunks of 10: three full or partial chunks, no query per row.
    with django_assert_num_queries(3):
        blocks = list(prm800k_chunks(labels=qs, chunk_size=10))
    assert [count for _, count, _ in blocks] == [10, 10, 5]


def roundtrip(records: list[dict[str, Any]], tmp_path: Path) -> None:
    load_records(records, tmp_path)
    exported = export_lines(ALL)
    assert len(exported) == len(records)
    for original, mine in zip(records, exported, strict=True):
        assert mine == original
        # Key order too, at every level: dumps keeps each dict's order as parsed.
        assert json.dumps(mine) == json.dumps(original)


def test_roundtrip_generated_records(tmp_path: Path) -> None:
    records = generate_records(60)
    # The generator must actually cover the corners it promises.
    steps = [s for r in records for s in r["label"]["steps"]]
    assert any(r["generation"] is None for r in records)
    assert any(r["generation"] == -1 for r in records)
    assert any(r["is_quality_control_question"] for r in records)
    assert any(r["is_initial_screening_question"] for r in records)
    assert any(s["human_completion"] for s in steps)
    assert any(len(s["completions"]) > 1 and s["chosen_completion"] is not None for s in steps)
    assert any(c["flagged"] is True for s in steps for c in s["completions"])
    assert any(c["rating"] is None for s in steps for c in s["completions"])
    assert any("pre_generated_steps" not in r["question"] for r in records)
    roundtrip(records, tmp_path)


@pytest.mark.parametrize("name", ["prm800k_phase1_sample.jsonl", "prm800k_phase2_sample.jsonl"])
def test_roundtrip_real_records(shared_data: Path, tmp_path: Path, name: str) -> None:
    lines = (shared_data / name).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    roundtrip(records, tmp_path)
    for record in export_lines(ALL):
        check_prm800k_schema(record)
    # Stronger than equal JSON: these ASCII-only lines come back byte for byte, nested key
    # order and spacing included (PostgreSQL's jsonb key order happens to be PRM800K's).
    out = io.BytesIO()
    prm800k_export(out=out, filters=ALL)
    assert out.getvalue().decode("utf-8").splitlines() == lines


def test_imported_record_with_unknown_question_key_fails_naming_label() -> None:
    label = LabelFactory(record_extras={"question_keys": ["problem", "mystery"]})
    with pytest.raises(ExportError, match=f"label {label.id}: question key 'mystery'"):
        export_lines()


def _bulk_labels(n: int) -> None:
    task = TaskFactory()
    solution_steps = task.solution.steps
    steps = [
        {
            "completions": [{"text": text * 20, "rating": 1, "flagged": False}],
            "human_completion": None,
            "chosen_completion": 0,
        }
        for text in solution_steps
    ]
    tasks = [
        TaskFactory(solution=SolutionFactory(problem=task.solution.problem)) for _ in range(n // 50)
    ]
    Label.objects.bulk_create(
        [
            Label(
                task=tasks[i % len(tasks)],
                labeler=uuid.uuid4(),
                steps=steps,
                ratings=[1] * len(steps),
                finish_reason="solution",
                created_at=datetime(2024, 1, 1, tzinfo=UTC),
            )
            for i in range(n)
        ],
        batch_size=1000,
    )


class _CountingSink(io.RawIOBase):
    def __init__(self) -> None:
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.bytes += len(data)
        return len(data)


def _peak_while_exporting(chunk_size: int) -> tuple[int, int]:
    sink = _CountingSink()
    tracemalloc.start()
    try:
        count = prm800k_export(out=sink, filters=ALL, chunk_size=chunk_size)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sink.bytes > 0
    return count, peak


@pytest.mark.slow
def test_export_memory_stays_flat_as_rows_grow() -> None:
    # Label ids are not unique per (task, labeler) issue here: each label has its own labeler.
    _bulk_labels(1000)
    count_n, peak_n = _peak_while_exporting(chunk_size=200)
    _bulk_labels(3000)
    count_4n, peak_4n = _peak_while_exporting(chunk_size=200)
    assert (count_n, count_4n) == (1000, 4000)
    # Four times the rows, about the same peak: memory is bounded by the chunk, not the export.
    assert peak_4n < peak_n * 1.5 + 256 * 1024, (peak_n, peak_4n)


def trl_lines(filters: ExportFilters = DEFAULT, **kwargs: Any) -> list[dict[str, Any]]:
    out = io.BytesIO()
    stepwise_export(out=out, filters=filters, **kwargs)
    return [json.loads(line) for line in out.getvalue().decode("utf-8").splitlines()]


def _step(text: str, rating: int | None, chosen: int | None = 0, **extra: Any) -> dict[str, Any]:
    return {
        "completions": [{"text": text, "rating": rating, "flagged": False}, *extra.get("alts", [])],
        "human_completion": extra.get("human"),
        "chosen_completion": chosen,
    }


def test_trl_export_stops_at_first_negative_and_maps_neutral() -> None:
    solution = SolutionFactory(steps=["a", "b", "c", "d"])
    LabelFactory(
        task=TaskFactory(solution=solution),
        steps=[
            _step("a", 1),
            _step("b", 0),
            # Phase-2 error step: nothing chosen, the candidate's own step is completion 0.
            _step("c", -1, chosen=None, alts=[{"text": "c'", "rating": 1, "flagged": False}]),
            _step("d", None, chosen=None),
        ],
        finish_reason="found_error",
    )
    trajectory, branch = trl_lines()
    assert trajectory == {
        "prompt": solution.problem.problem,
        "completions": ["a", "b", "c"],
        "labels": [True, True, False],
    }
    # The alternative rated at the error step: the prefix before it, then itself.
    assert branch == {
        "prompt": solution.problem.problem,
        "completions": ["a", "b", "c'"],
        "labels": [True, True, True],
    }
    assert [r["labels"] for r in trl_lines(neutral="negative")] == [
        [True, False, False],
        [True, False, True],
    ]
    [record] = trl_lines(trajectories_only=True)
    assert record["completions"] == ["a", "b", "c"]


def test_trl_export_follows_human_completion_and_skips_bad_problems_and_qc() -> None:
    human = {"text": "mine", "rating": None, "source": "human", "flagged": False}
    LabelFactory(
        steps=[_step("x", -1, chosen=None, human=human), _step("y", 1)],
        finish_reason="solution",
    )
    LabelFactory(steps=[_step("z", 1)], finish_reason="bad_problem")
    LabelFactory(steps=[_step("q", 1)], task=TaskFactory(kind=TaskKind.QUALITY_CONTROL))
    LabelFactory(steps=[_step("u", None)], finish_reason="give_up")  # nothing rated
    records = trl_lines()
    # The labeler's own step is followed (and labeled true); the -1 it replaced is a branch.
    assert [(r["completions"], r["labels"]) for r in records] == [
        (["mine", "y"], [True, True]),
        (["x"], [False]),
    ]


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "export-prefetch"]


@pytest.mark.django_db(transaction=True)
def test_prefetching_on_a_second_connection_gives_the_same_lines() -> None:
    # Outside a transaction the next chunk is fetched on another thread and connection.
    for _ in range(7):
        LabelFactory()
    qs = labels_for_export(filters=ALL)
    with transaction.atomic():  # inside one: serial, on this connection
        serial = [block for block, _, _ in prm800k_chunks(labels=qs, chunk_size=3)]
    chunks = prm800k_chunks(labels=qs, chunk_size=3)
    first = next(chunks)
    assert _prefetch_threads(), "expected the prefetch thread to be running"
    prefetched = [first[0]] + [block for block, _, _ in chunks]
    assert prefetched == serial and len(serial) == 3
    assert _prefetch_threads() == []


@pytest.mark.django_db(transaction=True)
def test_abandoned_export_stops_its_prefetch_thread() -> None:
    for _ in range(10):
        LabelFactory()
    chunks = prm800k_chunks(labels=labels_for_export(filters=ALL), chunk_size=2)
    next(chunks)
    chunks.close()  # e.g. the HTTP client went away mid-download
    assert _prefetch_threads() == []


@pytest.mark.django_db(transaction=True)
def test_errors_on_the_prefetch_thread_reach_the_caller() -> None:
    LabelFactory(record_extras={"question_keys": ["mystery"]})
    with pytest.raises(ExportError, match="question key 'mystery'"):
        export_lines()
    assert _prefetch_threads() == []


def test_filters_keep_imported_labels_whatever_flags_their_extras_hold() -> None:
    bare = LabelFactory(record_extras={"question_keys": ["problem"]})
    unflagged = LabelFactory(record_extras={"is_quality_control_question": False})
    flagged = LabelFactory(record_extras={"is_quality_control_question": True})
    native = LabelFactory(record_extras=None)
    kept = set(labels_for_export(filters=DEFAULT).values_list("id", flat=True))
    assert kept == {bare.id, unflagged.id, native.id}
    with_qc = set(
        labels_for_export(filters=ExportFilters(include_qc=True)).values_list("id", flat=True)
    )
    assert flagged.id in with_qc


def test_label_made_through_the_queue_exports_with_its_round_and_score() -> None:
    from labeling.services.labels import label_submit
    from labeling.services.queue import task_claim_next

    user = annotator("ada")
    profile = AnnotatorProfile.objects.get(user=user)
    solution = SolutionFactory(steps=["First.", "Second.", "# Answer\n\n4"])
    task = TaskFactory(solution=solution, generation=7, queued_score=0.125, priority=1.0)
    claim = task_claim_next(annotator=user)
    assert claim is not None and claim.task.pk == task.pk
    label_submit(
        annotator=user,
        task_id=task.pk,
        idempotency_key="k1",
        ratings=[1, 0, 1],
        flags=None,
        human_completion=None,
        finish_reason="solution",
        total_time_ms=5400,
        started_at=None,
    )
    [record] = export_lines(DEFAULT)
    check_prm800k_schema(record)
    assert record["labeler"] == str(profile.labeler)  # never the username or user id
    assert record["generation"] == 7
    assert record["question"]["pre_generated_verifier_score"] == 0.125
    assert record["question"]["pre_generated_steps"] == solution.steps
    assert record["label"]["total_time"] == 5400
    assert [
        s["completions"][s["chosen_completion"]]["rating"] for s in record["label"]["steps"]
    ] == [
        1,
        0,
        1,
    ]


def test_roundtrip_every_record_shape(tmp_path: Path) -> None:
    # Runs on either backend; on PostgreSQL it also checks jsonb's key order per shape.
    records = list(shape_records().values())
    roundtrip(records, tmp_path)
    out = io.BytesIO()
    prm800k_export(out=out, filters=ALL)
    assert out.getvalue().decode("utf-8").splitlines() == [json.dumps(r) for r in records]


def test_roundtrip_text_with_the_characters_copy_escapes(tmp_path: Path) -> None:
    # PostgreSQL's writer sends the records by COPY in its text format, where a tab, newline,
    # carriage return or backslash must be escaped and a field reading "\\N" is NULL.
    tricky = "a\tb\nc\r\\d \\N \\. é \U0001d501 \\frac{1}{2}"
    records = generate_records(6)
    for i, record in enumerate(records):
        question = record["question"]
        question["problem"] = f"{tricky} problem {i}"
        if question["ground_truth_answer"] is not None:
            question["ground_truth_answer"] = f"{tricky} {i}"
        if "pre_generated_steps" in question:
            question["pre_generated_steps"] = [f"{tricky} step", "\\N"]
            question["pre_generated_answer"] = "\\N"
        for step in record["label"]["steps"]:
            for completion in step["completions"] or ():
                completion["text"] = f"{tricky} {completion['text']}"
    roundtrip(records, tmp_path)


@pytest.mark.postgres
def test_roundtrip_every_record_shape_byte_for_byte_on_postgresql(tmp_path: Path) -> None:
    records = list(shape_records().values())
    load_records(records, tmp_path)
    out = io.BytesIO()
    prm800k_export(out=out, filters=ALL)
    expected = "".join(json.dumps(r) + "\n" for r in records)
    assert out.getvalue().decode("utf-8") == expected


def test_trl_export_has_every_negative_of_the_real_samples(
    shared_data: Path, tmp_path: Path
) -> None:
    """Done-when of issue 8: >= 95% of the distinct -1-rated completions in the source files
    appear as a False label (at their step, after their problem) in export_stepwise."""
    wanted = load_shared_samples(shared_data, tmp_path)
    rows = trl_lines()
    exported = {
        (row["prompt"], k, text)
        for row in rows
        for k, (text, label) in enumerate(zip(row["completions"], row["labels"], strict=True))
        if label is False
    }
    assert len(wanted) > 50
    assert len(wanted & exported) / len(wanted) >= 0.95, (len(wanted & exported), len(wanted))
    # The old layout (one row per label) kept only the chosen trajectories' negatives.
    old = {
        (row["prompt"], k, text)
        for row in trl_lines(trajectories_only=True)
        for k, (text, label) in enumerate(zip(row["completions"], row["labels"], strict=True))
        if label is False
    }
    assert len(old & wanted) < len(wanted) / 2


def test_trl_export_leaves_out_unreliable_annotators_and_flagged_steps() -> None:
    paused, failed, fine = annotator(), annotator(), annotator()
    AnnotatorProfile.objects.filter(user=paused).update(is_paused=True)
    AnnotatorProfile.objects.filter(user=failed).update(screening_passed=False)
    for user in (paused, failed, fine):
        LabelFactory(
            annotator=user,
            labeler=user.annotator_profile.labeler,
            steps=[_step("a", 1), _step("b", 1)],
            finish_reason="solution",
        )
    assert len(trl_lines()) == 1
    assert len(trl_lines(include_unreliable=True)) == 3
    flagged = _step("f", -1)
    flagged["completions"][0]["flagged"] = True
    Label.objects.all().delete()
    LabelFactory(steps=[_step("a", 1), flagged], finish_reason="found_error")
    assert [r["completions"] for r in trl_lines()] == [["a"]]
    assert [r["labels"] for r in trl_lines(include_flagged=True)] == [[True, False]]
