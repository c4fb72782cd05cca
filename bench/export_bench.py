"""Export benchmark: 100,000 labeled solutions (~1.1M step labels) on PostgreSQL.

Loads a synthetic PRM800K-sized set into its own database with COPY (not timed), then runs
``prm800k_export`` into a file in a fresh subprocess per size, so each peak RSS is that run's.
Prints solutions/s, MB/s and peak RSS at 10k and 100k labels, and at 100k again with every
label shaped like an imported PRM800K record (the re-export path).

    .venv/bin/python bench/export_bench.py [--database-url postgres://…/stepwise_exportbench]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._pg import ensure_database, setup_django  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/stepwise_exportbench"
SOLUTIONS = 100_000
PER_PROBLEM = 8
SIZES = (10_000, 100_000)


def _text(rng: random.Random, n_chars: int) -> str:
    words = ["so", "we", "have", "$x^2$", "\\frac{1}{2}", "then", "the", "sum", "is", "$3$"]
    out: list[str] = []
    size = 0
    while size < n_chars:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def load(n: int, seed: int = 0) -> int:
    """COPY ``n`` labeled solutions (phase-2 shaped) into an empty database; returns steps."""
    from django.db import connection

    from labeling.models import text_sha256

    rng = random.Random(seed)
    now = datetime(2024, 1, 1, tzinfo=UTC)
    n_problems = n // PER_PROBLEM
    step_labels = 0
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(
            "COPY labeling_problem (id, unique_id, problem, problem_hash, solution, answer,"
            " subject, level, created_at) FROM STDIN"
        ) as copy:
            for p in range(1, n_problems + 1):
                problem = f"Problem {p}: " + _text(rng, 250)
                copy.write_row(
                    (p, f"bench/{p}.json", problem, text_sha256(problem),
                     _text(rng, 600), str(p), "Algebra", 3, now)
                )  # fmt: skip
        with (
            raw.copy(
                "COPY labeling_solution (id, problem_id, steps, answer, text_hash, generator,"
                " source, grade, created_at) FROM STDIN"
            ) as sol_copy,
        ):
            solution_steps: list[int] = []
            for s in range(1, n + 1):
                n_steps = rng.randint(1, 21)
                solution_steps.append(n_steps)
                steps = [f"Step {j}. " + _text(rng, 100) for j in range(n_steps)]
                steps[-1] += f"\n\n# Answer\n\n{s}"
                sol_copy.write_row(
                    (s, (s - 1) // PER_PROBLEM + 1, json.dumps(steps), str(s),
                     text_sha256("\n".join(steps)), "bench", "bench", "incorrect", now)
                )  # fmt: skip
        with raw.copy(
            "COPY labeling_task (id, solution_id, kind, generation, priority, queued_score,"
            " required_labels, label_count, lease_count, created_at) FROM STDIN"
        ) as copy:
            for s in range(1, n + 1):
                copy.write_row((s, s, "normal", 1 + s % 10, 0.0, rng.random(), 1, 1, 0, now))
        # Labels reuse each solution's step count; texts are regenerated, which is what
        # matters for the export (bytes moved), not their equality with the solution.
        rng_steps = random.Random(seed + 1)
        with raw.copy(
            "COPY labeling_label (id, task_id, labeler, steps, ratings, finish_reason,"
            " finish_note, total_time_ms, created_at, is_gold) FROM STDIN"
        ) as copy:
            labelers = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(200)]
            for s in range(1, n + 1):
                n_steps = solution_steps[s - 1]
                found_error = rng_steps.random() < 0.7
                label_steps: list[dict[str, Any]] = []
                ratings: list[int | None] = []
                for j in range(n_steps):
                    text = f"Step {j}. " + _text(rng_steps, 100)
                    if found_error and j == n_steps - 1:
                        completions = [{"text": text, "rating": -1, "flagged": None}] + [
                            {"text": _text(rng_steps, 100), "rating": 1, "flagged": None}
                            for _ in range(3)
                        ]
                        label_steps.append(
                            {"completions": completions, "human_completion": None,
                             "chosen_completion": None}
                        )  # fmt: skip
                        ratings.append(-1)
                    else:
                        rating = rng_steps.choice([0, 1, 1, 1])
                        label_steps.append(
                            {"completions": [{"text": text, "rating": rating, "flagged": None}],
                             "human_completion": None, "chosen_completion": 0}
                        )  # fmt: skip
                        ratings.append(rating)
                step_labels += n_steps
                copy.write_row(
                    (s, s, labelers[s % len(labelers)], json.dumps(label_steps),
                     json.dumps(ratings), "found_error" if found_error else "solution", "",
                     rng_steps.randint(10_000, 900_000), now + timedelta(seconds=s), False)
                )  # fmt: skip
        for table in ("problem", "solution", "task", "label"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('labeling_{table}', 'id'),"
                f" (SELECT MAX(id) FROM labeling_{table}))"
            )
        cursor.execute("ANALYZE")
    return step_labels


def child(size: int, out_path: str) -> None:
    """One export run in this fresh process; prints a JSON line with its figures."""
    from labeling.models import Label
    from labeling.services.export import ExportFilters, prm800k_export

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    labels = Label.objects.filter(id__lte=size)
    start = time.perf_counter()
    with open(out_path, "wb", buffering=1 << 20) as out:
        written = prm800k_export(out=out, filters=ExportFilters(), labels=labels)
    elapsed = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "size": size,
                "written": written,
                "seconds": elapsed,
                "bytes": os.path.getsize(out_path),
                "baseline_rss_mb": baseline_kb / 1024,
                "peak_rss_mb": peak_kb / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--reload", action="store_true", help="drop and reload the data")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        setup_django(args.database_url)
        child(int(args.child[0]), args.child[1])
        return

    ensure_database(args.database_url)
    setup_django(args.database_url)
    from django.core.management import call_command

    from labeling.models import Label

    if args.reload:
        call_command("flush", "--noinput", verbosity=0)
    call_command("migrate", "--noinput", verbosity=0)
    if Label.objects.count() != SOLUTIONS:
        call_command("flush", "--noinput", verbosity=0)
        start = time.perf_counter()
        steps = load(SOLUTIONS)
        print(f"loaded {SOLUTIONS:,} labeled solutions, {steps:,} step labels "
              f"in {time.perf_counter() - start:.1f}s (not counted)")  # fmt: skip
    print(
        f"{'labels':>8} {'kind':>9} {'seconds':>8} {'sol/s':>8} {'MB':>8} {'MB/s':>7} "
        f"{'peak RSS MB':>12} {'(at start)':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        runs = [(size, "native") for size in SIZES] + [(SIZES[-1], "imported")]
        for size, kind in runs:
            if kind == "imported":
                _set_import_extras(True)
            try:
                out = Path(tmp) / f"export-{size}.jsonl"
                result = subprocess.run(
                    [sys.executable, __file__, "--database-url", args.database_url,
                     "--child", str(size), str(out)],
                    check=True, capture_output=True, text=True, cwd=ROOT,
                )  # fmt: skip
            finally:
                if kind == "imported":
                    _set_import_extras(False)
            r = json.loads(result.stdout.strip().splitlines()[-1])
            mb = r["bytes"] / 1e6
            print(
                f"{r['written']:>8,} {kind:>9} {r['seconds']:>8.2f} "
                f"{r['written'] / r['seconds']:>8,.0f} {mb:>8.1f} {mb / r['seconds']:>7.1f} "
                f"{r['peak_rss_mb']:>12.1f} {r['baseline_rss_mb']:>10.1f}"
            )


def _set_import_extras(on: bool) -> None:
    """Make every label look imported (PRM800K's phase-2 layout), or native again.

    Imported labels take the export's other path: key lists and flags from record_extras.
    """
    from django.db import connection

    extras = {
        "question_keys": ["problem", "ground_truth_solution", "ground_truth_answer",
                          "pre_generated_steps", "pre_generated_answer",
                          "pre_generated_verifier_score"],
        "question_overrides": {},
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "generation": 6,
        "label_keys": ["steps", "total_time", "finish_reason"],
    }  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE labeling_label SET record_extras = %s::jsonb",
            [json.dumps(extras) if on else None],
        )
        # FULL when restoring: the UPDATEs leave a dead copy of every row behind, which
        # would slow the next run's scans.
        cursor.execute(
            "VACUUM ANALYZE labeling_label" if on else "VACUUM FULL ANALYZE labeling_label"
        )


if __name__ == "__main__":
    main()
