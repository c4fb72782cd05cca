"""Import benchmark: 1,000,000 synthetic candidates (10,000 problems x 100) into PostgreSQL.

Writes the problems and candidates as JSONL with ``bench/synth.py`` (not timed), recreates its
own database (``stepwise_importbench`` unless ``--database-url``), migrates, then imports
through the same services as ``manage.py import_problems`` / ``import_candidates``. Prints
candidates/s and the process's RSS at 100k lines and at the end (memory should be flat), then
grades the final answers of ``--grade-problems`` problems and prints distinct answers graded/s
and candidates resolved/s.

    .venv/bin/python bench/import_bench.py [--problems 10000] [--per-problem 100]

With ``--prm800k`` it times ``import_prm800k`` instead, on synthetic records of every real
shape at the public release's size (``--records``, default 97,782 lines: phase 2 records with
alternatives at the error step, about 1% phase-1 records full of alternatives and human
completions, screening records with null ground truths, give-ups whose last step is null;
about 1.1M step labels), and prints records/s, step labels/s and RSS (goal: >= 5,000
records/s on 2 idle cores, RSS <= 300 MB), with PostgreSQL's WAL and buffer writes meanwhile.

    .venv/bin/python bench/import_bench.py --prm800k [--records 97782]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/stepwise_importbench"
CHECKPOINT = 100_000


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of a process (this one by default), from /proc."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recreate_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    admin_url = database_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


class Checkpoints:
    """A line iterator over a binary file that notes time and RSS at given line counts."""

    def __init__(self, path: Path, at: set[int], unit: str = "candidates") -> None:
        self.path = path
        self.at = at
        self.unit = unit
        self.lines = 0
        self.started = time.perf_counter()
        self.notes: list[tuple[int, float, float, float]] = []

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb", buffering=1 << 20) as f:
            for line in f:
                self.lines += 1
                if self.lines in self.at:
                    self.note()
                yield line

    def note(self) -> None:
        elapsed = time.perf_counter() - self.started
        self.notes.append((self.lines, elapsed, rss_mb(), peak_rss_mb()))
        lines, _, rss, peak = self.notes[-1]
        print(
            f"  {lines:>9,} lines read: {lines / elapsed:>9,.0f} {self.unit}/s, "
            f"RSS {rss:.0f} MB (peak {peak:.0f} MB)",
            flush=True,
        )


PRM800K_RELEASE_LINES = 97_782  # phase2_train.jsonl
PRM800K_PROBLEMS = 12_000


def prm800k_records(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """``n`` synthetic PRM800K records in the release's proportions and shapes."""
    rng = random.Random(seed)
    base = datetime(2022, 7, 1)
    for i in range(n):
        problem = rng.randrange(PRM800K_PROBLEMS)
        labeler = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        timestamp = (base + timedelta(seconds=37 * i, microseconds=i % 999_983)).isoformat(
            timespec="microseconds"
        )
        question: dict[str, Any] = {"problem": f"Problem {problem}: find $x$ if $x^2 = {problem}$."}
        steps: list[dict[str, Any]] = []
        if i % 100 == 0:  # phase 1: several rated alternatives per step, human completions
            question["ground_truth_answer"] = str(problem)
            for k in range(rng.randint(10, 30)):
                alts = [
                    {
                        "text": f"Step {k} option {j} of {i}.",
                        "rating": rng.choice([-1, 0, 1]),
                        "flagged": False,
                    }
                    for j in range(rng.randint(1, 7))
                ]
                if all(a["rating"] == -1 for a in alts):
                    human = {
                        "text": f"My step {k}.",
                        "rating": None,
                        "source": "human",
                        "flagged": False,
                    }
                    steps.append(
                        {"completions": alts, "human_completion": human, "chosen_completion": None}
                    )
                else:
                    chosen = next(j for j, a in enumerate(alts) if a["rating"] != -1)
                    steps.append(
                        {"completions": alts, "human_completion": None, "chosen_completion": chosen}
                    )
            record: dict[str, Any] = {"generation": None, "qc": False, "screening": False}
            finish = "solution"
        else:
            screening = i % 50 == 1
            n_steps = rng.randint(6, 20)
            own = [f"Record {i}, step {k}: so $x = {k}$." for k in range(n_steps - 1)]
            own.append(f"# Answer\n\n{i}")
            question["ground_truth_solution"] = None if screening else f"Reference {problem}."
            question["ground_truth_answer"] = None if screening else str(problem)
            question["pre_generated_steps"] = own
            question["pre_generated_answer"] = str(i)
            question["pre_generated_verifier_score"] = rng.random()
            finish = rng.choice(["found_error"] * 6 + ["solution"] * 3 + ["give_up"])
            rated = n_steps if finish == "solution" else rng.randint(1, n_steps)
            for k in range(rated):
                error = finish == "found_error" and k == rated - 1
                completion = {
                    "text": own[k],
                    "rating": -1 if error else rng.choice([0, 1, 1]),
                    "flagged": None,
                }
                if error:
                    alts = [
                        {
                            "text": f"Alternative {j} at {k}.",
                            "rating": rng.choice([-1, 0, 1]),
                            "flagged": False,
                        }
                        for j in range(rng.randint(0, 4))
                    ]
                    steps.append(
                        {
                            "completions": [completion, *alts],
                            "human_completion": None,
                            "chosen_completion": None,
                        }
                    )
                else:
                    steps.append(
                        {
                            "completions": [completion],
                            "human_completion": None,
                            "chosen_completion": 0,
                        }
                    )
            if finish == "give_up":
                steps.append(
                    {"completions": None, "human_completion": None, "chosen_completion": None}
                )
            record = {
                "generation": -1 if screening else 1 + i % 10,
                "qc": i % 97 == 5,
                "screening": screening,
            }
        yield {
            "labeler": labeler,
            "timestamp": timestamp,
            "generation": record["generation"],
            "is_quality_control_question": record["qc"],
            "is_initial_screening_question": record["screening"],
            "question": question,
            "label": {
                "steps": steps,
                "total_time": rng.randint(1000, 900_000),
                "finish_reason": finish,
            },
        }


