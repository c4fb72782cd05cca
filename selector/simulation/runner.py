"""Running the active-learning simulation through the product's real services: the parent.

This module plans the run, starts the subprocesses (``selector.simulation.worker`` is what runs
inside them), watches them and writes the report. Layout of a run (``out_dir/work`` while it
runs, removed at the end unless ``keep``):

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
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from selector.simulation.pool import PoolProblem, pool_load

ARMS: dict[str, dict[str, Any]] = {
    # queue_fill's rule and wrong_fraction, and whether the fill ranks by the trained PRM.
    "uniform": {"rule": "80_20", "wrong_fraction": 0.0, "prm": False},
    "80_20": {"rule": "80_20", "wrong_fraction": 0.8, "prm": True},
    "convincing_wrong": {"rule": "80_20", "wrong_fraction": 1.0, "prm": True},
    "random_wrong": {"rule": "80_20", "wrong_fraction": 0.8, "prm": False},
    # The most uncertain candidates by the PRM's ensemble of step heads (ActPRM-style), and
    # half of each problem's budget by each rule (decision 0017).
    "uncertainty": {"rule": "uncertainty", "wrong_fraction": 0.8, "prm": True},
    "mixed": {"rule": "mixed", "wrong_fraction": 0.8, "prm": True},
}
BASE_NAME = "sim-base"
PARENT_PID_ENV = "STEPWISE_SIMULATION_PARENT"
HELD_OUT_ANNOTATOR = "sim-heldout"
CEILING_K = 1000  # queue_fill's largest per-problem K: every candidate left


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
    # The arms without a PRM (uniform, random_wrong: the two ratios' baselines) keep going with
    # these extra per-problem budgets, so each ratio can be measured above 1 (the baseline
    # must reach what 80/20 reaches at its final budget).
    baseline_extra: list[int] = field(default_factory=lambda: [6, 10])
    # The uniform arm ends with a round that labels every training candidate left: its
    # final point is ``ceiling`` in the report (what the model can learn from everything).
    ceiling: bool = False
    warm_start: bool = False
    # "tiny" | "minilm" | "pretrained" | "pretrained-surprise" | a local HF model directory.
    # "pretrained": a digit tokenizer and a small causal BERT pretrained as a language model on
    # correct solutions from the synthetic generator, built once per run before any arm
    # (selector.ml.pretrain). "pretrained-surprise": the same language model (without
    # replaced-token detection) under a PRM head that reads its surprise (selector.ml.surprise).
    base_model: str = "tiny"
    pretrain_problems: int = 4000
    pretrain_epochs: int = 4
    hidden_size: int = 128
    layers: int = 4
    class_balance: bool = False
    # Step heads per trained version (the product's SELECTOR_ENSEMBLE_HEADS): the uncertainty
    # and mixed arms rank by their spread; every arm's step scores are their mean.
    ensemble_heads: int = 5
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
    # Fixed before any arm was measured with it (decision 0011): the small-operand pool; a
    # digit tokenizer and a 4-layer causal BERT pretrained as a plain language model on 16,000
    # correct solutions, under the surprise PRM head with 5 step heads; class-balanced loss.
    # Two rounds of K=5 put 80/20's final budget (748 labels) on the rising part of the curve;
    # the baselines' extra budget (1,292) and uniform's ceiling round let the ratios exceed 1.
    # All six arms (issue 20) at 3 seeds: about 25 minutes on 2 CPU cores (decision 0017).
    "ci": SimConfig(
        pool="synthetic-small",
        base_model="pretrained-surprise",
        pretrain_problems=16000,
        pretrain_epochs=2,
        class_balance=True,
        ceiling=True,
        rounds=2,
        baseline_extra=[8],
        seeds=3,
        arms=["uniform", "80_20", "random_wrong", "convincing_wrong", "uncertainty", "mixed"],
        held_out_fraction=0.3,
    ),
    # The machinery test: seconds per arm.
    "test": SimConfig(
        preset="test",
        problems=24,
        candidates=10,
        seeds=1,
        seed_per_problem=1.0,
        rounds=1,
        baseline_extra=[],
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
        baseline_extra=[10, 20],
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


def pretrained_base_model(config: SimConfig, root: Path, *, surprise: bool = False) -> Path:
    """The ``pretrained`` base: a digit tokenizer learned from, and a causal LM pretrained on,
    one correct solution of each of ``pretrain_problems`` fresh problems of the run's synthetic
    generator (unlabeled text; no pool candidate and no label is read).

    ``surprise``: a plain language model (no replaced-token detection, which costs it most of
    its arithmetic) turned into a surprise PRM base (``selector.ml.surprise``)."""
    import torch

    from selector.ml.pretrain import digit_tokenizer_write, lm_pretrain, surprise_base_write
    from selector.simulation.pool import SYNTH_KINDS, synthetic_correct_solutions

    if config.pool not in SYNTH_KINDS:
        raise SimulationError("--base-model pretrained needs a synthetic pool")
    path = root / ("pretrained-surprise-base" if surprise else "pretrained-base")
    if (path / "config.json").is_file():
        return path
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    texts = synthetic_correct_solutions(
        problems=config.pretrain_problems, seed=config.pool_seed, params=SYNTH_KINDS[config.pool]
    )
    tokenizer = digit_tokenizer_write(
        root / "pretrained-tokenizer", [p + "\n" + "\n".join(steps) for p, steps in texts]
    )
    summary = lm_pretrain(
        tokenizer=tokenizer,
        items=texts,
        output_dir=root / "pretrained-lm" if surprise else path,
        hidden_size=config.hidden_size,
        layers=config.layers,
        heads=4,
        epochs=config.pretrain_epochs,
        learning_rate=1e-3,
        token_budget=2048,
        max_length=config.max_length,
        seed=config.pool_seed,
        replace_rate=0.0 if surprise else 0.15,
    )
    if surprise:
        surprise_base_write(root / "pretrained-lm", path)
    (root / "pretrain.json").write_text(json.dumps(summary), encoding="utf-8")
    return path


def _base_model_path(config: SimConfig, work: Path) -> str:
    if config.base_model == "tiny":
        return str(tiny_base_model(work))
    if config.base_model == "pretrained":
        return str(pretrained_base_model(config, work))
    if config.base_model == "pretrained-surprise":
        return str(pretrained_base_model(config, work, surprise=True))
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
        "SELECTOR_ENSEMBLE_HEADS": str(spec["config"]["ensemble_heads"]),
        PARENT_PID_ENV: str(os.getpid()),
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
    if not 1 <= config.ensemble_heads <= 64:
        raise SimulationError("--ensemble-heads must be within 1..64")
    needing = [a for a in config.arms if ARMS[a]["rule"] != "80_20"]
    if needing and config.ensemble_heads < 2:
        raise SimulationError(
            f"arm(s) {', '.join(needing)} rank by the spread of an ensemble of step heads: "
            "--ensemble-heads must be at least 2"
        )
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
            round_mark(work, arm, seed, _rounds_of(config, arm))
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
                # Stored once per problem and text, as the importer keeps repeated samples.
                "candidates_unique": len({(p.key, c.steps) for p in pool for c in p.candidates}),
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
            "data_efficiency_prm": analysis["data_efficiency_prm"],
            **{c[0]: analysis[c[0]] for c in reporting.RULE_COMPARISONS if c[0] in analysis},
            "ceiling": reporting.ceiling_of(raw, config=asdict(config), active_arm=active),
            "curves": analysis["curves"],
            "unscored": analysis["unscored"],
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


def extra_budgets(config: SimConfig, arm: str) -> list[int]:
    """Per-problem K of the rounds ``arm`` runs after its fills: the baselines' extra budgets,
    then, for uniform with ``ceiling``, one round labeling every training candidate left."""
    extra = [] if ARMS[arm]["prm"] else list(config.baseline_extra)
    if arm == "uniform" and config.ceiling:
        extra.append(CEILING_K)
    return extra


def _rounds_of(config: SimConfig, arm: str) -> int:
    """Rounds one worker of ``arm`` runs: the seed round, the fills, its extra budgets."""
    return 1 + config.rounds + len(extra_budgets(config, arm))


def round_mark(work: Path, arm: str, seed: int, rounds: int) -> None:
    """A worker's rounds done so far, in a file the parent polls for the progress bar."""
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


def config_for(preset: str, **overrides: Any) -> SimConfig:
    if preset not in PRESETS:
        raise SimulationError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
