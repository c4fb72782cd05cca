"""Writing a batch of PRM800K records on PostgreSQL: COPY and a few set-based statements."""

from __future__ import annotations

import functools
import uuid

from django.db import connection

from labeling.models import AnnotatorProfile, Grade, Label, Problem, Solution, Task
from labeling.services.imports.pipeline import ImportReport
from labeling.services.imports.prm800k.records import Prm800kRow, json_encode, record_extras

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


def prm800k_write_postgres(rows: list[Prm800kRow], report: ImportReport) -> None:
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
                overrides = {
                    key: value
                    for key, value in row.question.items()
                    if not stored_equal.get(key, False)
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
                        json_encode(record_extras(row, overrides=overrides)),
                    )
                )
        report.count(report.created, "labels", len(seen))
        if task_ids - new_tasks:  # tasks that had labels before this batch
            raw.execute(sql["label_counts"], [list(task_ids - new_tasks)])
        raw.execute("SELECT set_config('jit', %s, true)", [jit])
