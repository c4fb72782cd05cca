"""Queue filling by a selection rule (80/20, uncertainty, mixed) in set-based SQL
(``fill_sql``), and the low-water top-up."""

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
from labeling.models import Grade, QueuedBy, SelectionRule, Task, TaskKind
from labeling.queries import FIRST_GENERATION, generation_latest
from selector.models import SelectorVersion
from selector.services.common import SelectorError, progress_for
from selector.services.eval_set import eval_queue_fill, eval_set_reserve
from selector.services.fill_sql import (
    PICKED,
    PICKED_MORE,
    eighty_twenty_budget,
    eighty_twenty_sql,
    uncertainty_sql,
    wrong_target,
)
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
    # Uniform tasks on the reserved evaluation problems, queued beside the selector's picks.
    eval_created: int = 0
    rule: str = SelectionRule.EIGHTY_TWENTY.value  # the selection rule the tasks record

    @property
    def wrong_share(self) -> float | None:
        return self.wrong / self.created if self.created else None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "wrong_share": self.wrong_share}


def _select(cursor: Any, sql: str, params: dict[str, Any]) -> None:
    """Run one selection statement; on PostgreSQL under the planner settings below."""
    if connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return
    # Merge joins along the id indexes (solution, its tasks, its scores) instead of hashing
    # the whole pool twice: a third less CPU for the same rows (5.2 -> 3.3 s of backend CPU at
    # 3M candidates). No JIT: compiling the statement's ~60 expressions took longer than it
    # saved. Only for this statement.
    cursor.execute(
        "SELECT current_setting('enable_hashjoin'), current_setting('jit'),"
        " set_config('enable_hashjoin', 'off', true), set_config('jit', 'off', true)"
    )
    hashjoin, jit, *_ = cursor.fetchone()
    cursor.execute(sql, params)
    cursor.execute(
        "SELECT set_config('enable_hashjoin', %s, true), set_config('jit', %s, true)",
        [hashjoin, jit],
    )


