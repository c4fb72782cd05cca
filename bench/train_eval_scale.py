"""Training data and evaluation at PRM800K size: peak memory and time, on PostgreSQL.

Recreates its own database (``stepwise_trainbench`` unless ``--database-url``), imports
``--records`` synthetic PRM800K records (``bench/import_bench.py``'s generator: the release's
shapes and size, default 97,782 records = about 100k labels and 1.05M step ratings, phase-1
records full of rated alternatives), then, each in a fresh child process so its peak RSS is
its own:

* build: ``training_data_stream`` (what ``selector_train`` feeds the trainer): every
  trajectory and every rated branch of the labels not on a reserved problem. Goal: peak RSS
  <= 2 GB. ``--compare`` also times the list-based build (``trajectories_split`` +
  ``training_data_build``), which held every label in memory.
* evaluate: ``selector_evaluate`` of a fresh PRM on the frozen evaluation set (the labels on
  reserved problems; the bench marks their tasks as uniformly queued, since imported tasks
  are not). Scoring uses ``--base-model`` (default: a tiny 2-layer BERT built here, so the
  time is the pipeline's, not a real model's) at ``--max-length`` tokens.

Prints seconds, CPU seconds and peak RSS per phase, and the load average (the machine may be
shared: CPU time is the steadier figure).

    .venv/bin/python bench/train_eval_scale.py [--records 97782] [--compare]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._pg import setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/stepwise_trainbench"
GOAL_BUILD_RSS_MB = 2048


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def phase_build(args: argparse.Namespace) -> dict[str, object]:
    from selector.services import LabelHygiene, training_data_stream

    started, cpu = time.perf_counter(), cpu_seconds()
    data, problems, _ = training_data_stream(hygiene=LabelHygiene())
    ratings = sum(r is not None for _, _, targets in data.examples for r in targets)
    return {
        "labels": len(data.label_ids),
        "problems": problems,
        "examples": len(data.examples),
        "trajectory_examples": data.summary["trajectory_examples"],
        "branch_examples": data.summary["branch_examples"],
        "target_ratings": ratings,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_build_list(args: argparse.Namespace) -> dict[str, object]:
    from selector.services import LabelHygiene, training_data_build, trajectories_split

    started, cpu = time.perf_counter(), cpu_seconds()
    train, _ = trajectories_split()
    data = training_data_build(items=train, hygiene=LabelHygiene())
    return {
        "labels": len(data.label_ids),
        "examples": len(data.examples),
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


def phase_evaluate(args: argparse.Namespace) -> dict[str, object]:
    from django.conf import settings

    from selector.services import selector_create_base
    from selector.services.eval_set import eval_set_current
    from selector.services.evaluation import selector_evaluate

    settings.SELECTOR_CHECKPOINT_DIR = Path(args.workdir) / "selectors"
    settings.SELECTOR_DEVICE = "cpu"
    settings.SELECTOR_MAX_LENGTH = args.max_length
    version = selector_create_base(base_model=args.base_model, activate=True)
    eval_set = eval_set_current()
    started, cpu = time.perf_counter(), cpu_seconds()
    metrics = selector_evaluate(version=version, eval_set=eval_set)
    return {
        "eval_set_labels": len(eval_set.label_ids),
        "evaluated_labels": metrics["held_out"]["labels"],
        "problems": metrics["held_out"]["problems"],
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu,
        "peak_rss_mb": peak_rss_mb(),
        "max_length": args.max_length,
    }


PHASES = {"build": phase_build, "build-list": phase_build_list, "evaluate": phase_evaluate}


def child(phase: str, args: argparse.Namespace) -> dict[str, object]:
    """Run one phase in a fresh interpreter; its peak RSS is the phase's own."""
    command = [sys.executable, __file__, f"--phase={phase}", f"--database-url={args.database_url}"]
    command += [f"--workdir={args.workdir}", f"--max-length={args.max_length}"]
    if args.base_model:
        command.append(f"--base-model={args.base_model}")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def prepare(args: argparse.Namespace) -> None:
    """A fresh database with ``args.records`` imported PRM800K records and a frozen eval set."""
    from bench.import_bench import prm800k_write, recreate_database

    recreate_database(args.database_url)
    setup_django(args.database_url)
    from django.core.management import call_command
    from django.db import connection

    from labeling.models import Label, Problem, Task
    from labeling.services.imports import prm800k_import
    from selector.services.eval_set import eval_set_freeze, eval_set_reserve

    call_command("migrate", verbosity=0)
    path = Path(args.workdir) / "prm800k.jsonl"
    started = time.perf_counter()
    prm800k_write(path, args.records)
    with open(path, "rb") as stream:
        report = prm800k_import(stream=stream, source=str(path))
    path.unlink()
    assert report.errors == []
    eval_set_reserve()
    # Imported tasks were queued by OpenAI's PRM, not uniformly: the frozen set would be
    # empty. Here the reserved problems' tasks stand in for uniformly queued ones.
    Task.objects.filter(solution__problem__eval_reserved=True).update(queued_by="uniform")
    eval_set = eval_set_freeze()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"prepared {Label.objects.count():,} labels on {Problem.objects.count():,} problems "
        f"({len(eval_set.label_ids):,} in the frozen evaluation set) in "
        f"{time.perf_counter() - started:.0f}s",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--records", type=int, default=97_782)
    parser.add_argument("--compare", action="store_true", help="also the list-based build")
    parser.add_argument("--skip-prepare", action="store_true", help="reuse the database")
    parser.add_argument("--skip-evaluate", action="store_true")
    parser.add_argument("--base-model", default=None, help="default: a tiny BERT built here")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        setup_django(args.database_url)
        print(json.dumps(PHASES[args.phase](args)))
        return 0

    workdir = tempfile.TemporaryDirectory(prefix="train-eval-bench-")
    args.workdir = workdir.name
    if not args.skip_prepare:
        prepare(args)
    if args.base_model is None and not args.skip_evaluate:
        from selector.ml.prm import tiny_bert_write

        args.base_model = str(tiny_bert_write(Path(args.workdir) / "tiny-bert", hidden_size=32))

    build = child("build", args)
    met = "met" if build["peak_rss_mb"] <= GOAL_BUILD_RSS_MB else "NOT MET"  # type: ignore[operator]
    print(
        f"build (streamed): {build['labels']:,} training labels on {build['problems']:,} "
        f"problems -> {build['examples']:,} examples ({build['trajectory_examples']:,} "
        f"trajectories, {build['branch_examples']:,} branches; {build['target_ratings']:,} "
        f"rated targets) in {build['seconds']:.1f}s, CPU {build['cpu_seconds']:.1f}s, "
        f"peak RSS {build['peak_rss_mb']:.0f} MB (goal <= {GOAL_BUILD_RSS_MB} MB: {met})",
        flush=True,
    )
    if args.compare:
        listed = child("build-list", args)
        print(
            f"build (list, before): {listed['examples']:,} examples in "
            f"{listed['seconds']:.1f}s, CPU {listed['cpu_seconds']:.1f}s, "
            f"peak RSS {listed['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    if not args.skip_evaluate:
        evaluation = child("evaluate", args)
        print(
            f"evaluate: {evaluation['evaluated_labels']:,} held-out labels on "
            f"{evaluation['problems']:,} problems (eval set of "
            f"{evaluation['eval_set_labels']:,}) in {evaluation['seconds']:.1f}s, CPU "
            f"{evaluation['cpu_seconds']:.1f}s, peak RSS {evaluation['peak_rss_mb']:.0f} MB "
            f"(tiny BERT scorer, max length {evaluation['max_length']})",
            flush=True,
        )
    print(f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
