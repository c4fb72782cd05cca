"""Scale-out of scoring: the wall time of one score job on one `ml` worker, then on two.

Each run starts real `celery worker -Q ml` processes (one torch thread each, so two workers
use two cores and do not oversubscribe them), waits until they are ready, starts one score job
for N synthetic candidates (bench/synth.py) and times it from the job's creation to its
success. The job splits its pool into chunks of --chunk candidates, one Celery task each
(decision 0016). The scores are deleted between the runs, so both score the same pool.

Besides wall time it reports the workers' CPU time (user + sys, from the kernel's accounting of
the reaped worker processes): wall time depends on what else the machine runs, CPU time does
not, so on a shared machine compare the two.

    python bench/score_scaleout.py                    # SQLite + filesystem broker, MiniLM
    python bench/score_scaleout.py --n 2000 --database-url postgres://postgres@127.0.0.1/bench \
        --broker redis://127.0.0.1:6379/6

Last line: ``scale-out: 1 worker X s, 2 workers Y s, speed-up Z`` and the multiplication sign.
Goal: Z >= 1.6.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def configure(args: argparse.Namespace, workdir: Path) -> dict[str, str]:
    """The environment shared by this process and the workers it starts."""
    env = {
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}",
        "CELERY_BROKER_URL": args.broker or "filesystem://",
        "STEPWISE_BROKER_DIR": str(workdir / "broker"),
        "SELECTOR_CHECKPOINT_DIR": str(workdir / "selectors"),
        "SELECTOR_DEVICE": "cpu",
        "SELECTOR_SCORE_CHUNK": str(args.chunk),
        "SELECTOR_EVAL_FRACTION": "0",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    if args.max_length:
        env["SELECTOR_MAX_LENGTH"] = str(args.max_length)
    os.environ.update(env)
    if args.database_url:
        import _pg

        _pg.ensure_database(args.database_url)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return env


def pool_create(n: int, seed: int) -> None:
    import synth

    from labeling.models import Problem, Solution

    per_problem = 8
    n_problems = -(-n // per_problem)
    problems = {
        p["unique_id"]: Problem(
            unique_id=f"scaleout/{p['unique_id']}",
            problem=p["problem"],
            problem_hash=hashlib.sha256(p["problem"].encode()).hexdigest(),
            answer=p["answer"],
        )
        for p in synth.iter_problems(n_problems, seed)
    }
    Problem.objects.bulk_create(problems.values(), batch_size=1000)
    by_uid = {p.unique_id: p for p in Problem.objects.filter(unique_id__startswith="scaleout/")}
    rows = [
        Solution(
            problem=by_uid[f"scaleout/{c['unique_id']}"],
            steps=c["steps"],
            answer=c["answer"],
            text_hash=hashlib.sha256("\n".join(c["steps"]).encode()).hexdigest(),
            generator="synth",
            source="synthetic",
        )
        for c in synth.iter_candidates(n_problems, per_problem, seed)
    ][:n]
    Solution.objects.bulk_create(rows, batch_size=1000)


WORKER_ARGS = ["-A", "stepwise", "worker", "-Q", "ml", "--pool=solo", "--loglevel=INFO"]
WORKER_ARGS += ["--without-heartbeat", "--without-mingle", "--without-gossip"]


def worker_start(env: dict[str, str], name: str, workdir: Path) -> tuple[Any, Path]:
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", *WORKER_ARGS, "-n", f"{name}@%h"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, log


def wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def run(env: dict[str, str], workers: int, version: Any, workdir: Path) -> dict[str, Any]:
    """One score job on ``workers`` fresh workers: wall seconds, worker CPU seconds."""
    from jobs.models import Job, JobKind, JobStatus
    from selector.models import ScoreChunk, SolutionScore
    from selector.services import job_start

    SolutionScore.objects.filter(version=version).delete()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    procs = [worker_start(env, f"scaleout{workers}-{i}", workdir) for i in range(workers)]
    wait(
        lambda: all(b" ready." in log.read_bytes() for _, log in procs),
        180,
        f"{workers} worker(s) to be ready",
    )
    start = time.perf_counter()
    job = job_start(kind=JobKind.SCORE, params={}, version=version)
    wait(
        lambda: Job.objects.filter(pk=job.pk, status__in=["succeeded", "failed"]).exists(),
        7200,
        "the score job",
    )
    wall = time.perf_counter() - start
    job.refresh_from_db()
    for proc, _ in procs:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    if job.status != JobStatus.SUCCEEDED:
        raise SystemExit(f"score job failed: {job.error}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    chunks = ScoreChunk.objects.filter(job=job)
    per_worker: dict[str, int] = {}
    for names, scored in chunks.values_list("workers", "scored"):
        host = names[-1].split("@")[0]
        per_worker[host] = per_worker.get(host, 0) + scored
    return {
        "workers": workers,
        "wall_s": round(wall, 2),
        "worker_cpu_s": round(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2
        ),
        "scored": job.result.get("scored"),
        "chunks": chunks.count(),
        "scored_per_worker": per_worker,
        "per_s": round(job.result.get("scored", 0) / wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=800, help="candidates in the pool")
    parser.add_argument("--chunk", type=int, default=50, help="SELECTOR_SCORE_CHUNK")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--max-length", type=int, default=0, help="SELECTOR_MAX_LENGTH")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    parser.add_argument("--broker", default="", help="default: a fresh filesystem broker")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="score-scaleout-") as tmp:
        workdir = Path(tmp)
        env = configure(args, workdir)
        from labeling.models import Problem
        from selector.services import selector_create_base

        if args.database_url:  # a reused database: start from an empty pool
            Problem.objects.filter(unique_id__startswith="scaleout/").delete()
        pool_create(args.n, args.seed)
        version = selector_create_base(name=f"scaleout-{int(time.time())}")
        one = run(env, 1, version, workdir)
        print(json.dumps(one), flush=True)
        two = run(env, 2, version, workdir)
        print(json.dumps(two), flush=True)
        print(
            f"cpu: 1 worker {one['worker_cpu_s']:.1f} s, 2 workers {two['worker_cpu_s']:.1f} s "
            f"(user+sys of the worker processes; {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f})",
            flush=True,
        )
        if args.database_url:
            Problem.objects.filter(unique_id__startswith="scaleout/").delete()
        speedup = one["wall_s"] / two["wall_s"]
        print(
            f"scale-out: 1 worker {one['wall_s']:.1f} s, 2 workers {two['wall_s']:.1f} s, "
            f"speed-up {speedup:.2f}×"  # noqa: RUF001
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