def _fill_insert(
    *, rule: str, per_problem: int, wrong_fraction: float, params: dict[str, Any]
) -> tuple[int, int, int, int]:
    """Stage the picks (the 80/20 part, then the uncertainty part), insert their tasks, and
    count them: (created, wrong, problems, cut)."""
    task = Task._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {PICKED}")
        cursor.execute(f"DROP TABLE IF EXISTS {PICKED_MORE}")
        if rule != SelectionRule.UNCERTAINTY:
            _select(
                cursor,
                eighty_twenty_sql(
                    per_problem=per_problem, wrong_fraction=wrong_fraction, rule=rule
                ),
                params,
            )
        if rule == SelectionRule.UNCERTAINTY:
            _select(cursor, uncertainty_sql(after_picked=False), params)
        elif rule == SelectionRule.MIXED:
            _select(cursor, uncertainty_sql(after_picked=True), params)
            cursor.execute(f"INSERT INTO {PICKED} SELECT * FROM {PICKED_MORE}")
            cursor.execute(f"DROP TABLE {PICKED_MORE}")
        cursor.execute(
            f"""
INSERT INTO {task} (solution_id, kind, generation, priority, queued_score, required_labels,
                    label_count, lease_count, gold_label_id, selector_version_id, queued_by,
                    rule, created_at)
SELECT p.id, %(kind)s, %(generation)s, CASE WHEN p.cut = 1 THEN 0 ELSE p.score END, p.score,
       %(required_labels)s, 0, 0, NULL, %(version_id)s, %(queued_by)s, %(rule)s, %(now)s
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


RULES_NEEDING_ENSEMBLE = (SelectionRule.UNCERTAINTY.value, SelectionRule.MIXED.value)
# The rules a fill may pick by (``uniform`` is the evaluation set's draw, never a fill's).
FILL_RULES = (SelectionRule.EIGHTY_TWENTY.value, *RULES_NEEDING_ENSEMBLE)


def version_ensemble_missing(version: SelectorVersion) -> str | None:
    """Why ``version`` has no ensemble of step heads, as words after its name; None if it has."""
    if version.has_ensemble:
        return None
    if (version.training_summary or {}).get("init") == "import":
        return "has no ensemble (imported PRM)"
    if version.ensemble_heads == 1:
        return "has no ensemble (trained with a single step head)"
    return "has no ensemble of step heads"


def fill_rule_unavailable(*, rule: str, version: SelectorVersion) -> str | None:
    """Why ``version`` cannot fill by ``rule`` (None when it can). The uncertainty rules rank
    by the spread of an ensemble of step heads, which only a version trained here has."""
    missing = version_ensemble_missing(version)
    if rule not in RULES_NEEDING_ENSEMBLE or missing is None:
        return None
    return (
        f"selector version {version.name} {missing}; the {rule} rule needs a version trained"
        f" here with SELECTOR_ENSEMBLE_HEADS > 1; use 80_20"
    )


def fill_rule_resolve(rule: str | None) -> str:
    """The rule a fill uses: ``rule``, or ``SELECTOR_RULE`` when None; refuses any other."""
    rule = settings.SELECTOR_RULE if rule is None else rule
    if rule not in FILL_RULES:
        allowed = ", ".join(FILL_RULES)
        raise SelectorError(f"rule must be one of {allowed} (SELECTOR_RULE), got {rule!r}")
    return str(rule)


def queue_fill(
    *,
    per_problem: int | None = None,
    wrong_fraction: float | None = None,
    generation: int | None = None,
    version: SelectorVersion | None = None,
    required_labels: int = 1,
    rule: str | None = None,
    job: Job | None = None,
) -> FillReport:
    """Queue, per problem, the K candidates ``rule`` picks (default ``SELECTOR_RULE``).

    Candidates are solutions that ``version`` (default: the active one) has scored and that have
    no task of any kind yet (so nothing labeled, queued, or used as a QC/screening item comes
    back). A problem's budget is K minus its normal tasks already in ``generation``. Then:

    - ``80_20`` (the paper's rule, brief §6): of that budget k, round(k * wrong_fraction) go
      to its highest-scoring candidates graded *incorrect*, the rest to the highest-scoring
      remaining candidates of any grade. Ungraded and ungradable answers are neither wrong
      nor right: they can only enter through the "rest" part. Too few wrong answers leave
      more room for the rest. Ties: score desc, then id asc.
    - ``uncertainty``: the k candidates with the highest ``SolutionScore.uncertainty``, ties
      by id asc (a null uncertainty ranks after every known one).
    - ``mixed``: round-half-up(k/2) picks by the 80/20 rule (its wrong target from that
      budget), then the most uncertain of the rest up to k in all (so the uncertainty part
      also fills what the 80/20 part could not).

    Under every rule, candidates with unscored (truncated) steps rank after every fully scored
    one of their problem, get priority 0, and are counted in ``FillReport.truncated``. The
    uncertainty rules need a version with an ensemble (``fill_rule_unavailable``), else
    ``SelectorError``.

    ``generation=None`` starts a new generation (the highest so far + 1). Tasks get
    ``priority = queued_score = score`` (the serving order is the score's whatever the rule),
    ``selector_version = version`` and ``rule``. Problems reserved for the evaluation set are
    skipped by the selection; the same call queues them uniformly (``eval_queue_fill``, rule
    ``uniform``, counted in ``eval_created``). The selection is set-based SQL (``fill_sql``).
    """
    k = settings.SELECTOR_PER_PROBLEM if per_problem is None else per_problem
    fraction = settings.SELECTOR_WRONG_FRACTION if wrong_fraction is None else wrong_fraction
    rule = fill_rule_resolve(rule)
    if not isinstance(k, int) or k < 0 or k > 1000:
        raise SelectorError(f"per_problem must be an integer in 0..1000, got {k!r}")
    if not 0.0 <= fraction <= 1.0:
        raise SelectorError(f"wrong_fraction must be within 0..1, got {fraction!r}")
    if required_labels < 1:
        raise SelectorError(f"required_labels must be at least 1, got {required_labels!r}")
    version = version or selector_active()
    if version is None:
        raise SelectorError("no active selector version: create or promote one first")
    unavailable = fill_rule_unavailable(rule=rule, version=version)
    if unavailable:
        raise SelectorError(unavailable)
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
        report = FillReport(generation=generation, version_id=version.pk, rule=rule)
        if k > 0:
            now = timezone.now()
            b_max = eighty_twenty_budget(k, rule)
            wrong_max = wrong_target(b_max, fraction)
            params: dict[str, Any] = {
                "kind": TaskKind.NORMAL.value,
                "generation": generation,
                "wrong_grade": Grade.INCORRECT.value,
                "version_id": version.pk,
                "reserved": False,
                "wrong_max": wrong_max,
                "shortlist": b_max + wrong_max,
                "uncertain_shortlist": k + (b_max if rule == SelectionRule.MIXED else 0),
                "per_problem": k,
                "required_labels": required_labels,
                "queued_by": QueuedBy.SELECTOR.value,
                "rule": rule,
                "now": connection.ops.adapt_datetimefield_value(now),
            }
            report.created, report.wrong, report.problems, report.truncated = _fill_insert(
                rule=rule, per_problem=k, wrong_fraction=fraction, params=params
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
        active = selector_active()
        if active is None:
            logger.info("queue_top_up: no active selector version")
            return None
        rule = _top_up_rule(active)
        latest = generation_latest()
        report = queue_fill(generation=FIRST_GENERATION if latest is None else latest, rule=rule)
        if report.created + report.eval_created == 0 and latest is not None:
            report = queue_fill(generation=latest + 1, rule=rule)
        return report


def _top_up_rule(version: SelectorVersion) -> str:
    """``SELECTOR_RULE``, or 80_20 when the active version cannot fill by it: the beat's
    top-up must keep the queue from running dry, and its tasks record the rule truly used."""
    rule = fill_rule_resolve(None)
    unavailable = fill_rule_unavailable(rule=rule, version=version)
    if unavailable:
        logger.warning(
            "queue_top_up: SELECTOR_RULE=%s unavailable, using 80_20: %s", rule, unavailable
        )
        return SelectionRule.EIGHTY_TWENTY.value
    return rule
