"""Running the active-learning simulation through the product's real services.

Layout of a run (``out_dir/work`` while it runs, removed at the end unless ``keep``):

1. The *template*: one migrated SQLite database holding the pool (problems, candidates with
   their grades), an untrained base selector version (``sim-base``, never activated), and the
   frozen held-out set: every candidate of the problems the training service holds out
   (``selector.services.training.held_out_keys``), queued and labeled by a noise-free oracle.
2. One *worker* per arm x seed, each in its own subprocess on its own copy of the template
   (``DATABASE_URL`` points at the copy, never at the user's database). Round 0 labels the
   seed set (the same uniformly chosen candidates for every arm of a seed); each later round
   fills the queue with the real ``queue_fill``, lets the oracle claim and submit every queued
   task through ``task_claim_next`` and ``label_submit``, trains a version from the base with
   ``selector_train`` (or from the previous one with ``warm_start``), evaluates it with
   ``selector_evaluate`` and, for the arms that use the PRM, promotes it with
   ``selector_promote`` (which scores the pool) so the next fill uses it.
3. The parent reads the workers' JSON, computes the data-efficiency ratio and curves
   (``selector.simulation.report``) and writes ``report.json``, PNGs and ``summary.md``.

Arms without a PRM (``uniform``, ``random_wrong``) fill the queue from a throw-away
``sim-random-rN`` version whose scores are seeded random numbers: with ``wrong_fraction=0`` the
real rule then picks K random candidates per problem; with 0.8 it is the grader alone.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from selector.simulation.oracle import Oracle
from selector.simulation.pool import PoolCandidate, PoolProblem, pool_load

ARMS: dict[str, dict[str, Any]] = {
    # wrong_fraction for queue_fill, and whether the fill ranks by the trained PRM.
    "uniform": {"wrong_fraction": 0.0, "prm": False},
    "80_20": {"wrong_fraction": 0.8, "prm": True},
    "convincing_wrong": {"wrong_fraction": 1.0, "prm": True},
    "random_wrong": {"wrong_fraction": 0.8, "prm": False},
}
BASE_NAME = "sim-base"
HELD_OUT_ANNOTATOR = "sim-heldout"


@dataclass
class SimConfig:
    """Everything a run depends on; written into ``report.json`` as ``config``."""

    preset: str = "ci"
    pool: str = "synthetic"
    problems: int = 100
    candidates: int = 32
    pool_seed: int = 0
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    seeds: int = 3
    seed_per_problem: float = 1.0  # seed-set labels per training problem, drawn uniformly
    per_problem: int = 5  # K of each round's fill (5 makes the 80/20 split exact)
    # When set, K = round(labels_per_round / training problems), at least 1, instead.
    labels_per_round: int | None = None
    rounds: int = 3
    # The uniform arm keeps going with these extra per-problem budgets, so the ratio can be
    # measured above 1 (uniform must reach what 80/20 reaches at its final budget).
    uniform_extra: list[int] = field(default_factory=lambda: [6, 10])
    warm_start: bool = False
    base_model: str = "tiny"  # "tiny" | "minilm" | a local HF model directory
    epochs: int = 3
    learning_rate: float = 5e-4
    max_length: int = 192
    token_budget: int = 8192
    device: str = "cpu"
    annotators: int = 3
    flip_rate: float = 0.0
    neutral_rate: float = 0.0
    bias: float = 0.0
    # Share of problems held out for evaluation (the product's SELECTOR_EVAL_FRACTION, set in
    # each worker): more than the product's 10% so the interval over held-out problems is
    # not resting on a handful of them.
    held_out_fraction: float = 0.25
    metric: str = "step_auroc"
    resamples: int = 500
    jobs: int = 2


PRESETS: dict[str, SimConfig] = {
    # ≤ 15 minutes on 2 CPU cores: a 2-layer BERT built from a config (MiniLM's tokenizer).
    "ci": SimConfig(),
    # The machinery test: seconds per arm.
    "test": SimConfig(
        preset="test",
        problems=24,
        candidates=10,
        seeds=1,
        seed_per_problem=1.0,
        rounds=1,
        uniform_extra=[],
        epochs=1,
        max_length=128,
        resamples=20,
        jobs=2,
        annotators=2,
    ),
    # A GPU host: a 0.5-1.5B decoder (pass --base-model), thousands of labels per round.
    "full": SimConfig(
        preset="full",
        problems=2000,
        candidates=64,
        seed_per_problem=1.0,
        rounds=6,
        uniform_extra=[10, 20],
        base_model="",
        epochs=2,
        learning_rate=1e-5,
        max_length=512,
        token_budget=16384,
        device="cuda",
        held_out_fraction=0.1,
        jobs=1,
        resamples=1000,
    ),
}


class SimulationError(Exception):
    """The simulation cannot run as asked; the message says why."""


# --- Parent -----------------------------------------------------------------------------------


def tiny_base_model(root: Path) -> Path:
    """A 2-layer, 64-wide BERT: no download, and fast enough for the ci preset on 2 CPU cores."""
    from selector.ml.prm import tiny_bert_write

    return tiny_bert_write(root / "tiny-bert", hidden_size=64)


def _base_model_path(config: SimConfig, work: Path) -> str:
    if config.base_model == "tiny":
        return str(tiny_base_model(work))
    if config.base_model in ("minilm", ""):
        if config.preset == "full" and not config.base_model:
            raise SimulationError("--preset full needs --base-model (a local 0.5-1.5B decoder)")
        from selector.ml.prm import default_base_model

        return default_base_model()
    if not Path(config.base_model).is_dir():
        raise SimulationError(f"base model {config.base_model!r} is not a local directory")
    return config.base_model


def _pool_json(pool: list[PoolProblem]) -> list[dict[str, Any]]:
    return [
        {
            "key": p.key,
            "problem": p.problem,
            "answer": p.answer,
            "candidates": [asdict(c) for c in p.candidates],
        }
        for p in pool
    ]


class _Workers:
    """The running worker processes, so a run that stops (a cancelled job, a failed arm) ends
    them instead of waiting minutes for their results."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self.stopping = False

    def start(self, args: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self.stopping:
                raise SimulationError("the simulation was stopped")
            proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
            self._running.add(proc)
            return proc

    def done(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(proc)

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            for proc in self._running:
                proc.terminate()


def _subprocess(
    spec: dict[str, Any],
    work: Path,
    db: Path,
    checkpoints: Path,
    threads: int,
    workers: _Workers | None = None,
) -> None:
    spec_path = work / f"spec-{spec['role']}-{spec.get('arm', '')}-{spec.get('seed', '')}.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "SELECTOR_CHECKPOINT_DIR": str(checkpoints),
        "SELECTOR_DEVICE": spec["config"]["device"],
        "SELECTOR_MAX_LENGTH": str(spec["config"]["max_length"]),
        "SELECTOR_TOKEN_BUDGET": str(spec["config"]["token_budget"]),
        "SELECTOR_PER_PROBLEM": str(spec["config"]["per_problem"]),
        "SELECTOR_EVAL_FRACTION": str(spec["config"]["held_out_fraction"]),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    manage = Path(__file__).resolve().parents[2] / "manage.py"
    log = work / f"{spec_path.stem}.log"
    workers = workers or _Workers()
    args = [
        sys.executable,
        str(manage),
        "simulate_active_learning",
        "--worker-spec",
        str(spec_path),
    ]
    with log.open("w") as fh:
        proc = workers.start(args, env, fh)
        try:
            returncode = proc.wait()
        finally:
            workers.done(proc)
    if workers.stopping:
        raise SimulationError("the simulation was stopped")
    if returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SimulationError(f"{spec_path.stem} failed (exit {returncode}):\n{tail}")


def simulation_run(
    *,
    config: SimConfig,
    out_dir: Path,
    keep: bool = False,
    progress: Callable[[int, int], None] | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every arm x seed, then write ``report.json``, the PNGs and ``summary.md``."""
    from selector.simulation import report as reporting

    say = echo or (lambda _m: None)
    unknown = [a for a in config.arms if a not in ARMS]
    if unknown:
        raise SimulationError(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if not config.arms:
        raise SimulationError("no arms to run")
    if config.seeds < 1 or config.rounds < 1:
        raise SimulationError("seeds and rounds must be at least 1")
    if not 0 < config.held_out_fraction < 1:
        raise SimulationError("--held-out-fraction must be between 0 and 1")
    if config.labels_per_round is not None and config.labels_per_round < 1:
        raise SimulationError("--labels-per-round must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    started = time.perf_counter()
    try:
        pool = pool_load(
            config.pool,
            problems=config.problems,
            candidates=config.candidates,
            seed=config.pool_seed,
        )
        base = _base_model_path(config, work)
        (work / "pool.json").write_text(json.dumps(_pool_json(pool)), encoding="utf-8")
        # One step for the template, then one per arm x seed x round (the uniform arm's extra
        # budgets are rounds too): workers write their round count to a file the parent polls.
        total = 1 + config.seeds * sum(_rounds_of(config, arm) for arm in config.arms)
        done = 0
        if progress:
            progress(done, total)
        template = work / "template.sqlite3"
        workers = _Workers()
        say("building the template database (pool, base version, held-out labels)")
        _run_polling(
            [
                lambda: _subprocess(
                    {
                        "role": "template",
                        "config": asdict(config),
                        "work": str(work),
                        "base_model": base,
                    },
                    work,
                    template,
                    work / "checkpoints-template",
                    threads=max(1, os.cpu_count() or 1),
                    workers=workers,
                )
            ],
            jobs=1,
            workers=workers,
            poll=lambda: progress(0, total) if progress else None,
        )
        template_done = 1
        if progress:
            progress(template_done, total)
        jobs = max(1, min(config.jobs, len(config.arms) * config.seeds))
        threads = max(1, (os.cpu_count() or 1) // jobs)

        def one(arm: str, seed: int) -> None:
            db = work / f"{arm}-{seed}.sqlite3"
            shutil.copyfile(template, db)
            _subprocess(
                {
                    "role": "arm",
                    "arm": arm,
                    "seed": seed,
                    "config": asdict(config),
                    "work": str(work),
                },
                work,
                db,
                work / f"checkpoints-{arm}-{seed}",
                threads=threads,
                workers=workers,
            )
            if not keep:
                db.unlink(missing_ok=True)
                shutil.rmtree(work / f"checkpoints-{arm}-{seed}", ignore_errors=True)
            # A worker whose pool ran dry stops early: its remaining rounds count as done.
            _round_mark(work, arm, seed, _rounds_of(config, arm))
            say(f"{arm} seed {seed} done ({time.perf_counter() - started:.0f}s)")

        _run_polling(
            [partial(one, arm, seed) for seed in range(config.seeds) for arm in config.arms],
            jobs=jobs,
            workers=workers,
            poll=lambda: (
                progress(template_done + _rounds_done(work, config), total) if progress else None
            ),
        )

        held_out = json.loads((work / "held_out.json").read_text(encoding="utf-8"))
        raw = {
            arm: {
                seed: json.loads((work / f"raw-{arm}-{seed}.json").read_text(encoding="utf-8"))
                for seed in range(config.seeds)
            }
            for arm in config.arms
        }
        active = "80_20" if "80_20" in config.arms else config.arms[0]
        baseline = "uniform" if "uniform" in config.arms else config.arms[0]
        analysis = reporting.analyse(
            held_out=held_out,
            runs={a: {s: r["rounds"] for s, r in by.items()} for a, by in raw.items()},
            metric=config.metric,
            active_arm=active,
            baseline_arm=baseline,
            resamples=config.resamples,
        )
        result = {
            "config": asdict(config),
            "pool": {
                "problems": len(pool),
                "candidates": sum(len(p.candidates) for p in pool),
                "held_out_problems": len(set(held_out["problem"])),
                "held_out_labels": len(held_out["ratings"]),
            },
            "seconds": round(time.perf_counter() - started, 1),
            "arms": {
                arm: {
                    str(seed): [
                        {k: r[k] for k in ("labels", "steps_rated", "cpu_seconds", "metrics")}
                        for r in raw[arm][seed]["rounds"]
                    ]
                    for seed in range(config.seeds)
                }
                for arm in config.arms
            },
            "data_efficiency": analysis["data_efficiency"],
            "curves": analysis["curves"],
        }
        result = _json_clean(result)
        (out_dir / "report.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        reporting.plots_write(result["curves"], out_dir)
        reporting.summary_write(result, out_dir)
        return result
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _run_polling(
    calls: list[Callable[[], None]], *, jobs: int, workers: _Workers, poll: Callable[[], None]
) -> None:
    """Run ``calls`` on ``jobs`` threads, calling ``poll`` every two seconds meanwhile (it
    raises when the job was cancelled or marked failed). The first failure, or a raising poll,
    terminates every running worker process and is raised."""
    with ThreadPoolExecutor(max_workers=jobs) as executor:
        pending = {executor.submit(call) for call in calls}
        try:
            while pending:
                finished, pending = wait(pending, timeout=2.0, return_when=FIRST_EXCEPTION)
                for future in finished:
                    future.result()  # a failed worker fails the run at once
                poll()
        except BaseException:
            workers.stop()
            executor.shutdown(wait=True, cancel_futures=True)
            raise


def _rounds_of(config: SimConfig, arm: str) -> int:
    """Rounds one worker of ``arm`` runs: the seed round, the fills, uniform's extra budgets."""
    return 1 + config.rounds + (len(config.uniform_extra) if arm == "uniform" else 0)


def _round_mark(work: Path, arm: str, seed: int, rounds: int) -> None:
    (work / f"rounds-{arm}-{seed}.txt").write_text(str(rounds), encoding="utf-8")


def _rounds_done(work: Path, config: SimConfig) -> int:
    done = 0
    for arm in config.arms:
        for seed in range(config.seeds):
            try:
                done += int((work / f"rounds-{arm}-{seed}.txt").read_text(encoding="utf-8"))
            except (FileNotFoundError, ValueError):
                continue  # not started yet, or caught mid-write: counted at the next poll
    return done


def _json_clean(value: Any) -> Any:
    """NaN is not JSON: undefined metrics become null."""
    if isinstance(value, dict):
        return {k: _json_clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- Workers (run inside a subprocess whose DATABASE_URL is a throw-away SQLite file) --------


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
    minutes with no one left to read the result."""
    parent = os.getppid()

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

    from labeling.models import Label, Solution, TaskKind
    from labeling.services.queue import tasks_enqueue
    from selector.services import selector_create_base
    from selector.services.training import held_out_keys

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
    tasks_enqueue(solution_ids=held_ids, generation=0, priority_from="zero")
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
        "acc_erroneous": (metrics.get("first_error") or {}).get("acc_erroneous"),
        "acc_correct": (metrics.get("first_error") or {}).get("acc_correct"),
        "bon_n": bon["n"][last] if last is not None else None,
        "bon_selector": bon["selector"][last] if last is not None else None,
        "bon_majority": bon["majority"][last] if last is not None else None,
    }


def _worker_arm(spec: dict[str, Any]) -> None:
    from django.contrib.auth.models import User

    from labeling.models import Task
    from labeling.services.queue import tasks_enqueue
    from selector.models import SelectorVersion, SolutionScore
    from selector.services import queue_fill, selector_evaluate, selector_promote, selector_train

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
    tasks_enqueue(solution_ids=seed_set, generation=0, priority_from="zero")
    k_round = config.per_problem
    if config.labels_per_round is not None:
        k_round = max(1, round(config.labels_per_round / max(1, n_train_problems)))
    schedule = [k_round] * config.rounds
    if arm == "uniform":
        schedule += list(config.uniform_extra)
    rounds: list[dict[str, Any]] = []
    labels_total = steps_total = 0
    previous = base
    for round_no in range(len(schedule) + 1):
        cpu_started = time.process_time()
        if round_no > 0:
            k = schedule[round_no - 1]
            if rule["prm"]:
                selector_promote(version=previous)
                fill_version = previous
            else:
                open_ids = sorted(
                    set(truth) - set(Task.objects.values_list("solution_id", flat=True))
                )
                fill_version = _random_version(round_no, seed, open_ids)
            queue_fill(
                per_problem=k,
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
                "scores": [[round(float(x), 5) for x in scores[s]] for s in held_solutions],
            }
        )
        previous = version
        _round_mark(work, arm, seed, round_no + 1)
    (work / f"raw-{arm}-{seed}.json").write_text(
        json.dumps({"arm": arm, "seed": seed, "rounds": rounds}), encoding="utf-8"
    )


def _problems_of(solution_ids: list[int]) -> set[int]:
    from labeling.models import Solution

    return set(Solution.objects.filter(pk__in=solution_ids).values_list("problem_id", flat=True))


def config_for(preset: str, **overrides: Any) -> SimConfig:
    if preset not in PRESETS:
        raise SimulationError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
