"""The fill's selection statements (``queue_fill``): the 80/20 rule and the uncertainty rule,
each one set-based CREATE TEMP TABLE … AS SELECT that runs on SQLite (≥ 3.30) and PostgreSQL.

Both read a tiny literal table ``targets(k, b, w)``, one row per budget k a problem can have
left (0..K): b is the 80/20 part's budget (k for ``80_20``, round-half-up(k/2) for ``mixed``,
0 for ``uncertainty``) and w = round-half-up(b * wrong_fraction) its wrong-answer target. They
are computed in Python so both databases round identically (their ROUND/CAST rules differ).
"""

from __future__ import annotations

from labeling.models import Problem, SelectionRule, Solution, Task
from selector.models import SolutionScore

PICKED = "selector_fill_picked"  # per-transaction staging table of one fill's picks
PICKED_MORE = "selector_fill_picked_more"  # a mixed fill's uncertainty picks, then in PICKED


def wrong_target(k: int, wrong_fraction: float) -> int:
    """round(k * fraction), halves up (Python's round() would send 2.5 to 2)."""
    return int(k * wrong_fraction + 0.5)


def eighty_twenty_budget(k: int, rule: str) -> int:
    """How many of a problem's k picks the 80/20 part makes under ``rule``."""
    if rule == SelectionRule.EIGHTY_TWENTY:
        return k
    if rule == SelectionRule.MIXED:
        return (k + 1) // 2  # round-half-up(k / 2)
    return 0


def _targets(*, per_problem: int, wrong_fraction: float, rule: str) -> str:
    rows = []
    for k in range(0, per_problem + 1):
        b = eighty_twenty_budget(k, rule)
        rows.append(f"({k}, {b}, {wrong_target(b, wrong_fraction)})")
    return ", ".join(rows)


def _queued_and_candidates(extra_columns: str) -> str:
    """The two CTEs both rules start from: each problem's normal tasks in the generation, and
    the candidates (scored by the version, no task of any kind yet)."""
    solution = Solution._meta.db_table
    score = SolutionScore._meta.db_table
    task = Task._meta.db_table
    return f"""queued AS (
    SELECT s.problem_id, COUNT(*) AS n
    FROM {task} t JOIN {solution} s ON s.id = t.solution_id
    WHERE t.kind = %(kind)s AND t.generation = %(generation)s
    GROUP BY s.problem_id
),
cand AS (
    SELECT s.id, s.problem_id, sc.score,
           CASE WHEN s.grade = %(wrong_grade)s THEN 1 ELSE 0 END AS is_wrong,
           -- A score over a cut solution is a product over fewer steps: never "convincing".
           CASE WHEN sc.truncated_steps > 0 THEN 1 ELSE 0 END AS cut{extra_columns}
    FROM {solution} s
    JOIN {score} sc ON sc.solution_id = s.id AND sc.version_id = %(version_id)s
    WHERE NOT EXISTS (SELECT 1 FROM {task} t WHERE t.solution_id = s.id)
)"""


