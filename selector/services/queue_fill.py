"""The paper's 80/20 rule as one set-based INSERT … SELECT, and the low-water top-up."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from jobs.models import Job
from labeling.models import Grade, Problem, QueuedBy, Solution, Task, TaskKind
from labeling.queries import FIRST_GENERATION, generation_latest
from selector.models import SelectorVersion, SolutionScore
from selector.services.common import SelectorError, progress_for
from selector.services.eval_set import eval_queue_fill, eval_set_reserve
from selector.services.versions import selector_active

logger = logging.getLogger(__name__)


@dataclass
class FillReport:
    generation: int
    version_id: int | None
    created: int = 0
    wrong: int = 0
    problems: int = 0
    truncated: int = 0  # queued although some steps went unscored (ranked last, priority 0)
    seconds: float = 0.0
    # Uniform tasks on the reserved evaluation problems, queued beside the 80/20 picks.
    eval_created: int = 0

    @property
    def wrong_share(self) -> float | None:
        return self.wrong / self.created if self.created else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "wrong_share": self.wrong_share}


def _wrong_target(k: int, wrong_fraction: float) -> int:
    """round(k * fraction), halves up (Python's round() would send 2.5 to 2)."""
    return int(k * wrong_fraction + 0.5)


PICKED = "selector_fill_picked"  # per-transaction staging table of one fill's picks


def _fill_sql(*, per_problem: int, wrong_fraction: float) -> str:
    """The whole 80/20 selection as one CREATE TEMP TABLE … AS SELECT (SQLite ≥ 3.25 and
    PostgreSQL) into ``PICKED``: (id, problem_id, score, is_wrong, cut) per chosen candidate.

    ``targets`` is a tiny literal table k → round-half-up(k * fraction), computed in Python so
    both databases round identically (their ROUND/CAST rules differ). The picks are staged
    rather than inserted straight into the task table because PostgreSQL plans a plain
    SELECT (and CREATE TABLE AS) in parallel but never a data-modifying statement, and because
    the report's counts then come from the staged rows instead of re-reading the task table.
    """
    solution = Solution._meta.db_table
    problem = Problem._meta.db_table
    score = SolutionScore._meta.db_table
    task = Task._meta.db_table
    targets = ", ".join(
        f"({k}, {_wrong_target(k, wrong_fraction)})" for k in range(0, per_problem + 1)
    )
    return f"""
CREATE TEMP TABLE {PICKED} AS
WITH targets(k, w) AS (VALUES {targets}),
queued AS (
    SELECT s.problem_id, COUNT(*) AS n
    FROM {task} t JOIN {solution} s ON s.id = t.solution_id
    WHERE t.kind = %(kind)s AND t.generation = %(generation)s
    GROUP BY s.problem_id
),
cand AS (
    SELECT s.id, s.problem_id, sc.score,
           CASE WHEN s.grade = %(wrong_grade)s THEN 1 ELSE 0 END AS is_wrong,
           -- A score over a cut solution is a product over fewer steps: never "convincing".
           CASE WHEN sc.truncated_steps > 0 THEN 1 ELSE 0 END AS cut
    FROM {solution} s
    JOIN {score} sc ON sc.solution_id = s.id AND sc.version_id = %(version_id)s
    WHERE NOT EXISTS (SELECT 1 FROM {task} t WHERE t.solution_id = s.id)
),
ranked AS (
    -- One sort per problem by (score desc, id), one pass over it: the position and the number
    -- of wrong answers up to here decide both parts of the rule (same window, so one node).
    SELECT c.id, c.problem_id, c.score, c.is_wrong, c.cut,
           COUNT(*) OVER w_upto AS pos,
           SUM(c.is_wrong) OVER w_upto AS wrong_upto
    FROM cand c
    WINDOW w_upto AS (PARTITION BY c.problem_id ORDER BY c.cut, c.score DESC, c.id
                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
shortlist AS (
    -- Whatever a problem's budget, only its top-w_max wrong answers and its first K + w_max
    -- candidates can be chosen: everything else is dropped before the per-problem budgets.
    SELECT r.id, r.problem_id, r.score, r.is_wrong, r.cut, r.pos, r.wrong_upto
    FROM ranked r
    WHERE (r.is_wrong = 1 AND r.wrong_upto <= %(wrong_max)s) OR r.pos <= %(shortlist)s
),
budgeted AS (
    SELECT l.id, l.problem_id, l.score, l.is_wrong, l.cut, tg.k,
           CASE WHEN l.is_wrong = 1 AND l.wrong_upto <= tg.w THEN 1 ELSE 0 END AS pick_wrong,
           -- rank among the candidates the wrong-answer part did not take
           l.pos - CASE WHEN l.wrong_upto < tg.w THEN l.wrong_upto ELSE tg.w END AS rest_rank
    FROM shortlist l
    -- Reserved (evaluation) problems are queued uniformly elsewhere, never by a selector.
    -- Whole problems: dropped after the per-problem ranking, from its short list rather than
    -- from every candidate (a problem lookup per candidate was an eighth of the statement).
    JOIN {problem} p ON p.id = l.problem_id AND p.eval_reserved = %(reserved)s
    LEFT JOIN queued q ON q.problem_id = l.problem_id
    JOIN targets tg ON tg.k = CASE WHEN %(per_problem)s - COALESCE(q.n, 0) > 0
                                   THEN %(per_problem)s - COALESCE(q.n, 0) ELSE 0 END
    WHERE tg.k > 0
),
decided AS (
    SELECT b.id, b.problem_id, b.score, b.is_wrong, b.cut, b.pick_wrong, b.rest_rank,
           b.k - SUM(b.pick_wrong) OVER (PARTITION BY b.problem_id) AS rest_budget
    FROM budgeted b
    WHERE b.pick_wrong = 1 OR b.rest_rank <= b.k
)
SELECT d.id, d.problem_id, d.score, d.is_wrong, d.cut
FROM decided d
WHERE d.pick_wrong = 1 OR d.rest_rank <= d.rest_budget
"""


def _fill_insert(select_sql: str, params: dict[str, Any]) -> tuple[int, int, int, int]:
    """Stage the picks, insert their tasks, and count them: (created, wrong, problems, cut)."""
    task = Task._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PICKED}")
        if connection.vendor == "postgresql":
            # Merge joins along the id indexes (solution, its tasks, its scores) instead of
            # hashing the whole pool twice: a third less CPU for the same rows (5.2 -> 3.3 s
            # of backend CPU at 3M candidates). No JIT: compiling the statement's ~60
            # expressions took longer than it saved. Only for this statement.
            cursor.execute(
                "SELECT current_setting('enable_hashjoin'), current_setting('jit'),"
                " set_config('enable_hashjoin', 'off', true), set_config('jit', 'off', true)"
            )
            hashjoin, jit, *_ = cursor.fetchone()
            cursor.execute(select_sql, params)
            cursor.execute(
                "SELECT set_config('enable_hashjoin', %s, true), set_config('jit', %s, true)",
                [hashjoin, jit],
            )
        else:
            cursor.execute(select_sql, params)
        cursor.execute(
            f"""
INSERT INTO {task} (solution_id, kind, generation, priority, queued_score, required_labels,
                    label_count, lease_count, gold_label_id, selector_version_id, queued_by,
                    created_at)
SELECT p.id, %(kind)s, %(generation)s, CASE WHEN p.cut = 1 THEN 0 ELSE p.score END, p.score,
       %(required_labels)s, 0, 0, NULL, %(version_id)s, %(queued_by)s, %(now)s
FROM {PICKED} p
ORDER BY p.id
""",
            params,
        )
        cursor.execute(
            f"SELECT COUNT(*), COALESCE(SUM(is_wrong), 0), COUNT(DISTINCT problem_id),"
            f" COALESCE(SUM(cut), 0) FROM {PICKED}"
        )
        created, wrong, problems, cut = cursor.fetchone()
        cursor.execute(f"DROP TABLE {PICKED}")
    return int(created), int(wrong), int(problems), int(cut)