def prm800k_write(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for record in prm800k_records(n):
            out.write(json.dumps(record) + "\n")


def prm800k_run(args: argparse.Namespace) -> int:
    """Time import_prm800k on ``args.records`` synthetic records of the release's shapes."""
    from labeling.prm800k import step_ratings  # noqa: F401  (the reader the import uses)

    workdir = Path(tempfile.mkdtemp(prefix="prm800k-bench-"))
    path = workdir / "prm800k.jsonl"
    started = time.perf_counter()
    # In a child process, so generating the file does not count towards this process's RSS.
    subprocess.run(
        [sys.executable, __file__, f"--write-prm800k={path}", f"--records={args.records}"],
        check=True,
    )
    with open(path, encoding="utf-8") as lines:
        step_labels = sum(
            1
            for line in lines
            for step in json.loads(line)["label"]["steps"]
            for c in step["completions"] or ()
            if c["rating"] is not None
        )
    size_mb = path.stat().st_size / 2**20
    print(
        f"generated {args.records:,} PRM800K records, {step_labels:,} step labels "
        f"({size_mb:.0f} MB) in {time.perf_counter() - started:.1f}s"
    )
    from django.db import connection

    from labeling.models import Label
    from labeling.services.imports import prm800k_import

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    print(f"importing (RSS before: {rss_mb():.0f} MB)")
    io_before = server_io()
    client_cpu, server_cpu = cpu_seconds(), cpu_seconds(backend)
    stream = Checkpoints(path, {n for n in (10_000, 50_000) if n < args.records}, unit="records")
    report = prm800k_import(stream=stream, source=str(path))  # type: ignore[arg-type]
    stream.note()
    elapsed = stream.notes[-1][1]
    client_cpu, server_cpu = cpu_seconds() - client_cpu, cpu_seconds(backend) - server_cpu
    assert report.errors == [] and Label.objects.count() == args.records
    print(
        f"import_prm800k: {args.records:,} records in {elapsed:.1f}s = "
        f"{args.records / elapsed:,.0f} records/s, {step_labels / elapsed:,.0f} step labels/s; "
        f"created {report.summary().split('created ', 1)[1]}; "
        f"RSS {rss_mb():.0f} MB, peak {peak_rss_mb():.0f} MB"
    )
    # Wall-clock rates depend on what else the machine runs; CPU time per record does not.
    per_10k = 10_000 / args.records
    print(
        f"  CPU: {client_cpu:.1f}s importer + {server_cpu:.1f}s PostgreSQL backend = "
        f"{client_cpu * per_10k:.2f}s + {server_cpu * per_10k:.2f}s per 10k records "
        f"({args.records / client_cpu:,.0f} and {args.records / server_cpu:,.0f} records per "
        f"CPU-second; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    # The rate falls as the tables grow while the CPU per record stays flat: the writes wait
    # on evicting dirty pages once the tables outgrow shared_buffers. Cluster-wide counters.
    io_after = server_io()
    print(
        f"  PostgreSQL (cluster-wide, during the import): {io_after['wal'] - io_before['wal']:,.0f}"
        f" MB of WAL, {io_after['backend'] - io_before['backend']:,.0f} MB written by backends"
        f" evicting dirty pages, {io_after['clean'] - io_before['clean']:,.0f} MB by the"
        f" background writer, {io_after['checkpoints'] - io_before['checkpoints']:.0f}"
        f" checkpoints; shared_buffers {io_after['shared_buffers']}"
    )
    if not args.keep:
        path.unlink()
        workdir.rmdir()
    return 0


def server_io() -> dict[str, Any]:
    """PostgreSQL's write counters: WAL position and buffers written, in MB."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') / 2^20,"
            " buffers_backend * current_setting('block_size')::int / 2^20,"
            " buffers_clean * current_setting('block_size')::int / 2^20,"
            " checkpoints_timed + checkpoints_req, current_setting('shared_buffers')"
            " FROM pg_stat_bgwriter"
        )
        wal, backend, clean, checkpoints, shared_buffers = cursor.fetchone()
    return {
        "wal": float(wal),
        "backend": float(backend),
        "clean": float(clean),
        "checkpoints": checkpoints,
        "shared_buffers": shared_buffers,
    }


def main() -> int:
    if any(a.startswith("--write-prm800k=") for a in sys.argv[1:]):
        writer = argparse.ArgumentParser()
        writer.add_argument("--write-prm800k", type=Path)
        writer.add_argument("--records", type=int)
        options = writer.parse_args()
        prm800k_write(options.write_prm800k, options.records)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=10_000)
    parser.add_argument("--per-problem", type=int, default=100)
    parser.add_argument("--grade-problems", type=int, default=300, help="0: grade all")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--keep", action="store_true", help="keep the generated JSONL files")
    parser.add_argument("--prm800k", action="store_true", help="time import_prm800k instead")
    parser.add_argument("--records", type=int, default=PRM800K_RELEASE_LINES)
    args = parser.parse_args()
    total = args.problems * args.per_problem

    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("SECRET_KEY", f"bench-only-{secrets.token_urlsafe(48)}")  # dev run
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.settings")
    recreate_database(args.database_url)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    print(f"database {connection.settings_dict['NAME']} on {connection.vendor}, migrated")
    if args.prm800k:
        return prm800k_run(args)

    workdir = Path(tempfile.mkdtemp(prefix="import-bench-"))
    problems_path = workdir / "problems.jsonl"
    candidates_path = workdir / "candidates.jsonl"
    started = time.perf_counter()
    # In a child process, so generating 1M lines does not count towards this process's RSS.
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "synth.py"),
            f"--problems={args.problems}",
            f"--per-problem={args.per_problem}",
            f"--out-problems={problems_path}",
            f"--out-candidates={candidates_path}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    size_mb = candidates_path.stat().st_size / 2**20
    print(
        f"generated {args.problems:,} problems and {total:,} candidates "
        f"({size_mb:.0f} MB) in {time.perf_counter() - started:.1f}s"
    )

    from labeling.models import Problem, Solution
    from labeling.services.grading import answers_grade
    from labeling.services.imports import candidates_import, problems_import

    with open(problems_path, "rb") as f:
        started = time.perf_counter()
        problems_import(stream=f, source=str(problems_path))
        print(
            f"imported {Problem.objects.count():,} problems in {time.perf_counter() - started:.1f}s"
        )

    print(f"importing {total:,} candidates (RSS before: {rss_mb():.0f} MB)")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    client_cpu, server_cpu = cpu_seconds(), cpu_seconds(backend)
    stream = Checkpoints(candidates_path, {n for n in (CHECKPOINT,) if n < total})
    report = candidates_import(stream=stream, source=str(candidates_path))  # type: ignore[arg-type]
    stream.note()
    elapsed = stream.notes[-1][1]
    created = report.created.get("solutions", 0)
    client_cpu, server_cpu = cpu_seconds() - client_cpu, cpu_seconds(backend) - server_cpu
    print(
        f"import: {created:,} candidates created in {elapsed:.1f}s = "
        f"{created / elapsed:,.0f} candidates/s; RSS {rss_mb():.0f} MB, peak {peak_rss_mb():.0f} MB"
    )
    # Wall-clock rates depend on what else the machine runs; CPU time per candidate does not.
    print(
        f"  CPU: {client_cpu:.1f}s importer + {server_cpu:.1f}s PostgreSQL backend = "
        f"{1e6 * client_cpu / total:.0f} + {1e6 * server_cpu / total:.0f} us per line "
        f"(importer alone: {total / client_cpu:,.0f} lines per CPU-second; "
        f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    # synth may repeat a text within a problem (few phrasings on short chains): deduplicated.
    assert Solution.objects.count() == created
    print(f"  ({total - created:,} lines were duplicates of an earlier candidate)")

    started = time.perf_counter()
    report = candidates_import(stream=Checkpoints(candidates_path, set()), source="again")  # type: ignore[arg-type]
    again = time.perf_counter() - started
    print(
        f"re-import (all duplicates): {report.created.get('solutions', 0)} created, "
        f"{total / again:,.0f} lines/s"
    )

    ids = list(Problem.objects.order_by("id").values_list("id", flat=True))
    if args.grade_problems:
        ids = ids[: args.grade_problems]
    grading = answers_grade(problem_ids=ids)
    seconds = grading.seconds
    print(
        f"grading {len(ids):,} problems: {grading.pairs_checked:,} distinct answers in "
        f"{seconds:.1f}s = {grading.pairs_checked / seconds:,.0f} answers/s, "
        f"{grading.solutions_graded / seconds:,.0f} candidates resolved/s "
        f"({', '.join(f'{k} {v}' for k, v in sorted(grading.by_grade.items()))})"
    )
    # Synthetic answers are integers, which the grader settles without math-verify; time the
    # symbolic path on its own with LaTeX forms of the same answers.
    from labeling.services.grading import AnswerChecker

    golds = list(Problem.objects.order_by("id").values_list("answer", flat=True)[:500])
    forms = (r"\frac{{{d}}}{{2}}", r"{g}.5", r"\sqrt{{{s}}}", r"({g}, 1]")
    pairs = [
        (i, gold, form.format(d=2 * int(gold), g=gold, s=int(gold) ** 2))
        for i, gold in enumerate(golds)
        for form in forms
    ]
    with AnswerChecker() as checker:
        checker.check(r"\frac{1}{2}", "0.5")  # process start-up is not what we measure
        started = time.perf_counter()
        grades = [grade for _, grade, _ in checker.check_many(pairs)]
        seconds = time.perf_counter() - started
    print(
        f"symbolic checks (math-verify, {checker.workers} processes): {len(pairs):,} answers "
        f"in {seconds:.1f}s = {len(pairs) / seconds:,.0f} answers/s "
        f"({grades.count('correct')} correct, {grades.count('ungradable')} ungradable)"
    )
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    if not args.keep:
        problems_path.unlink()
        candidates_path.unlink()
        workdir.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
