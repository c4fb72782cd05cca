"""The frozen evaluation set: reserved problems, queued uniformly, snapshotted into versions.

A share of problems (``SELECTOR_EVAL_FRACTION``) is reserved once per problem from a hash of
its unique_id and ``SELECTOR_EVAL_SEED`` — the same problems the held-out split always used,
so existing metrics keep their meaning. A reserved problem's candidates are never picked by a
selector's rule (``queue_fill`` skips them); ``eval_queue_fill`` queues them by a seeded
uniform draw instead (``Task.queued_by`` and ``Task.rule`` "uniform"), so the evaluation labels
do not favour the version that chose them. ``eval_set_freeze`` snapshots the usable labels
(uniform tasks, reliable annotators) into an ``EvalSet`` row: metrics name that row, and two
versions' numbers compare only on the same one.
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from labeling.models import (
    FinishReason,
    Label,
    Problem,
    QueuedBy,
    SelectionRule,
    Solution,
    Task,
    TaskKind,
)
from labeling.queries import labels_from_reliable_annotators
from selector.models import EvalSet
from selector.services.common import SelectorError


def eval_set_reserve() -> int:
    """Decide ``eval_reserved`` for every problem not decided yet; returns how many were
    reserved. The decision depends only on (seed, unique_id), so it is the same whenever it is
    made, and it never changes afterwards (a later change of the fraction affects new problems
    only: the set stays frozen). PostgreSQL computes the same hash in one UPDATE."""
    from selector.ml.training import split_by_problem

    fraction, seed = settings.SELECTOR_EVAL_FRACTION, settings.SELECTOR_EVAL_SEED
    if connection.vendor == "postgresql":
        return _reserve_in_sql(fraction=fraction, seed=seed)
    undecided = dict(
        Problem.objects.filter(eval_reserved__isnull=True).values_list("unique_id", "id")
    )
    if not undecided:
        return 0
    _, reserved = split_by_problem(list(undecided), eval_fraction=fraction, seed=seed)
    reserved_ids = [undecided[key] for key in reserved]
    with transaction.atomic():
        Problem.objects.filter(pk__in=reserved_ids, eval_reserved__isnull=True).update(
            eval_reserved=True
        )
        Problem.objects.filter(pk__in=list(undecided.values()), eval_reserved__isnull=True).update(
            eval_reserved=False
        )
    return len(reserved_ids)


def _hash_threshold(fraction: float) -> int:
    """The smallest n with n / 2**64 >= fraction, as Python divides: a key whose hash prefix n
    (``split_by_problem``) is below it is held out, exactly as the float comparison decides."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {fraction}")
    low, high = 0, 2**64  # n / 2**64 >= fraction holds at high (1.0 >= fraction)
    while low < high:
        middle = (low + high) // 2
        if middle / 2**64 >= fraction:
            high = middle
        else:
            low = middle + 1
    return low