def queue_fill(
    *,
    per_problem: int | None = None,
    wrong_fraction: float | None = None,
    generation: int | None = None,
    version: SelectorVersion | None = None,
    required_labels: int = 1,
    job: Job | None = None,
) -> FillReport:
    """Queue, per problem, the K candidates the paper's 80/20 rule picks (brief §6).

    Candidates are solutions that ``version`` (default: the active one) has scored and that have
    no task of any kind yet (so nothing labeled, queued, or used as a QC/screening item comes
    back). A problem's budget is K minus its normal tasks already in ``generation``; of that
    budget k, round(k * wrong_fraction) go to its highest-scoring candidates graded
    *incorrect*, the rest to the highest-scoring remaining candidates of any grade. Ungraded and
    ungradable answers are neither wrong nor right: they can only enter through the "rest"
    part. Too few wrong answers leave more room for the rest. Ties: score desc, then id asc.
    Candidates with unscored (truncated) steps rank after every fully scored one of their
    problem, get priority 0, and are counted in ``FillReport.truncated``.

    ``generation=None`` starts a new generation (the highest so far + 1). Tasks get
    ``priority = queued_score = score`` and ``selector_version = version``. Problems reserved
    for the evaluation set are skipped by the selection; the same call queues them uniformly
    (``eval_queue_fill``, counted in ``eval_created``). The selection is one set-based
    INSERT … SELECT.
    """
    k = settings.SELECTOR_PER_PROBLEM if per_problem is None else per_problem
    fraction = settings.SELECTOR_WRONG_FRACTION if wrong_fraction is None else wrong_fraction
    if not isinstance(k, int) or k < 0 or k > 1000:
        raise SelectorError(f"per_problem must be an integer in 0..1000, got {k!r}")
    if not 0.0 <= fraction <= 1.0:
        raise SelectorError(f"wrong_fraction must be within 0..1, got {fraction!r}")
    if required_labels < 1:
        raise SelectorError(f"required_labels must be at least 1, got {required_labels!r}")
    version = version or selector_active()
    if version is None:
        raise SelectorError("no active selector version: create or promote one first")
    started = time.perf_counter()
    eval_set_reserve()  # every problem's side is decided before the selection reads it
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Two fills at once would both see the same candidates as unqueued.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('stepwise.queue_fill'))")
                # The selection sorts every candidate once; keep that sort in memory.
                cursor.execute("SET LOCAL work_mem = '256MB'")
        if generation is None:
            latest = generation_latest()
            generation = FIRST_GENERATION if latest is None else latest + 1
        report = FillReport(generation=generation, version_id=version.pk)
        if k > 0:
            now = timezone.now()
            wrong_max = _wrong_target(k, fraction)
            params: dict[str, Any] = {
                "kind": TaskKind.NORMAL.value,
                "generation": generation,
                "wrong_grade": Grade.INCORRECT.value,
                "version_id": version.pk,
                "reserved": False,
                "wrong_max": wrong_max,
                "shortlist": k + wrong_max,
                "per_problem": k,
                "required_labels": required_labels,
                "queued_by": QueuedBy.SELECTOR.value,
                "now": connection.ops.adapt_datetimefield_value(now),
            }
            report.created, report.wrong, report.problems, report.truncated = _fill_insert(
                _fill_sql(per_problem=k, wrong_fraction=fraction), params
            )
            report.eval_created = eval_queue_fill(
                generation=generation, per_problem=k, required_labels=required_labels
            )["eval_created"]
    report.seconds = time.perf_counter() - started
    if job is not None:
        progress_for(job, None)(report.created, report.created)
    logger.info("queue_fill: %s", report.as_dict())
    return report


