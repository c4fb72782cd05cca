"""Import MATH problems, candidate solutions and PRM800K label records from JSONL streams.

All three importers share one shape: read the stream line by line, parse and validate each
record (a bad one becomes ``FILE:LINE: field: message``), and write valid records in batches
of ``batch_size`` lines (a few set-based queries per table per batch), all inside ONE
transaction. If any line was invalid and ``skip_invalid`` is false, ``ImportFailed`` is raised
at the end with every error and the transaction rolls back: nothing is imported. Memory is
bounded by the batch whatever the file size, and re-importing a file creates nothing new.

Grading is not done here: callers run ``answers_grade`` afterwards (the management commands)
or enqueue ``labeling.grade_solutions`` on commit (the admin upload).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Generic, TypeVar

from django.db import connection, transaction
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce, Greatest

from labeling.models import (
    AnnotatorProfile,
    FinishReason,
    Grade,
    Label,
    Problem,
    QueuedBy,
    Solution,
    Task,
    TaskKind,
    text_sha256,
)
from labeling.prm800k import chosen_trajectory, label_steps_check
from labeling.services.grading import ANSWER_MARKER, answer_extract, problem_grades_reset
from labeling.services.jsonl import (
    LineError,
    LineInvalid,
    jsonl_records,
    opt_str,
    req_str,
    str_list,
    type_name,
)

DEFAULT_BATCH_SIZE = 2000
_MAX_TOTAL_TIME_MS = 2**31 - 1  # PositiveIntegerField's range on every backend
_PROBLEM_CACHE_LIMIT = 100_000  # problem ids remembered across batches (candidates import)

# json.dumps's output without its reference-cycle check (parsed JSON has no cycles): PRM800K
# label steps are re-encoded once per record, the importer's largest cost after parsing.
_json_encode = json.JSONEncoder(check_circular=False).encode

Row = TypeVar("Row")
Progress = Callable[[int], object]  # e.g. tqdm.update, called with bytes read


@dataclass
class ImportReport:
    source: str
    lines: int = 0  # non-blank lines read
    imported: int = 0  # valid lines (written, or already present)
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    errors: list[LineError] = field(default_factory=list)
    # Problems with new solutions or a changed ground truth: the ones grading should visit.
    problem_ids: set[int] = field(default_factory=set)

    def count(self, counter: dict[str, int], name: str, n: int) -> None:
        if n:
            counter[name] = counter.get(name, 0) + n

    def error_lines(self) -> list[str]:
        return [error.format(self.source) for error in sorted(self.errors)]

    def summary(self) -> str:
        def fmt(counter: dict[str, int]) -> str:
            return ", ".join(f"{n} {name}" for name, n in counter.items()) or "nothing"

        text = f"{self.source}: {self.imported} of {self.lines} lines valid"
        text += f"; created {fmt(self.created)}"
        if self.updated:
            text += f"; updated {fmt(self.updated)}"
        if self.errors:
            text += f"; {len(self.errors)} invalid lines skipped"
        return text


class ImportFailed(Exception):
    """Some lines were invalid and ``skip_invalid`` was off: nothing was imported."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        super().__init__(
            f"{len(report.errors)} invalid line(s) in {report.source}; nothing was imported "
            "(use --skip-invalid to import the valid lines)"
        )


@dataclass
class _ParsedBatch(Generic[Row]):
    rows: list[tuple[int, Row]]
    errors: list[LineError]
    lines: int


def _parse_batches(
    stream: IO[bytes],
    parse: Callable[[dict[str, Any]], Row],
    batch_size: int,
    progress: Progress | None,
) -> Iterator[_ParsedBatch[Row]]:
    batch: _ParsedBatch[Row] = _ParsedBatch([], [], 0)
    for number, record in jsonl_records(stream, progress=progress):
        batch.lines += 1
        if isinstance(record, LineError):
            batch.errors.append(record)
            continue
        try:
            batch.rows.append((number, parse(record)))
        except LineInvalid as exc:
            batch.errors.append(LineError(number, exc.field, exc.message))
            continue
        if len(batch.rows) >= batch_size:
            yield batch
            batch = _ParsedBatch([], [], 0)
    if batch.lines:
        yield batch


_DONE = object()


def _read_ahead(batches: Iterator[_ParsedBatch[Row]]) -> Iterator[_ParsedBatch[Row]]:
    """Parse the next batches in a thread while this one is written.

    Parsing is pure Python and needs no database; the writer mostly waits on PostgreSQL
    (which releases the GIL), so the two overlap. At most two parsed batches wait in memory.
    """
    ready: queue.Queue[Any] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches:
                if not put(batch):
                    return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(exc)

    thread = threading.Thread(target=produce, name="jsonl-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the writer failed or finished: let the reader go
        # Not forever: a reader blocked on a silent stdin stops at its next batch.
        thread.join(timeout=5)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while importing. Parsed JSON holds no reference
    cycles, so refcounting frees every batch; but each batch's ~10^5 containers outlive a few
    young collections and the collector keeps re-walking them in the older generations: a
    quarter of the importer's CPU on PRM800K records. Process-wide, so restored at once."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _import(
    *,
    stream: IO[bytes],
    source: str,
    skip_invalid: bool,
    progress: Progress | None,
    batch_size: int,
    parse: Callable[[dict[str, Any]], Row],
    write: Callable[[list[tuple[int, Row]], ImportReport, bool], None],
) -> ImportReport:
    report = ImportReport(source=source)
    with _collector_paused(), transaction.atomic():
        for batch in _read_ahead(_parse_batches(stream, parse, batch_size, progress)):
            report.lines += batch.lines
            report.errors.extend(batch.errors)
            if batch.rows:
                # Once the import is bound to fail, only validate: writes would be rolled back.
                write(batch.rows, report, bool(report.errors) and not skip_invalid)
        if report.errors and not skip_invalid:
            raise ImportFailed(report)  # rolls the transaction back
    return report


