"""``seed_demo --simulate``: two rounds of the real active-learning loop in this database.

The selector's simulation (``selector.simulation``) runs in throw-away databases; this replay
runs the same pieces (synthetic pool, oracle, train, evaluate, promote, fill) in the real one,
so a fresh demo shows two selector versions with metrics and two generations of tasks.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from labeling.models import AnnotatorProfile, Problem, Solution, Task, TaskKind
from labeling.services.queue import tasks_enqueue
from selector.models import SelectorVersion
from selector.queries import active_selector_scores
from selector.services.common import SelectorError
from selector.services.eval_set import eval_set_freeze, eval_set_reserve
from selector.services.evaluation import selector_evaluate
from selector.services.promotion import selector_promote
from selector.services.queue_fill import queue_fill
from selector.services.training import selector_train
from selector.services.versions import selector_create_base
from selector.simulation.oracle import Oracle
from selector.simulation.pool import synthetic_pool
from selector.simulation.runner import tiny_base_model
from selector.simulation.worker import oracle_label_all, pool_store

DEMO_ORACLE = "demo-oracle"
DEMO_VERSION_PREFIX = "demo-sim"


@dataclass(frozen=True)
class DemoReplay:
    problems: int = 0
    labels: int = 0
    versions: tuple[str, ...] = ()
    queued: tuple[int, ...] = ()  # tasks each fill created, by generation 1, 2
    seconds: float = 0.0
    skipped: bool = False  # already replayed in this database


def demo_replay(
    *,
    base_model: str | None = None,
    problems: int = 30,
    candidates: int = 10,
    epochs: int = 2,
    echo: Callable[[str], None] | None = None,
) -> DemoReplay:
    """Two rounds of the real loop in this database, the oracle as the annotator.

    The demo's own candidates are all queued already (generation 0), so nothing would be left
    for an 80/20 fill to choose; the replay adds a small synthetic pool instead (documented
    difficulty, known step labels). Round 1: the oracle labels one uniformly drawn candidate
    per training problem plus every candidate of the reserved evaluation problems (generation
    0), claiming and submitting through the queue and label services, never the demo's tasks;
    a version is trained from the base, evaluated on the frozen set, promoted (which scores the
    pool) and fills generation 1. The oracle labels that; round 2 trains, evaluates, promotes
    and fills generation 2, which stays open for the demo annotator. ``base_model``: a local
    model directory, ``"tiny"`` (a 2-layer BERT, seconds on CPU), or None for the default.
    """
    say = echo or (lambda _m: None)
    started = time.perf_counter()
    if SelectorVersion.objects.filter(name__startswith=f"{DEMO_VERSION_PREFIX}-").exists():
        return DemoReplay(skipped=True)
    pool = synthetic_pool(problems=problems, candidates=candidates, seed=0)
    if Problem.objects.filter(unique_id__in=[p.key for p in pool]).exists():
        raise SelectorError("the simulation's synthetic problems exist already: nothing replayed")
    if base_model == "tiny":
        Path(settings.SIMULATION_DIR).mkdir(parents=True, exist_ok=True)
        base_model = str(tiny_base_model(Path(settings.SIMULATION_DIR)))

    with transaction.atomic():
        truth = pool_store(pool, subject="Simulation (synthetic)")
        oracle_user, _ = User.objects.get_or_create(username=DEMO_ORACLE)
        AnnotatorProfile.objects.update_or_create(
            user=oracle_user, defaults={"screening_passed": True}
        )
    eval_set_reserve()
    reserved = set(
        Solution.objects.filter(pk__in=truth, problem__eval_reserved=True).values_list(
            "pk", flat=True
        )
    )
    by_problem: dict[int, list[int]] = {}
    for pk, problem_id in Solution.objects.filter(pk__in=truth).values_list("pk", "problem_id"):
        if pk not in reserved:
            by_problem.setdefault(problem_id, []).append(pk)
    rng = random.Random("demo-sim-seed-set")
    seed_set = [rng.choice(sorted(ids)) for _, ids in sorted(by_problem.items())]
    tasks_enqueue(
        solution_ids=sorted(reserved) + seed_set,
        generation=0,
        priority_from="zero",
        scores=active_selector_scores,
    )
    oracle = Oracle(seed=0)

    def label_round(tag: str) -> int:
        # Only the simulation's own tasks: the demo's queue is left for the demo annotator.
        others = Task.objects.filter(kind=TaskKind.NORMAL).exclude(solution_id__in=truth)
        labels, _steps = oracle_label_all(
            oracle=oracle,
            truth=truth,
            users=[oracle_user],
            tag=tag,
            exclude=others.values_list("pk", flat=True),
        )
        return labels

    labels = label_round("demo-sim-g0")
    say(f"round 0: the oracle labeled {labels} seed and evaluation candidates")
    # A new frozen evaluation set holding the labels just made (an older one, from before the
    # replay, would not): both versions are measured on it, so the admin can compare them.
    eval_set = eval_set_freeze()
    base = selector_create_base(
        base_model=base_model, name=f"{DEMO_VERSION_PREFIX}-base", activate=False
    )
    names: list[str] = []
    queued: list[int] = []
    for generation in (1, 2):
        version = selector_train(
            base_version=base, epochs=epochs, name=f"{DEMO_VERSION_PREFIX}-r{generation}"
        )
        selector_evaluate(version=version, eval_set=eval_set)
        selector_promote(version=version)
        report = queue_fill(generation=generation, version=version)
        names.append(version.name)
        queued.append(report.created)
        say(
            f"round {generation}: trained, evaluated and promoted {version.name}; "
            f"it queued {report.created} tasks as generation {generation}"
        )
        if generation == 1:
            labels += label_round(f"demo-sim-g{generation}")
    return DemoReplay(
        problems=len(pool),
        labels=labels,
        versions=tuple(names),
        queued=tuple(queued),
        seconds=round(time.perf_counter() - started, 1),
    )
