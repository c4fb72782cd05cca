"""PRM800K label records: parsed in ``records``, written by ``postgres`` (COPY and set-based
statements) on PostgreSQL and by ``orm`` elsewhere."""

from __future__ import annotations

from typing import IO

from django.db import connection

from labeling.services.imports.pipeline import (
    DEFAULT_BATCH_SIZE,
    ImportReport,
    Progress,
    import_run,
)
from labeling.services.imports.prm800k.orm import prm800k_write_orm
from labeling.services.imports.prm800k.postgres import prm800k_write_postgres
from labeling.services.imports.prm800k.records import Prm800kRow, prm800k_parse


def _prm800k_write(
    batch: list[tuple[int, Prm800kRow]], report: ImportReport, validate_only: bool
) -> None:
    report.imported += len(batch)
    if validate_only:
        return
    rows = [row for _, row in batch]
    if connection.vendor == "postgresql":
        prm800k_write_postgres(rows, report)
    else:
        prm800k_write_orm(rows, report)


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
    return import_run(
        stream=stream,
        source=source,
        skip_invalid=skip_invalid,
        progress=progress,
        batch_size=batch_size,
        parse=prm800k_parse,
        write=_prm800k_write,
    )