# --- MATH problems ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProblemRow:
    unique_id: str
    problem: str
    solution: str
    answer: str
    subject: str
    level: int | None


_PROBLEM_FIELDS = ("problem", "solution", "answer", "subject", "level")


def _parse_level(value: Any) -> int | None:
    # MATH's own files say "Level 3"; the PRM800K splits say 3. "Level ?" occurs in MATH.
    if value is None or value == "Level ?":
        return None
    if isinstance(value, str) and value.startswith("Level "):
        value = value.removeprefix("Level ")
        if value.isdigit():
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise LineInvalid("level", f"must be an integer level like 3, got {value!r}")
    return value


def _parse_problem(record: dict[str, Any]) -> ProblemRow:
    unique_id = req_str(record, "unique_id", nonempty=True)
    if len(unique_id) > 255:
        raise LineInvalid("unique_id", "must be at most 255 characters")
    return ProblemRow(
        unique_id=unique_id,
        problem=req_str(record, "problem", nonempty=True),
        solution=opt_str(record, "solution"),
        answer=req_str(record, "answer"),
        subject=opt_str(record, "subject", max_length=100),
        level=_parse_level(record.get("level")),
    )


def _write_problems(
    batch: list[tuple[int, ProblemRow]],
    report: ImportReport,
    validate_only: bool,
    *,
    first_lines: dict[str, int],
) -> None:
    # A unique_id twice in one file is an error (which line should win?), named at the later line.
    rows: dict[str, ProblemRow] = {}
    for number, row in batch:
        first = first_lines.setdefault(row.unique_id, number)
        if first != number:
            report.errors.append(
                LineError(number, "unique_id", f"{row.unique_id!r} already appears on line {first}")
            )
            continue
        rows[row.unique_id] = row
    report.imported += len(rows)
    if validate_only:
        return
    existing = {p.unique_id: p for p in Problem.objects.filter(unique_id__in=list(rows))}
    to_create: list[Problem] = []
    to_update: list[Problem] = []
    answer_changed: list[int] = []
    for unique_id, row in rows.items():
        problem = existing.get(unique_id)
        if problem is None:
            to_create.append(
                Problem(
                    unique_id=unique_id,
                    problem_hash=text_sha256(row.problem),
                    **{name: getattr(row, name) for name in _PROBLEM_FIELDS},
                )
            )
            continue
        changed = [name for name in _PROBLEM_FIELDS if getattr(problem, name) != getattr(row, name)]
        if not changed:
            continue
        for name in changed:
            setattr(problem, name, getattr(row, name))
        problem.problem_hash = text_sha256(row.problem)
        to_update.append(problem)
        if "answer" in changed:
            answer_changed.append(problem.pk)
    Problem.objects.bulk_create(to_create)
    Problem.objects.bulk_update(to_update, [*_PROBLEM_FIELDS, "problem_hash"])
    # A new ground truth makes cached grades wrong: forget them so grading runs again.
    problem_grades_reset(problem_ids=answer_changed)
    report.problem_ids.update(answer_changed)
    report.count(report.created, "problems", len(to_create))
    report.count(report.updated, "problems", len(to_update))