def queue_open_slots() -> int:
    """Open labeling slots across normal tasks (required minus done minus leased)."""
    open_tasks = Task.objects.filter(
        kind=TaskKind.NORMAL,
        required_labels__gt=F("label_count") + F("lease_count"),
    )
    slots = open_tasks.aggregate(n=Sum(F("required_labels") - F("label_count") - F("lease_count")))[
        "n"
    ]
    return int(slots or 0)


def queue_top_up() -> FillReport | None:
    """Low-water mark: refill when open slots drop below ``SELECTOR_LOW_WATER``.

    Fills the current generation first (respecting each problem's budget); if every problem is
    at budget there, it opens the next generation with the same selector so work never runs dry.

    Idempotent: the low-water check and the fill run in one transaction under a lock (an
    advisory lock on PostgreSQL, the IMMEDIATE transaction on SQLite). Two top-ups at once, say
    beat's run beside a retried one, fill once; without the lock the second would find the
    current generation at budget and open the next.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(hashtext('stepwise.queue_top_up'))")
        if queue_open_slots() >= settings.SELECTOR_LOW_WATER:
            return None
        if selector_active() is None:
            logger.info("queue_top_up: no active selector version")
            return None
        latest = generation_latest()
        report = queue_fill(generation=FIRST_GENERATION if latest is None else latest)
        if report.created + report.eval_created == 0 and latest is not None:
            report = queue_fill(generation=latest + 1)
        return report
