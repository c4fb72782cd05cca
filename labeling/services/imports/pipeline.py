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
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Generic, TypeVar

from django.db import transaction

from labeling.read_ahead import read_ahead
from labeling.services.jsonl import LineError, LineInvalid, jsonl_records

DEFAULT_BATCH_SIZE = 2000

Row = TypeVar("Row")
Progress = Callable[[int], object]  # e.g. tqdm.update, called with bytes read
Write = Callable[[list[tuple[int, Row]], "ImportReport", bool], None]


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


def import_run(
    *,
    stream: IO[bytes],
    source: str,
    skip_invalid: bool,
    progress: Progress | None,
    batch_size: int,
    parse: Callable[[dict[str, Any]], Row],
    write: Write[Row],
) -> ImportReport:
    """Read, parse (on a read-ahead thread) and write ``stream`` in batches, in one
    transaction; ``ImportFailed`` rolls it back when a line was bad and ``skip_invalid`` is
    off. ``write(rows, report, validate_only)`` adds what it created to ``report``."""
    report = ImportReport(source=source)
    with _collector_paused(), transaction.atomic():
        batches = _parse_batches(stream, parse, batch_size, progress)
        for batch in read_ahead(batches, name="jsonl-read-ahead"):
            report.lines += batch.lines
            report.errors.extend(batch.errors)
            if batch.rows:
                # Once the import is bound to fail, only validate: writes would be rolled back.
                write(batch.rows, report, bool(report.errors) and not skip_invalid)
        if report.errors and not skip_invalid:
            raise ImportFailed(report)  # rolls the transaction back
    return report
