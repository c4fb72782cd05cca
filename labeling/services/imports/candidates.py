"""Candidate solutions: deduplicated per problem on the sha256 of their joined steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Any

from django.db import connection

from labeling.answers import ANSWER_MARKER, answer_extract
from labeling.models import Grade, Problem, Solution, text_sha256
from labeling.services.imports.pipeline import (
    DEFAULT_BATCH_SIZE,
    ImportReport,
    Progress,
    import_run,
)
from labeling.services.jsonl import LineError, LineInvalid, opt_str, req_str, str_list

_PROBLEM_CACHE_LIMIT = 100_000  # problem ids remembered across batches


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
    return import_run(
        stream=stream,
        source=source,
        skip_invalid=skip_invalid,
        progress=progress,
        batch_size=batch_size,
        parse=_parse_candidate,
        write=_CandidateWriter("import"),
    )