def _reserve_in_sql(*, fraction: float, seed: int) -> int:
    """``split_by_problem`` in one UPDATE: the first 8 bytes of sha256(seed NUL unique_id) as
    an unsigned integer, compared with ``_hash_threshold``."""
    table = Problem._meta.db_table
    sql = f"""
WITH decided AS (
    SELECT id, ('x' || encode(substr(sha256(%s::bytea || convert_to(unique_id, 'UTF8')), 1, 8),
                              'hex'))::bit(64)::bigint AS n
    FROM {table} WHERE eval_reserved IS NULL
)
UPDATE {table} p
SET eval_reserved = (d.n::numeric + CASE WHEN d.n < 0 THEN 18446744073709551616 ELSE 0 END)
                    < %s::numeric
FROM decided d
WHERE p.id = d.id AND p.eval_reserved IS NULL
RETURNING p.eval_reserved
"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [f"{seed}\x00".encode(), _hash_threshold(fraction)])
        return sum(1 for (reserved,) in cursor.fetchall() if reserved)


def eval_labels() -> Any:
    """Labels usable for evaluation: on reserved problems, of normal tasks queued by the
    uniform draw (not a selector's pick, a hand-queued task or an imported record: PRM800K's
    phase-2 candidates were picked by OpenAI's own PRM), from annotators who are neither
    paused nor failed at screening (the hygiene training applies), minus broken problems."""
    labels = Label.objects.filter(
        task__kind=TaskKind.NORMAL,
        task__queued_by=QueuedBy.UNIFORM,
        task__solution__problem__eval_reserved=True,
    ).exclude(finish_reason=FinishReason.BAD_PROBLEM)
    return labels_from_reliable_annotators(labels=labels).order_by("pk")


# Below this a set gives no useful interval (the bootstrap resamples problems): evaluating
# against it is refused, with how to get labels.
EVAL_SET_MIN_LABELS = 8
EVAL_SET_MIN_PROBLEMS = 2

HOW_TO_GET_LABELS = (
    "To get evaluation labels: run Fill queue (it also queues candidates of the reserved "
    "evaluation problems, drawn at random), have annotators label them, then freeze a new "
    "evaluation set (the Evaluation sets page, or `manage.py evaluate_selector "
    "--new-eval-set`) and evaluate again."
)


@transaction.atomic
def eval_set_freeze(*, user: Any = None) -> EvalSet:
    """A new version of the evaluation set: every evaluation label that exists now. Records
    who froze it and what changed against the newest set before it."""
    eval_set_reserve()
    rows = list(eval_labels().values_list("pk", "task__solution__problem_id"))
    last_solution = Solution.objects.order_by("-pk").values_list("pk", flat=True).first()
    previous = EvalSet.objects.order_by("-pk").first()
    ids = [pk for pk, _ in rows]
    before = set(previous.label_ids) if previous is not None else set()
    problems = len({problem for _, problem in rows})
    return EvalSet.objects.create(
        label_ids=ids,
        max_solution_id=last_solution or 0,
        problems=problems,
        fraction=settings.SELECTOR_EVAL_FRACTION,
        seed=settings.SELECTOR_EVAL_SEED,
        created_by=user if user is not None and user.is_authenticated else None,
        changes={
            "previous": previous.pk if previous is not None else None,
            "added": len(set(ids) - before),
            "removed": len(before - set(ids)),
            "labels": len(ids),
            "problems": problems,
            "previous_labels": len(before),
            "previous_problems": previous.problems if previous is not None else 0,
        },
    )


def eval_set_changes_text(eval_set: EvalSet) -> str:
    """What freezing ``eval_set`` changed, in words (the admin's message and log entry)."""
    changes = eval_set.changes or {}
    size = f"{len(eval_set.label_ids)} labels on {eval_set.problems} problems"
    if changes.get("previous") is None:
        return f"Froze evaluation set {eval_set.pk}: {size} (the first set)."
    return (
        f"Froze evaluation set {eval_set.pk}: {size}; against set {changes['previous']} "
        f"({changes.get('previous_labels', 0)} labels): {changes.get('added', 0)} added, "
        f"{changes.get('removed', 0)} removed. Versions evaluated on set {changes['previous']} "
        "compare with new evaluations only after they are evaluated again."
    )


class EvalSetTooSmall(SelectorError):
    """Evaluating now would measure against an empty or too-small evaluation set."""


def eval_set_too_small(*, labels: int, problems: int) -> bool:
    return labels < EVAL_SET_MIN_LABELS or problems < EVAL_SET_MIN_PROBLEMS


def eval_set_check_usable() -> None:
    """Refuse (``SelectorError``, saying how to get labels) an evaluation against a set that is
    empty or too small for intervals. With no set yet, the labels a first freeze would take
    decide; nothing is frozen here."""
    current = EvalSet.objects.order_by("-pk").first()
    available = list(eval_labels().values_list("task__solution__problem_id", flat=True))
    usable = len(available)
    usable_problems = len(set(available))
    need = f"at least {EVAL_SET_MIN_LABELS} labels on {EVAL_SET_MIN_PROBLEMS} problems"
    if current is None:
        if not eval_set_too_small(labels=usable, problems=usable_problems):
            return
        raise EvalSetTooSmall(
            f"Not enough evaluation labels yet: {usable} on {usable_problems} problems, and "
            f"an evaluation needs {need} for its intervals. {HOW_TO_GET_LABELS}"
        )
    if not eval_set_too_small(labels=len(current.label_ids), problems=current.problems):
        return
    hint = HOW_TO_GET_LABELS
    if not eval_set_too_small(labels=usable, problems=usable_problems):
        hint = (
            f"{usable} evaluation labels on {usable_problems} problems exist now: freeze a new "
            "evaluation set (the Evaluation sets page, or `manage.py evaluate_selector "
            "--new-eval-set`) and evaluate again."
        )
    raise EvalSetTooSmall(
        f"Evaluation set {current.pk} is too small: {len(current.label_ids)} labels on "
        f"{current.problems} problems, and an evaluation needs {need} for its intervals. {hint}"
    )


def eval_set_current(*, freeze: bool = False) -> EvalSet:
    """The newest evaluation set; a first one is frozen when there is none (or on ``freeze``)."""
    current = EvalSet.objects.order_by("-pk").first()
    if current is None or freeze:
        return eval_set_freeze()
    return current


def _eval_candidates(generation: int) -> tuple[dict[int, int], dict[int, list[int]]]:
    """The reserved problems' normal tasks already in ``generation``, and their free
    candidates (no task of any kind), ascending by id, per problem. Two statements: the free
    candidates by an anti-join, the queued ones from the generation's tasks (no grouping of
    every solution with its tasks)."""
    solution, problem, task = (m._meta.db_table for m in (Solution, Problem, Task))
    free_sql = f"""
SELECT s.problem_id, s.id
FROM {solution} s
JOIN {problem} p ON p.id = s.problem_id AND p.eval_reserved = %s
WHERE NOT EXISTS (SELECT 1 FROM {task} t WHERE t.solution_id = s.id)
ORDER BY s.problem_id, s.id
"""
    queued_sql = f"""
SELECT s.problem_id, COUNT(*)
FROM {task} t
JOIN {solution} s ON s.id = t.solution_id
JOIN {problem} p ON p.id = s.problem_id AND p.eval_reserved = %s
WHERE t.kind = %s AND t.generation = %s
GROUP BY s.problem_id
"""
    by_problem: dict[int, list[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(queued_sql, [True, TaskKind.NORMAL.value, generation])
        queued = {problem_id: int(n) for problem_id, n in cursor.fetchall()}
        cursor.execute(free_sql, [True])
        while rows := cursor.fetchmany(10_000):
            for problem_id, solution_id in rows:
                by_problem.setdefault(problem_id, []).append(solution_id)
    return queued, by_problem


def eval_queue_fill(
    *,
    generation: int,
    per_problem: int | None = None,
    seed: int | None = None,
    required_labels: int = 1,
) -> dict[str, int]:
    """Queue up to K candidates per reserved problem, drawn uniformly at random (seeded by
    problem and generation, so a rerun picks the same ones), minus what the problem already
    has in ``generation``. Candidates are solutions with no task of any kind yet. Tasks carry
    no selector version and no queued score; their priority is a uniform draw too, so they
    are served interleaved with the selector's picks rather than all first or all last."""
    k = settings.SELECTOR_PER_PROBLEM if per_problem is None else per_problem
    if not isinstance(k, int) or k < 0 or k > 1000:
        raise SelectorError(f"per_problem must be an integer in 0..1000, got {k!r}")
    seed = settings.SELECTOR_EVAL_SEED if seed is None else seed
    eval_set_reserve()
    with transaction.atomic():
        queued, by_problem = _eval_candidates(generation)
        tasks: list[tuple[int, float]] = []  # (solution, priority)
        problems: set[int] = set()
        for problem_id, ids in by_problem.items():
            budget = k - queued.get(problem_id, 0)
            if budget <= 0:
                continue
            rng = random.Random(f"{seed}:{problem_id}:{generation}")
            problems.add(problem_id)
            for solution_id in rng.sample(ids, min(budget, len(ids))):
                tasks.append((solution_id, rng.random()))
        _uniform_tasks_insert(tasks, generation=generation, required_labels=required_labels)
    return {"eval_created": len(tasks), "eval_problems": len(problems)}


def _uniform_tasks_insert(
    tasks: list[tuple[int, float]], *, generation: int, required_labels: int
) -> None:
    """The draw's tasks in one INSERT (PostgreSQL: from two arrays; elsewhere one statement
    sent per row): Django's ``bulk_create`` spent 0.9 s preparing its 13 fields per task for
    the 5,000 tasks of a 1M pool."""
    if not tasks:
        return
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    constant = (
        TaskKind.NORMAL.value,
        generation,
        required_labels,
        QueuedBy.UNIFORM.value,
        SelectionRule.UNIFORM.value,
        now,
    )
    insert = (
        f"INSERT INTO {Task._meta.db_table} (solution_id, priority, queued_score, kind,"
        " generation, required_labels, label_count, lease_count, late_count, queued_by, rule,"
        " created_at)"
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            solution_ids, priorities = zip(*tasks, strict=True)
            cursor.execute(
                f"{insert} SELECT s, p, NULL, %s, %s, %s, 0, 0, 0, %s, %s, %s"
                " FROM unnest(%s::bigint[], %s::double precision[]) AS u(s, p)",
                [*constant, list(solution_ids), list(priorities)],
            )
        else:
            cursor.executemany(
                f"{insert} VALUES (%s, %s, NULL, %s, %s, %s, 0, 0, 0, %s, %s, %s)",
                [(solution_id, priority, *constant) for solution_id, priority in tasks],
            )