def eighty_twenty_sql(*, per_problem: int, wrong_fraction: float, rule: str) -> str:
    """The 80/20 part as one CREATE TEMP TABLE … AS SELECT into ``PICKED``: (id, problem_id,
    score, is_wrong, cut) per chosen candidate, each problem with budget b from ``targets``.

    The picks are staged rather than inserted straight into the task table because PostgreSQL
    plans a plain SELECT (and CREATE TABLE AS) in parallel but never a data-modifying
    statement, and because the report's counts then come from the staged rows instead of
    re-reading the task table. Params: ``wrong_max`` and ``shortlist`` are the w and b + w of
    the largest budget.
    """
    problem = Problem._meta.db_table
    targets = _targets(per_problem=per_problem, wrong_fraction=wrong_fraction, rule=rule)
    return f"""
CREATE TEMP TABLE {PICKED} AS
WITH targets(k, b, w) AS (VALUES {targets}),
{_queued_and_candidates("")},
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
    -- Whatever a problem's budget, only its top-w_max wrong answers and its first b + w_max
    -- candidates can be chosen: everything else is dropped before the per-problem budgets.
    SELECT r.id, r.problem_id, r.score, r.is_wrong, r.cut, r.pos, r.wrong_upto
    FROM ranked r
    WHERE (r.is_wrong = 1 AND r.wrong_upto <= %(wrong_max)s) OR r.pos <= %(shortlist)s
),
budgeted AS (
    SELECT l.id, l.problem_id, l.score, l.is_wrong, l.cut, tg.b,
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
    WHERE tg.b > 0
),
decided AS (
    SELECT b.id, b.problem_id, b.score, b.is_wrong, b.cut, b.pick_wrong, b.rest_rank,
           b.b - SUM(b.pick_wrong) OVER (PARTITION BY b.problem_id) AS rest_budget
    FROM budgeted b
    WHERE b.pick_wrong = 1 OR b.rest_rank <= b.b
)
SELECT d.id, d.problem_id, d.score, d.is_wrong, d.cut
FROM decided d
WHERE d.pick_wrong = 1 OR d.rest_rank <= d.rest_budget
"""


def uncertainty_sql(*, after_picked: bool) -> str:
    """The uncertainty part as one CREATE TEMP TABLE … AS SELECT (same columns as PICKED):
    per problem with budget k, its most uncertain candidates, ranked by (cut, uncertainty
    desc, id) — cut ones after every fully scored one as in the 80/20 rule, a null uncertainty
    (a score from before the ensemble) after every known one — taking k minus what the 80/20
    part already picked there (``after_picked``: a mixed fill, into ``PICKED_MORE``; otherwise
    the whole selection, into ``PICKED``).

    One sort of the pool per problem; the picks already in PICKED are removed from each
    problem's short list of its top K + max(b) (of which at most b were picked, so the short
    list always holds enough), not anti-joined against the whole pool. Param
    ``uncertain_shortlist``: K, or K + max(b) after the 80/20 part.
    """
    problem = Problem._meta.db_table
    into = PICKED_MORE if after_picked else PICKED
    if after_picked:
        remaining = f"""remaining AS (
    SELECT l.id, l.problem_id, l.score, l.is_wrong, l.cut,
           ROW_NUMBER() OVER (PARTITION BY l.problem_id ORDER BY l.pos) AS pos
    FROM shortlist l LEFT JOIN {PICKED} pk ON pk.id = l.id
    WHERE pk.id IS NULL
),
taken AS (SELECT problem_id, COUNT(*) AS n FROM {PICKED} GROUP BY problem_id)"""
        taken_join = "LEFT JOIN taken tk ON tk.problem_id = r.problem_id"
        taken_n = "COALESCE(tk.n, 0)"
    else:
        remaining = "remaining AS (SELECT * FROM shortlist)"
        taken_join = ""
        taken_n = "0"
    return f"""
CREATE TEMP TABLE {into} AS
WITH {_queued_and_candidates(", sc.uncertainty")},
ranked AS (
    SELECT c.id, c.problem_id, c.score, c.is_wrong, c.cut,
           ROW_NUMBER() OVER (PARTITION BY c.problem_id
                              ORDER BY c.cut, c.uncertainty DESC NULLS LAST, c.id) AS pos
    FROM cand c
),
shortlist AS (
    SELECT r.id, r.problem_id, r.score, r.is_wrong, r.cut, r.pos
    FROM ranked r
    WHERE r.pos <= %(uncertain_shortlist)s
),
{remaining}
SELECT r.id, r.problem_id, r.score, r.is_wrong, r.cut
FROM remaining r
-- Reserved (evaluation) problems are queued uniformly elsewhere, never by a selector.
JOIN {problem} p ON p.id = r.problem_id AND p.eval_reserved = %(reserved)s
LEFT JOIN queued q ON q.problem_id = r.problem_id
{taken_join}
-- A problem at (or past) its budget has none left: no position is that small.
WHERE r.pos <= %(per_problem)s - COALESCE(q.n, 0) - {taken_n}
"""
