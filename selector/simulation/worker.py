"""One arm x seed (or the template) of the simulation, inside its own subprocess.

``manage.py simulate_active_learning --worker-spec SPEC`` lands here, with ``DATABASE_URL``
pointing at a throw-away SQLite copy (``selector.simulation.runner`` starts it and reads back
what it writes into the work directory). Everything below goes through the product's services.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selector.simulation.oracle import Oracle
from selector.simulation.pool import PoolCandidate, PoolProblem
from selector.simulation.runner import (
    ARMS,
    BASE_NAME,
    HELD_OUT_ANNOTATOR,
    PARENT_PID_ENV,
    SimConfig,
    SimulationError,
    extra_budgets,
    round_mark,
)


def _load_pool_json(work: Path) -> list[PoolProblem]:
    data = json.loads((work / "pool.json").read_text(encoding="utf-8"))
    return [
        PoolProblem(
            key=p["key"],
            problem=p["problem"],
            answer=p["answer"],
            candidates=tuple(
                PoolCandidate(
                    steps=tuple(c["steps"]),
                    answer=c["answer"],
                    correct=c["correct"],
                    ratings=tuple(c["ratings"]),
                    error_type=c["error_type"],
                )
                for c in p["candidates"]
            ),
        )
        for p in data
    ]


def oracle_label_all(
    *,
    oracle: Oracle,
    truth: dict[int, tuple[int | None, ...]],
    users: list[Any],
    tag: str,
    exclude: Iterable[int] = (),
) -> tuple[int, int]:
    """The oracle claims every open task through the queue (but the ``exclude``d ones) and
    submits through the label service, annotators taking turns. Returns (labels, steps)."""
    skip = list(exclude)
    from labeling.services.labels import label_submit
    from labeling.services.queue import task_claim_next

    labels = steps = 0
    idle = 0
    turn = 0
    while idle < len(users):
        annotator_index = turn % len(users)
        user = users[annotator_index]
        turn += 1
        claim = task_claim_next(annotator=user, exclude=skip)
        if claim is None:
            idle += 1
            continue
        idle = 0
        solution_id = claim.task.solution_id
        answer = oracle.answer(truth[solution_id], annotator=annotator_index, item=solution_id)
        label_submit(
            annotator=user,
            task_id=claim.task.pk,
            idempotency_key=f"{tag}-{claim.task.pk}-{user.pk}",
            ratings=answer.ratings,
            flags=None,
            human_completion=None,
            finish_reason=answer.finish_reason,
            finish_note=answer.note,
            total_time_ms=1000 * max(1, len(answer.ratings)),
            started_at=None,
        )
        labels += 1
        steps += len(answer.ratings)
    return labels, steps


def _no_fsync(sender: Any, connection: Any, **kwargs: Any) -> None:
    # A throw-away database: a crash loses the run anyway, so commits need not reach the disk.
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")


def _exit_with_parent() -> None:
    """Stop when the parent dies (a SIGKILLed Celery worker, say) instead of running on for
    minutes with no one left to read the result. The parent's pid comes from the parent: one
    that died while this process was still starting up would otherwise go unnoticed."""
    parent = int(os.environ.get(PARENT_PID_ENV) or os.getppid())

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def worker_main(spec_path: Path) -> None:
    from django.conf import settings
    from django.db import connection
    from django.db.backends.signals import connection_created

    if connection.vendor != "sqlite" or "sqlite" not in settings.DATABASES["default"]["ENGINE"]:
        raise SimulationError("a simulation worker runs only on its throw-away SQLite copy")
    _exit_with_parent()
    connection_created.connect(_no_fsync)
    connection.close()  # reopened with the pragma on first use
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if spec["role"] == "template":
        _worker_template(spec)
    else:
        _worker_arm(spec)


def pool_store(
    pool: list[PoolProblem], *, subject: str = "simulation"
) -> dict[int, tuple[int | None, ...]]:
    """Store the pool's problems and candidates (graded from the pool where it knows, by the
    product's grader otherwise); returns each stored solution's known step ratings by id."""
    from labeling.models import Grade, Problem, Solution, text_sha256
    from labeling.services.grading import answers_grade

    problems = Problem.objects.bulk_create(
        [
            Problem(
                unique_id=p.key,
                problem=p.problem,
                problem_hash=text_sha256(p.problem),
                answer=p.answer,
                subject=subject,
            )
            for p in pool
        ]
    )
    truths: dict[tuple[int, str], tuple[int | None, ...]] = {}
    rows: list[Solution] = []
    for problem, p in zip(problems, pool, strict=True):
        for c in p.candidates:
            text_hash = text_sha256("\n".join(c.steps))
            if (problem.pk, text_hash) in truths:
                continue  # a repeated sample: one row, as the importer keeps it
            truths[problem.pk, text_hash] = c.ratings
            grade = (
                Grade.UNGRADED
                if c.correct is None
                else (Grade.CORRECT if c.correct else Grade.INCORRECT)
            )
            rows.append(
                Solution(
                    problem=problem,
                    steps=list(c.steps),
                    answer=c.answer,
                    text_hash=text_hash,
                    generator="simulation",
                    source="synthetic",
                    grade=grade,
                )
            )
    Solution.objects.bulk_create(rows, batch_size=2000)
    problem_ids = [problem.pk for problem in problems]
    stored = Solution.objects.filter(problem_id__in=problem_ids)
    if stored.filter(grade=Grade.UNGRADED).exists():
        answers_grade(problem_ids=problem_ids)  # the product's grader, for files that did not say
    return {
        pk: truths[problem_id, text_hash]
        for pk, problem_id, text_hash in stored.values_list("id", "problem_id", "text_hash")
    }


def _worker_template(spec: dict[str, Any]) -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from labeling.models import Label, QueuedBy, Solution, TaskKind
    from labeling.services.queue import tasks_enqueue
    from selector.queries import active_selector_scores
    from selector.services.training import held_out_keys
    from selector.services.versions import selector_create_base

    config = spec["config"]
    work = Path(spec["work"])
    call_command("migrate", verbosity=0)
    pool = _load_pool_json(work)
    truth_rows = pool_store(pool)
    (work / "truth.json").write_text(json.dumps({str(k): v for k, v in truth_rows.items()}))
    selector_create_base(base_model=spec["base_model"], name=BASE_NAME, activate=False)
    for i in range(config["annotators"]):
        User.objects.create_user(username=f"sim-oracle-{i}")
    held = held_out_keys(p.key for p in pool)
    held_ids = list(
        Solution.objects.filter(problem__unique_id__in=held).values_list("id", flat=True)
    )
    if not held_ids:
        raise SimulationError("no held-out problem: use a larger pool")
    # Every candidate of the held-out problems: a census, as uniform as a draw can be.
    tasks_enqueue(
        solution_ids=held_ids,
        generation=0,
        priority_from="zero",
        scores=active_selector_scores,
        queued_by=QueuedBy.UNIFORM,
    )
    heldout_user = User.objects.create_user(username=HELD_OUT_ANNOTATOR)
    oracle_label_all(oracle=Oracle(), truth=truth_rows, users=[heldout_user], tag="heldout")
    # The held-out set as the evaluation service will read it (label order = pk order).
    index_of = {key: i for i, key in enumerate(sorted(held))}
    labels = (
        Label.objects.filter(task__kind=TaskKind.NORMAL, task__solution_id__in=held_ids)
        .select_related("task__solution__problem")
        .order_by("pk")
    )
    held_out: dict[str, list[Any]] = {"problem": [], "ratings": [], "fair": [], "solution": []}
    for label in labels:
        held_out["problem"].append(index_of[label.task.solution.problem.unique_id])
        held_out["ratings"].append(list(label.ratings))
        held_out["fair"].append(label.finish_reason in ("found_error", "solution"))
        held_out["solution"].append(label.task.solution_id)
    (work / "held_out.json").write_text(json.dumps(held_out), encoding="utf-8")


def _random_version(round_no: int, seed: int, solution_ids: list[int]) -> Any:
    """A score-only stand-in selector: seeded random scores, so the real ``queue_fill`` picks
    at random within each part of its rule."""
    from selector.models import SelectorVersion, SolutionScore, VersionStatus

    rng = random.Random(f"sim-random:{seed}:{round_no}")
    version = SelectorVersion.objects.create(
        name=f"sim-random-r{round_no}",
        base_model="random",
        status=VersionStatus.READY,
        training_summary={"init": "random scores (simulation)"},
    )
    SolutionScore.objects.bulk_create(
        [
            SolutionScore(solution_id=pk, version=version, score=rng.random(), step_scores=[])
            for pk in solution_ids
        ],
        batch_size=2000,
    )
    return version


def _metrics_flat(metrics: dict[str, Any]) -> dict[str, Any]:
    bon = metrics.get("best_of_n") or {}
    last = -1 if bon.get("n") else None
    return {
        "step_auroc": (metrics.get("step") or {}).get("auroc"),
        "step_auprc": (metrics.get("step") or {}).get("auprc"),
        "f1": (metrics.get("first_error") or {}).get("f1"),
        "f1_tuned": (metrics.get("first_error_tuned") or {}).get("f1"),
        "threshold": (metrics.get("first_error_tuned") or {}).get("threshold"),
        "acc_erroneous": (metrics.get("first_error") or {}).get("acc_erroneous"),
        "acc_correct": (metrics.get("first_error") or {}).get("acc_correct"),
        "bon_n": bon["n"][last] if last is not None else None,
        "bon_selector": bon["selector"][last] if last is not None else None,
        "bon_majority": bon["majority"][last] if last is not None else None,
    }


def _worker_arm(spec: dict[str, Any]) -> None:
    from django.contrib.auth.models import User

    from labeling.models import QueuedBy, Task
    from labeling.services.queue import tasks_enqueue
    from selector.models import SelectorVersion, SolutionScore
    from selector.queries import active_selector_scores
    from selector.services.evaluation import selector_evaluate
    from selector.services.promotion import selector_promote
    from selector.services.queue_fill import queue_fill
    from selector.services.training import selector_train

    config = SimConfig(**spec["config"])
    arm, seed = spec["arm"], int(spec["seed"])
    rule = ARMS[arm]
    work = Path(spec["work"])
    truth = {int(k): tuple(v) for k, v in json.loads((work / "truth.json").read_text()).items()}
    held_out = json.loads((work / "held_out.json").read_text(encoding="utf-8"))
    held_solutions = [int(s) for s in held_out["solution"]]
    oracle = Oracle(
        flip_rate=config.flip_rate,
        neutral_rate=config.neutral_rate,
        bias=config.bias,
        annotators=config.annotators,
        seed=seed,
    )
    users = list(User.objects.filter(username__startswith="sim-oracle-").order_by("username"))
    base = SelectorVersion.objects.get(name=BASE_NAME)
    # The seed set: the same uniformly drawn candidates for every arm of this seed.
    candidates = sorted(set(truth) - set(Task.objects.values_list("solution_id", flat=True)))
    n_train_problems = len(_problems_of(candidates))
    n_seed = min(len(candidates), max(1, round(config.seed_per_problem * n_train_problems)))
    seed_set = random.Random(f"sim-seed-set:{seed}").sample(candidates, n_seed)
    tasks_enqueue(
        solution_ids=seed_set,
        generation=0,
        priority_from="zero",
        scores=active_selector_scores,
        queued_by=QueuedBy.UNIFORM,
    )
    k_round = config.per_problem
    if config.labels_per_round is not None:
        k_round = max(1, round(config.labels_per_round / max(1, n_train_problems)))
    schedule = [k_round] * config.rounds + extra_budgets(config, arm)
    rounds: list[dict[str, Any]] = []
    labels_total = steps_total = 0
    previous = base
    for round_no in range(len(schedule) + 1):
        cpu_started = time.process_time()
        if round_no > 0:
            k = schedule[round_no - 1]
            if rule["prm"]:
                # Only what can still be queued needs a score: every queued task was labeled
                # (no untouched task to re-prioritise), and the held-out candidates are the
                # evaluation's. Re-scoring the whole pool each round was most of the run.
                selector_promote(version=previous, solution_ids=_unqueued(truth))
                fill_version = previous
            else:
                fill_version = _random_version(round_no, seed, _unqueued(truth))
            queue_fill(
                per_problem=k,
                rule=rule["rule"],
                wrong_fraction=rule["wrong_fraction"],
                generation=round_no,
                version=fill_version,
            )
        labels, steps = oracle_label_all(
            oracle=oracle, truth=truth, users=users, tag=f"r{round_no}"
        )
        labels_total += labels
        steps_total += steps
        if labels == 0 and round_no > 0:
            break  # the pool ran dry
        version = selector_train(
            base_version=previous if config.warm_start and round_no > 0 else base,
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            name=f"sim-{arm}-s{seed}-r{round_no}",
            seed=seed,
            class_balance=config.class_balance,
        )
        metrics = selector_evaluate(version=version)
        scores = dict(
            SolutionScore.objects.filter(
                version=version, solution_id__in=held_solutions
            ).values_list("solution_id", "step_scores")
        )
        rounds.append(
            {
                "round": round_no,
                "labels": labels_total,
                "steps_rated": steps_total,
                "cpu_seconds": round(time.process_time() - cpu_started, 2),
                "metrics": _metrics_flat(metrics),
                "threshold": (version.training_summary or {}).get("threshold"),
                "scores": [[round(float(x), 5) for x in scores[s]] for s in held_solutions],
            }
        )
        previous = version
        round_mark(work, arm, seed, round_no + 1)
    (work / f"raw-{arm}-{seed}.json").write_text(
        json.dumps({"arm": arm, "seed": seed, "rounds": rounds}), encoding="utf-8"
    )


def _unqueued(truth: dict[int, Any]) -> list[int]:
    """The pool's candidates no task holds yet (held-out ones are all queued in the template)."""
    from labeling.models import Task

    return sorted(set(truth) - set(Task.objects.values_list("solution_id", flat=True)))


def _problems_of(solution_ids: list[int]) -> set[int]:
    from labeling.models import Solution

    return set(Solution.objects.filter(pk__in=solution_ids).values_list("problem_id", flat=True))
