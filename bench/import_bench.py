"""Import benchmark: 1,000,000 synthetic candidates (10,000 problems x 100) into PostgreSQL.

Writes the problems and candidates as JSONL with ``bench/synth.py`` (not timed), recreates its
own database (``stepwise_importbench`` unless ``--database-url``), migrates, then imports
through the same services as ``manage.py import_problems`` / ``import_candidates``. Prints
candidates/s and the process's RSS at 100k lines and at the end (memory should be flat), then
grades the final answers of ``--grade-problems`` problems and prints distinct answers graded/s
and candidates resolved/s.

    .venv/bin/python bench/import_bench.py [--problems 10000] [--per-problem 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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

    def __init__(self, path: Path, at: set[int]) -> None:
        self.path = path
        self.at = at
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
            f"  {lines:>9,} lines read: {lines / elapsed:>9,.0f} candidates/s, "
            f"RSS {rss:.0f} MB (peak {peak:.0f} MB)",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=10_000)
    parser.add_argument("--per-problem", type=int, default=100)
    parser.add_argument("--grade-problems", type=int, default=300, help="0: grade all")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--keep", action="store_true", help="keep the generated JSONL files")
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
