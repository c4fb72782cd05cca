"""MATH problems: upserted by ``unique_id``; a changed answer resets its candidates' grades."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import IO, Any

from labeling.models import Problem, text_sha256
from labeling.services.grading import problem_grades_reset
from labeling.services.imports.pipeline import (
    DEFAULT_BATCH_SIZE,
    ImportReport,
    Progress,
    import_run,
)
from labeling.services.jsonl import LineError, LineInvalid, opt_str, req_str


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
    return import_run(
        stream=stream,
        source=source,
        skip_invalid=skip_invalid,
        progress=progress,
        batch_size=batch_size,
        parse=_parse_problem,
        # Every unique_id of the file with its first line: 12.5K problems in MATH, small.
        write=functools.partial(_write_problems, first_lines={}),
    )