def problems_import(
    *,
    stream: IO[bytes],
    source: str,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportReport:
    """Upsert MATH-format problems (``problem, solution, answer, subject, level, unique_id``)
    by ``unique_id``: new ids are created, changed content is updated, and a changed answer
    resets the grades of that problem's candidates."""
    return _import(
        stream=stream,
        source=source,
        skip_invalid=skip_invalid,
        progress=progress,
        batch_size=batch_size,
        parse=_parse_problem,
        # Every unique_id of the file with its first line: 12.5K problems in MATH, small.
        write=functools.partial(_write_problems, first_lines={}),
    )


# --- candidate solutions ---------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateRow:
    unique_id: str | None
    problem_hash: str | None  # when the line names its problem by text
    steps: list[str]
    answer: str
    generator: str


def solution_text_split(text: str) -> list[str]:
    """Steps of a newline-separated solution: one per non-blank line, except that the
    ``# Answer`` line and everything after it form the last step, PRM800K's shape."""
    lines = [line for line in text.split("\n") if line.strip()]
    for i, line in enumerate(lines):
        if line.strip() == ANSWER_MARKER:
            tail = "\n".join(lines[i + 1 :]).strip()
            return [*lines[:i], f"{ANSWER_MARKER}\n\n{tail}" if tail else ANSWER_MARKER]
    return lines


def _parse_candidate(record: dict[str, Any]) -> CandidateRow:
    unique_id: str | None = None
    problem_hash: str | None = None
    if record.get("unique_id") is not None:
        unique_id = req_str(record, "unique_id", nonempty=True)
    elif record.get("problem") is not None:
        problem_hash = text_sha256(req_str(record, "problem", nonempty=True))
    else:
        raise LineInvalid("unique_id", "is required (or give the problem text as 'problem')")
    if "steps" in record and "solution" in record:
        raise LineInvalid("steps", "give either 'steps' or 'solution', not both")
    if "steps" in record:
        steps = str_list(record["steps"], "steps")
        for i, step in enumerate(steps):
            if not step.strip():
                raise LineInvalid(f"steps[{i}]", "must not be blank")
    elif "solution" in record:
        steps = solution_text_split(req_str(record, "solution"))
        if not steps:
            raise LineInvalid("solution", "has no non-blank lines")
    else:
        raise LineInvalid("steps", "is required (or give the solution text as 'solution')")
    if record.get("answer") is not None:
        answer = req_str(record, "answer").strip()
    else:
        answer = answer_extract(steps)
    return CandidateRow(
        unique_id=unique_id,
        problem_hash=problem_hash,
        steps=steps,
        answer=answer,
        generator=opt_str(record, "generator", max_length=100),
    )


class _CandidateWriter:
    """Writes candidate batches; remembers problem ids across batches (bounded)."""

    def __init__(self, source_label: str) -> None:
        self.source_label = source_label
        self.by_unique_id: dict[str, int] = {}
        self.by_hash: dict[str, int] = {}

    def _resolve(self, rows: list[CandidateRow]) -> None:
        if len(self.by_unique_id) + len(self.by_hash) > _PROBLEM_CACHE_LIMIT:
            self.by_unique_id.clear()
            self.by_hash.clear()
        ids = {r.unique_id for r in rows if r.unique_id and r.unique_id not in self.by_unique_id}
        hashes = {
            r.problem_hash for r in rows if r.problem_hash and r.problem_hash not in self.by_hash
        }
        if ids:
            self.by_unique_id.update(
                Problem.objects.filter(unique_id__in=ids).values_list("unique_id", "id")
            )
        if hashes:
            # Several problems may share a text (e.g. across splits): take the oldest.
            for problem_hash, pk in (
                Problem.objects.filter(problem_hash__in=hashes)
                .order_by("-id")
                .values_list("problem_hash", "id")
            ):
                self.by_hash[problem_hash] = pk

    def __call__(
        self, batch: list[tuple[int, CandidateRow]], report: ImportReport, validate_only: bool
    ) -> None:
        self._resolve([row for _, row in batch])
        new: dict[tuple[int, str], tuple[CandidateRow, str]] = {}
        for number, row in batch:
            if row.unique_id is not None:
                problem_id = self.by_unique_id.get(row.unique_id)
                if problem_id is None:
                    report.errors.append(
                        LineError(
                            number, "unique_id", f"no problem with unique_id {row.unique_id!r}"
                        )
                    )
                    continue
            else:
                assert row.problem_hash is not None
                problem_id = self.by_hash.get(row.problem_hash)
                if problem_id is None:
                    report.errors.append(
                        LineError(number, "problem", "matches no imported problem's text")
                    )
                    continue
            report.imported += 1
            text_hash = text_sha256("\n".join(row.steps))
            new.setdefault((problem_id, text_hash), (row, text_hash))
        if not new or validate_only:
            return
        if connection.vendor == "postgresql":
            created = _solutions_copy(new, source=self.source_label)
        else:
            created = _solutions_insert(new, source=self.source_label)
        report.problem_ids.update(problem_id for problem_id, _ in new)
        report.count(report.created, "solutions", created)


_NewSolutions = dict[tuple[int, str], tuple[CandidateRow, str]]


def _solutions_insert(new: _NewSolutions, *, source: str) -> int:
    existing = set(
        Solution.objects.filter(
            problem_id__in={p for p, _ in new}, text_hash__in={h for _, h in new}
        ).values_list("problem_id", "text_hash")
    )
    objs = [
        Solution(
            problem_id=problem_id,
            steps=row.steps,
            answer=row.answer,
            text_hash=text_hash,
            generator=row.generator,
            source=source,
        )
        for (problem_id, text_hash), (row, _) in new.items()
        if (problem_id, text_hash) not in existing
    ]
    # Another import may be adding the same candidate right now: theirs wins.
    Solution.objects.bulk_create(objs, batch_size=1000, ignore_conflicts=True)
    return len(objs)


def _solutions_copy(new: _NewSolutions, *, source: str) -> int:
    """PostgreSQL: COPY the batch into a temporary table, then one INSERT … ON CONFLICT DO
    NOTHING. Several times faster than a multi-row INSERT and counts exactly what it added."""
    table = Solution._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS stepwise_solution_import ("
            " problem_id bigint, steps jsonb, answer text, text_hash varchar(64),"
            " generator varchar(100)) ON COMMIT DROP"
        )
        cursor.execute("TRUNCATE stepwise_solution_import")
        raw = cursor.cursor  # the psycopg cursor underneath Django's wrapper
        with raw.copy(
            "COPY stepwise_solution_import (problem_id, steps, answer, text_hash, generator)"
            " FROM STDIN"
        ) as copy:
            for (problem_id, text_hash), (row, _) in new.items():
                copy.write_row(
                    (problem_id, json.dumps(row.steps), row.answer, text_hash, row.generator)
                )
        cursor.execute(
            f"INSERT INTO {table} (problem_id, steps, answer, text_hash, generator, source,"
            " grade, created_at)"
            " SELECT problem_id, steps, answer, text_hash, generator, %s, %s, now()"
            " FROM stepwise_solution_import"
            " ON CONFLICT (problem_id, text_hash) DO NOTHING",
            [source, Grade.UNGRADED],
        )
        return cursor.rowcount


def candidates_import(
    *,
    stream: IO[bytes],
    source: str,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportReport:
    """Import candidate solutions, deduplicated on (problem, sha256 of the joined steps).

    A line is ``{"unique_id" | "problem", "steps": [...] | "solution": "...", "answer"?,
    "generator"?}``; ``solution`` is split into one step per non-blank line. Without
    ``answer`` the final answer is the text after ``# Answer`` in the last step.
    """
    return _import(
        stream=stream,
        source=source,
        skip_invalid=skip_invalid,
        progress=progress,
        batch_size=batch_size,
        parse=_parse_candidate,
        write=_CandidateWriter("import"),
    )


# --- PRM800K label records -------------------------------------------------------------------

_FINISH_REASONS = frozenset(FinishReason.values)  # .values builds a new list on each call
_QUESTION_NULLABLE_STRINGS = ("ground_truth_answer", "ground_truth_solution")


@dataclass(frozen=True)
class Prm800kRow:
    labeler: uuid.UUID
    created_at: datetime
    generation: int | None
    is_quality_control: bool
    is_screening: bool
    question: dict[str, Any]
    problem_hash: str
    steps: list[str]  # the candidate solution
    answer: str
    text_hash: str
    label_steps: list[Any]
    ratings: list[int | None]
    finish_reason: str
    total_time_ms: int
    label_keys: list[str]
    # JSON of steps, label_steps and ratings, encoded while parsing: on the read-ahead thread,
    # while the writer waits on PostgreSQL, rather than on the writer's critical path.
    encoded: tuple[str, str, str]

    @property
    def kind(self) -> str:
        if self.is_screening:
            return TaskKind.SCREENING
        if self.is_quality_control:
            return TaskKind.QUALITY_CONTROL
        return TaskKind.NORMAL

    @property
    def queued_score(self) -> float | None:
        return self.question.get("pre_generated_verifier_score")


def _req_bool(record: dict[str, Any], key: str) -> bool:
    value = record.get(key)
    if not isinstance(value, bool):
        raise LineInvalid(key, f"must be true or false, got {type_name(value)}")
    return value


def _parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise LineInvalid("timestamp", f"must be an ISO-8601 string, got {type_name(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise LineInvalid("timestamp", f"{value!r} is not an ISO-8601 datetime") from None
    # PRM800K's timestamps are naive UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _parse_question(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LineInvalid("question", f"must be an object, got {type_name(value)}")
    req_str(value, "problem", prefix="question.", nonempty=True)
    if "ground_truth_answer" not in value:
        raise LineInvalid("question.ground_truth_answer", "is required (a string or null)")
    # The release's initial-screening records have null ground truths (answer and solution).
    for key in _QUESTION_NULLABLE_STRINGS:
        if value.get(key) is not None and not isinstance(value[key], str):
            raise LineInvalid(
                f"question.{key}", f"must be a string or null, got {type_name(value[key])}"
            )
    answer = value.get("pre_generated_answer")
    if "pre_generated_answer" in value and not isinstance(answer, str):
        raise LineInvalid(
            "question.pre_generated_answer", f"must be a string, got {type_name(answer)}"
        )
    if "pre_generated_steps" in value:
        str_list(value["pre_generated_steps"], "question.pre_generated_steps")
    score = value.get("pre_generated_verifier_score")
    if score is not None and (
        isinstance(score, bool)
        or not isinstance(score, int | float)
        or not math.isfinite(score)
        or not 0.0 <= score <= 1.0
    ):
        raise LineInvalid(
            "question.pre_generated_verifier_score", f"must be in [0, 1], got {score!r}"
        )
    return value


def _parse_prm800k(record: dict[str, Any]) -> Prm800kRow:
    labeler_text = req_str(record, "labeler", nonempty=True)
    try:
        labeler = uuid.UUID(labeler_text)
    except ValueError:
        raise LineInvalid("labeler", f"{labeler_text!r} is not a UUID") from None
    created_at = _parse_timestamp(record.get("timestamp"))
    generation = record.get("generation")
    if generation is not None and (isinstance(generation, bool) or not isinstance(generation, int)):
        raise LineInvalid("generation", f"must be an integer or null, got {type_name(generation)}")
    is_qc = _req_bool(record, "is_quality_control_question")
    is_screening = _req_bool(record, "is_initial_screening_question")
    question = _parse_question(record.get("question"))
    label = record.get("label")
    if not isinstance(label, dict):
        raise LineInvalid("label", f"must be an object, got {type_name(label)}")
    label_steps = label_steps_check(label.get("steps"))
    total_time = label.get("total_time")
    if (
        isinstance(total_time, bool)
        or not isinstance(total_time, int)
        or not 0 <= total_time <= _MAX_TOTAL_TIME_MS
    ):
        raise LineInvalid(
            "label.total_time", f"must be a non-negative integer (ms), got {total_time!r}"
        )
    finish_reason = label.get("finish_reason")
    if finish_reason not in _FINISH_REASONS:
        raise LineInvalid(
            "label.finish_reason",
            f"must be one of {', '.join(FinishReason.values)}, got {finish_reason!r}",
        )

    pre_generated = question.get("pre_generated_steps")
    trajectory = chosen_trajectory(label_steps, own_steps=pre_generated)
    ratings: list[int | None] = [step.rating for step in trajectory]
    ratings += [None] * (len(label_steps) - len(ratings))
    if pre_generated is not None:
        steps = list(pre_generated)
        answer = question.get("pre_generated_answer") or answer_extract(steps)
    else:
        steps = [step.text for step in trajectory]
        answer = answer_extract(steps)
    return Prm800kRow(
        labeler=labeler,
        created_at=created_at,
        generation=generation,
        is_quality_control=is_qc,
        is_screening=is_screening,
        question=question,
        problem_hash=text_sha256(question["problem"]),
        steps=steps,
        answer=answer,
        text_hash=text_sha256("\n".join(steps)),
        label_steps=label_steps,
        ratings=ratings,
        finish_reason=finish_reason,
        total_time_ms=total_time,
        label_keys=list(label),
        encoded=(_json_encode(steps), _json_encode(label_steps), _json_encode(ratings)),
    )


_TaskKey = tuple[int, str, int | None]


def _write_prm800k(
    batch: list[tuple[int, Prm800kRow]], report: ImportReport, validate_only: bool
) -> None:
    report.imported += len(batch)
    if validate_only:
        return
    rows = [row for _, row in batch]
    if connection.vendor == "postgresql":
        _write_prm800k_pg(rows, report)
    else:
        _write_prm800k_orm(rows, report)


def _write_prm800k_orm(rows: list[Prm800kRow], report: ImportReport) -> None:
    """Any backend (SQLite): the ORM, a few queries per table per batch."""

    # Problems, matched by the hash of their text.
    hashes = {row.problem_hash for row in rows}
    problems = _problems_by_hash(hashes)
    missing: dict[str, Prm800kRow] = {}
    for row in rows:
        if row.problem_hash not in problems:
            known = missing.get(row.problem_hash)
            # A screening record's null ground truth must not hide another record's answer.
            if known is None or known.question["ground_truth_answer"] is None:
                missing[row.problem_hash] = row
    if missing:
        Problem.objects.bulk_create(
            [
                Problem(
                    unique_id=f"prm800k/{problem_hash[:16]}",
                    problem=row.question["problem"],
                    problem_hash=problem_hash,
                    answer=row.question["ground_truth_answer"] or "",
                    solution=row.question.get("ground_truth_solution") or "",
                )
                for problem_hash, row in missing.items()
            ]
        )
        report.count(report.created, "problems", len(missing))
        problems = _problems_by_hash(hashes)

    # Solutions, deduplicated on (problem, text hash).
    def solution_key(row: Prm800kRow) -> tuple[int, str]:
        return problems[row.problem_hash]["id"], row.text_hash

    solutions = _solutions_by_key({solution_key(row) for row in rows})
    new_solutions: dict[tuple[int, str], Prm800kRow] = {}
    for row in rows:
        if solution_key(row) not in solutions:
            new_solutions.setdefault(solution_key(row), row)
    if new_solutions:
        Solution.objects.bulk_create(
            [
                Solution(
                    problem_id=problem_id,
                    steps=row.steps,
                    answer=row.answer,
                    text_hash=text_hash,
                    generator="prm800k",
                    source="prm800k",
                )
                for (problem_id, text_hash), row in new_solutions.items()
            ]
        )
        report.count(report.created, "solutions", len(new_solutions))
        report.problem_ids.update(problem_id for problem_id, _ in new_solutions)
        solutions = _solutions_by_key({solution_key(row) for row in rows})

    # Tasks, one per (solution, kind, generation); a null generation is matched in Python
    # because NULLs never conflict in a unique constraint.
    def task_key(row: Prm800kRow) -> _TaskKey:
        return solutions[solution_key(row)]["id"], row.kind, row.generation

    solution_ids = {s["id"] for s in solutions.values()}
    tasks = _tasks_by_key(solution_ids)
    new_tasks: dict[_TaskKey, Prm800kRow] = {}
    for row in rows:
        if task_key(row) not in tasks:
            new_tasks.setdefault(task_key(row), row)
    if new_tasks:
        Task.objects.bulk_create(
            [
                Task(
                    solution_id=solution_id,
                    kind=kind,
                    generation=generation,
                    queued_score=row.queued_score,
                    priority=row.queued_score or 0.0,
                    required_labels=1,
                    label_count=0,
                    queued_by=QueuedBy.IMPORT,
                )
                for (solution_id, kind, generation), row in new_tasks.items()
            ]
        )
        report.count(report.created, "tasks", len(new_tasks))
        tasks = _tasks_by_key(solution_ids)

    # Labels, unique per (task, labeler): a re-imported record is skipped.
    task_ids = {tasks[task_key(row)]["id"] for row in rows}
    seen = set(Label.objects.filter(task_id__in=task_ids).values_list("task_id", "labeler"))
    annotators = dict(
        AnnotatorProfile.objects.filter(labeler__in={row.labeler for row in rows}).values_list(
            "labeler", "user_id"
        )
    )
    labels: list[Label] = []
    for row in rows:
        task = tasks[task_key(row)]
        if (task["id"], row.labeler) in seen:
            continue
        seen.add((task["id"], row.labeler))
        problem = problems[row.problem_hash]
        solution = solutions[solution_key(row)]
        labels.append(
            Label(
                task_id=task["id"],
                labeler=row.labeler,
                annotator_id=annotators.get(row.labeler),
                steps=row.label_steps,
                ratings=row.ratings,
                finish_reason=row.finish_reason,
                total_time_ms=row.total_time_ms,
                created_at=row.created_at,
                record_extras=_record_extras(row, problem, solution, task),
            )
        )
    if not labels:
        return
    Label.objects.bulk_create(labels)
    report.count(report.created, "labels", len(labels))
    # The queue's counters must agree with the labels (and the overlap check must hold).
    label_total = Coalesce(
        Subquery(
            Label.objects.filter(task_id=OuterRef("pk"))
            .order_by()
            .values("task_id")
            .annotate(n=Count("id"))
            .values("n")
        ),
        0,
    )
    Task.objects.filter(id__in={label.task_id for label in labels}).update(
        label_count=label_total, required_labels=Greatest("required_labels", label_total)
    )


_LABEL_COPY_FIELDS = (
    "task_id",
    "annotator_id",
    "labeler",
    "steps",
    "ratings",
    "finish_reason",
    "finish_note",
    "total_time_ms",
    "created_at",
    "is_gold",
    "record_extras",
)


# PostgreSQL: the whole batch in a few set-based statements. Each record's derived values are
# computed once in Python while parsing (hashes, ratings, kind, JSON); the batch is COPYed into
# a temporary table from which problems, solutions and tasks are created and their ids looked
# up, and the server says which stored values equal the record's (for record_extras'
# overrides). The labels, the bulk of the bytes, then go straight into their table by COPY.
_PRM800K_BATCH = "stepwise_prm800k_batch"
_PRM800K_IDS = "stepwise_prm800k_ids"
_PRM800K_BATCH_COLUMNS = (
    "n",
    "problem_hash",
    "problem",
    "gt_answer",
    "gt_solution",
    "text_hash",
    "steps",
    "answer",
    "pg_answer",
    "kind",
    "generation",
    "queued_score",
    "labeler",
)
# The question keys whose value is stored on Problem/Solution/Task, in the order of the
# equality flags that the "resolved" statement returns (an array after task and annotator).
_STORED_QUESTION_KEYS = (
    "problem",
    "ground_truth_answer",
    "ground_truth_solution",
    "pre_generated_steps",
    "pre_generated_answer",
    "pre_generated_verifier_score",
)


@functools.cache
def _prm800k_sql() -> dict[str, str]:
    b, ids = _PRM800K_BATCH, _PRM800K_IDS
    problem, solution, task = Problem._meta.db_table, Solution._meta.db_table, Task._meta.db_table
    label, profile = Label._meta.db_table, AnnotatorProfile._meta.db_table
    return {
        # The resolved ids live in a narrow table of their own: updating them in the batch
        # table would rewrite every wide row (steps and all) three times per batch.
        "create": (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {b} (n integer, problem_hash varchar(64),"
            " problem text, gt_answer text, gt_solution text, text_hash varchar(64),"
            " steps jsonb, answer text, pg_answer text, kind varchar(20), generation integer,"
            " queued_score double precision, labeler uuid) ON COMMIT DROP;"
            f" CREATE TEMPORARY TABLE IF NOT EXISTS {ids} (n integer, problem_id bigint,"
            " solution_id bigint, task_id bigint) ON COMMIT DROP"
        ),
        "truncate": f"TRUNCATE {b}, {ids}",
        "copy": f"COPY {b} ({', '.join(_PRM800K_BATCH_COLUMNS)}) FROM STDIN",
        # Every lookup is a correlated subquery, i.e. an index probe per row, never NOT EXISTS
        # or a join: the planner's statistics do not see this transaction's rows, and with
        # them underestimated it sorted or hashed the whole task and label tables per batch.
        # The first record with a ground-truth answer gives a new problem its fields; if every
        # record of the batch has null (screening), the last one does, as the ORM path does.
        "problems": (
            f"INSERT INTO {problem} (unique_id, problem, problem_hash, solution, answer,"
            " subject, level, eval_reserved, created_at)"
            " SELECT DISTINCT ON (problem_hash) 'prm800k/' || left(problem_hash, 16), problem,"
            " problem_hash, coalesce(gt_solution, ''), coalesce(gt_answer, ''), '', NULL, NULL,"
            " now()"
            f" FROM {b} b WHERE (SELECT min(p.id) FROM {problem} p"
            " WHERE p.problem_hash = b.problem_hash) IS NULL"
            " ORDER BY problem_hash, gt_answer IS NULL,"
            " CASE WHEN gt_answer IS NULL THEN -n ELSE n END"
        ),
        # Several problems may share a text (e.g. across MATH splits): the oldest one wins.
        "problem_ids": (
            f"INSERT INTO {ids} (n, problem_id) SELECT n, (SELECT min(p.id) FROM {problem} p"
            f" WHERE p.problem_hash = b.problem_hash) FROM {b} b"
        ),
        "solutions": (
            f"INSERT INTO {solution} (problem_id, steps, answer, text_hash, generator, source,"
            " grade, created_at)"
            " SELECT DISTINCT ON (i.problem_id, b.text_hash) i.problem_id, b.steps, b.answer,"
            " b.text_hash, 'prm800k', 'prm800k', %s, now()"
            f" FROM {b} b JOIN {ids} i ON i.n = b.n ORDER BY i.problem_id, b.text_hash, b.n"
            " ON CONFLICT (problem_id, text_hash) DO NOTHING RETURNING problem_id"
        ),
        "solution_ids": (
            f"UPDATE {ids} i SET solution_id = (SELECT s.id FROM {solution} s"
            " WHERE s.problem_id = i.problem_id AND s.text_hash = b.text_hash)"
            f" FROM {b} b WHERE b.n = i.n"
        ),
        # NULL generations never conflict in the unique constraint: matched with IS NOT
        # DISTINCT FROM, and GROUP BY folds them within the batch. A new task has no labels
        # but this batch's, one per labeler: it is written with its final counts.
        "tasks": (
            f"INSERT INTO {task} (solution_id, kind, generation, priority, queued_score,"
            " selector_version_id, required_labels, label_count, lease_count, gold_label_id,"
            " queued_by, created_at)"
            " SELECT solution_id, kind, generation, coalesce(queued_score, 0), queued_score,"
            " NULL, greatest(1, labels), labels, 0, NULL, 'import', now() FROM"
            " (SELECT i.solution_id, b.kind, b.generation,"
            " (array_agg(b.queued_score ORDER BY b.n))[1] AS queued_score,"
            " count(DISTINCT b.labeler) AS labels"
            f" FROM {b} b JOIN {ids} i ON i.n = b.n WHERE (SELECT min(t.id) FROM {task} t"
            " WHERE t.solution_id = i.solution_id AND t.kind = b.kind"
            " AND t.generation IS NOT DISTINCT FROM b.generation) IS NULL"
            " GROUP BY i.solution_id, b.kind, b.generation) new RETURNING id"
        ),
        "task_ids": (
            f"UPDATE {ids} i SET task_id = (SELECT min(t.id) FROM {task} t"
            " WHERE t.solution_id = i.solution_id AND t.kind = b.kind"
            f" AND t.generation IS NOT DISTINCT FROM b.generation) FROM {b} b WHERE b.n = i.n"
        ),
        # Per record not labelled yet: its task, its labeler's account, and whether each
        # stored value equals the question's (same order as _STORED_QUESTION_KEYS).
        "resolved": (
            "SELECT b.n, i.task_id,"
            f" (SELECT a.user_id FROM {profile} a WHERE a.labeler = b.labeler),"
            " (SELECT ARRAY[p.problem = b.problem, p.answer IS NOT DISTINCT FROM b.gt_answer,"
            " p.solution IS NOT DISTINCT FROM b.gt_solution]"
            f" FROM {problem} p WHERE p.id = i.problem_id)"
            " || (SELECT ARRAY[s.steps = b.steps, s.answer IS NOT DISTINCT FROM b.pg_answer]"
            f" FROM {solution} s WHERE s.id = i.solution_id)"
            " || (SELECT ARRAY[t.queued_score IS NOT DISTINCT FROM b.queued_score]"
            f" FROM {task} t WHERE t.id = i.task_id)"
            f" FROM {b} b JOIN {ids} i ON i.n = b.n WHERE (SELECT l.id FROM {label} l"
            " WHERE l.task_id = i.task_id AND l.labeler = b.labeler) IS NULL"
            " ORDER BY b.n"
        ),
        "labels": f"COPY {label} ({', '.join(_LABEL_COPY_FIELDS)}) FROM STDIN",
        # The queue's counters must agree with the labels (and the overlap check must hold).
        "label_counts": (
            f"UPDATE {task} t SET label_count = c.n,"
            " required_labels = greatest(t.required_labels, c.n)"
            f" FROM (SELECT task_id, count(*) AS n FROM {label}"
            " WHERE task_id = ANY(%s) GROUP BY task_id) c WHERE t.id = c.task_id"
        ),
    }


def _write_prm800k_pg(rows: list[Prm800kRow], report: ImportReport) -> None:
    sql = _prm800k_sql()
    with connection.cursor() as cursor:
        raw = cursor.cursor  # the psycopg cursor underneath Django's wrapper
        # No JIT: per-row subplans over an unanalysed temporary table are estimated costly
        # enough to compile, which took longer than running them. Only for this batch.
        raw.execute("SELECT current_setting('jit'), set_config('jit', 'off', true)")
        jit = raw.fetchone()[0]  # type: ignore[index]
        raw.execute(sql["create"])
        raw.execute(sql["truncate"])
        with raw.copy(sql["copy"]) as copy:
            for n, row in enumerate(rows):
                question = row.question
                copy.write_row(
                    (
                        n,
                        row.problem_hash,
                        question["problem"],
                        question["ground_truth_answer"],
                        question.get("ground_truth_solution"),
                        row.text_hash,
                        row.encoded[0],
                        row.answer,
                        question.get("pre_generated_answer"),
                        row.kind,
                        row.generation,
                        question.get("pre_generated_verifier_score"),
                        row.labeler,
                    )
                )
        raw.execute(sql["problems"])
        report.count(report.created, "problems", raw.rowcount)
        raw.execute(sql["problem_ids"])
        raw.execute(sql["solutions"], [Grade.UNGRADED])
        created = raw.fetchall()
        report.count(report.created, "solutions", len(created))
        report.problem_ids.update(problem_id for (problem_id,) in created)
        raw.execute(sql["solution_ids"])
        raw.execute(sql["tasks"])
        new_tasks = {task_id for (task_id,) in raw.fetchall()}
        report.count(report.created, "tasks", len(new_tasks))
        raw.execute(sql["task_ids"])
        raw.execute(sql["resolved"])
        resolved = raw.fetchall()

        seen: set[tuple[int, uuid.UUID]] = set()
        task_ids: set[int] = set()
        with raw.copy(sql["labels"]) as copy:
            for n, task_id, annotator_id, equal in resolved:
                row = rows[n]
                if (task_id, row.labeler) in seen:  # the batch's first record wins
                    continue
                seen.add((task_id, row.labeler))
                task_ids.add(task_id)
                stored_equal = dict(zip(_STORED_QUESTION_KEYS, equal, strict=True))
                extras = {
                    "question_keys": list(row.question),
                    "question_overrides": {
                        key: value
                        for key, value in row.question.items()
                        if not stored_equal.get(key, False)
                    },
                    "is_quality_control_question": row.is_quality_control,
                    "is_initial_screening_question": row.is_screening,
                    "generation": row.generation,
                    "label_keys": row.label_keys,
                }
                copy.write_row(
                    (
                        task_id,
                        annotator_id,
                        row.labeler,
                        row.encoded[1],
                        row.encoded[2],
                        row.finish_reason,
                        "",
                        row.total_time_ms,
                        row.created_at,
                        False,
                        _json_encode(extras),
                    )
                )
        report.count(report.created, "labels", len(seen))
        if task_ids - new_tasks:  # tasks that had labels before this batch
            raw.execute(sql["label_counts"], [list(task_ids - new_tasks)])
        raw.execute("SELECT set_config('jit', %s, true)", [jit])


def _problems_by_hash(hashes: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    # Several problems may share a text (e.g. across MATH splits): the oldest one wins.
    for problem in (
        Problem.objects.filter(problem_hash__in=hashes)
        .order_by("-id")
        .values("id", "problem_hash", "problem", "answer", "solution")
    ):
        found[problem["problem_hash"]] = dict(problem)
    return found


def _solutions_by_key(keys: set[tuple[int, str]]) -> dict[tuple[int, str], dict[str, Any]]:
    qs = Solution.objects.filter(
        problem_id__in={p for p, _ in keys}, text_hash__in={h for _, h in keys}
    ).values("id", "problem_id", "text_hash", "steps", "answer")
    return {(s["problem_id"], s["text_hash"]): dict(s) for s in qs}


def _tasks_by_key(solution_ids: set[int]) -> dict[_TaskKey, dict[str, Any]]:
    qs = Task.objects.filter(solution_id__in=solution_ids).values(
        "id", "solution_id", "kind", "generation", "queued_score"
    )
    return {(t["solution_id"], t["kind"], t["generation"]): dict(t) for t in qs}


def _record_extras(
    row: Prm800kRow, problem: dict[str, Any], solution: dict[str, Any], task: dict[str, Any]
) -> dict[str, Any]:
    stored = {
        "problem": problem["problem"],
        "ground_truth_answer": problem["answer"],
        "ground_truth_solution": problem["solution"],
        "pre_generated_steps": solution["steps"],
        "pre_generated_answer": solution["answer"],
        "pre_generated_verifier_score": task["queued_score"],
    }
    overrides = {
        key: value
        for key, value in row.question.items()
        if key not in stored or stored[key] != value
    }
    return {
        "question_keys": list(row.question),
        "question_overrides": overrides,
        "is_quality_control_question": row.is_quality_control,
        "is_initial_screening_question": row.is_screening,
        "generation": row.generation,
        "label_keys": row.label_keys,
    }


def prm800k_import(
    *,
    stream: IO[bytes],
    source: str,
    skip_invalid: bool = False,
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> ImportReport:
    """Import PRM800K label records (phase 1 and phase 2). The storage contract, which the
    PRM800K export relies on to write each record back unchanged:

    Problem
        matched by ``problem_hash`` = sha256(``question.problem``); if absent, created with
        unique_id ``prm800k/<first 16 hex of the hash>``, answer = ``ground_truth_answer`` or
        "" (screening records have null; a record of the batch with an answer is preferred),
        solution = ``ground_truth_solution`` or "".
    Solution
        phase 2 (``pre_generated_steps`` present): steps = ``pre_generated_steps``, answer =
        ``pre_generated_answer``. Phase 1: steps = the chosen trajectory's texts
        (``labeling.prm800k.chosen_trajectory``); answer = the text after ``# Answer`` in the
        last step ("" if none).
        source = generator = "prm800k"; get-or-create on (problem, text_hash).
    Task
        kind = screening if ``is_initial_screening_question``, else quality_control if
        ``is_quality_control_question``, else normal; generation = the record's (may be null);
        queued_score = ``pre_generated_verifier_score`` (null when absent); priority =
        queued_score or 0; get-or-create on (solution, kind, generation). label_count = the
        number of labels on the task, required_labels = max(its value, label_count) (so a task
        this import creates has required_labels = label_count).
    Label
        labeler = UUID(``labeler``); annotator = the user whose AnnotatorProfile.labeler
        equals it, else null; steps = ``label.steps`` exactly as in the record (validated by
        ``labeling.prm800k.label_steps_check``); ratings = per step the rating of the chosen
        trajectory (``labeling.prm800k.step_ratings`` with ``pre_generated_steps`` as the
        candidate's own steps: at phase 2's error step the candidate's own -1, even when a
        human completion is there too), None past its end. finish_reason; total_time_ms =
        ``total_time``; created_at = ``timestamp`` (naive ISO) as UTC; record_extras = {
        "question_keys": keys of ``question`` in order, "question_overrides": the question
        values that differ from what Problem/Solution/Task give back (problem → Problem.problem,
        ground_truth_answer → Problem.answer, ground_truth_solution → Problem.solution,
        pre_generated_steps → Solution.steps, pre_generated_answer → Solution.answer,
        pre_generated_verifier_score → Task.queued_score; any other key always),
        "is_quality_control_question", "is_initial_screening_question", "generation": the
        record's, "label_keys": keys of ``label`` in order}. Unique per (task, labeler):
        re-importing a record is a no-op.
    """
    return _import(
        stream=stream,
        source=source,
        skip_invalid=skip_invalid,
        progress=progress,
        batch_size=batch_size,
        parse=_parse_prm800k,
        write=_write_prm800k,
    )
