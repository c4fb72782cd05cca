"""queue_load benchmark: claim -> submit through the real HTTP API under concurrent annotators.

Fills its own PostgreSQL database (``stepwise_queuebench`` unless ``--database-url``) with
``--tasks`` queued normal tasks (10% of them with overlap 2, random priorities), starts gunicorn
on a free loopback port, and for each concurrency level C runs C annotators (distinct users,
token auth) in one asyncio process with httpx: each loops claim (``POST /api/queue/next/``) ->
submit (``POST /api/tasks/{id}/submit/``) until ``--seconds`` pass. Prints p50/p95/p99/max
latency of claim and submit, tasks labeled per second and the CPU time spent per labeled task
by the server (gunicorn master and workers) and by PostgreSQL (the backends serving this
database), read from /proc, so the figure holds on a busy shared machine where latencies do
not. Then it checks the database for double
assignments (labels or leases beyond a task's overlap, one annotator twice on a task, counters
that disagree with rows) and prints the plan PostgreSQL uses for the claim query.

    .venv/bin/python bench/queue_load.py [--tasks 100000] [--levels 1,10,50] [--seconds 60]

Everything stays on 127.0.0.1; every loop is bounded by time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import _pg  # noqa: E402
from bench._pg import ensure_database  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/stepwise_queuebench"
PROBLEMS = 1_000
TARGET_P99_MS = 50.0


def setup_django(database_url: str) -> None:
    os.environ["LOG_LEVEL"] = "WARNING"  # httpx logs every request at INFO
    _pg.setup_django(database_url)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def fill(*, tasks: int, annotators: int) -> list[str]:
    """Empty the queue tables, insert the pool with generate_series, return annotator tokens."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from labeling.models import AnnotatorProfile, QualitySettings

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE labeling_skip, labeling_label, labeling_lease, labeling_task,"
            " labeling_solution, labeling_problem RESTART IDENTITY CASCADE"
        )
        cursor.execute(
            "INSERT INTO labeling_problem (unique_id, problem, problem_hash, solution, answer,"
            " subject, level, created_at)"
            " SELECT 'bench/' || g || '.json', 'What is $' || g || ' + ' || g || '$?',"
            " md5(g::text), 'Add them.', (2 * g)::text, 'Algebra', 1, now()"
            " FROM generate_series(1, %s) g",
            [PROBLEMS],
        )
        cursor.execute(
            "INSERT INTO labeling_solution (problem_id, steps, answer, text_hash, generator,"
            " source, grade, created_at)"
            " SELECT 1 + g %% %s, jsonb_build_array('Step one of candidate ' || g || '.',"
            " 'Step two.', E'# Answer\\n\\n4'), '4', md5(g::text), 'bench', 'bench', 'ungraded',"
            " now() FROM generate_series(1, %s) g",
            [PROBLEMS, tasks],
        )
        cursor.execute(
            "INSERT INTO labeling_task (solution_id, kind, generation, priority, queued_score,"
            " required_labels, label_count, lease_count, created_at)"
            " SELECT id, 'normal', 1, random(), random(), CASE WHEN id % 10 = 0 THEN 2 ELSE 1 END,"
            " 0, 0, now() FROM labeling_solution"
        )
        cursor.execute("ANALYZE labeling_task")
        cursor.execute("ANALYZE labeling_label")
        cursor.execute("ANALYZE labeling_lease")
    QualitySettings.objects.get_or_create(pk=1)  # defaults: QC 10% (no QC questions queued)
    group, _ = Group.objects.get_or_create(name="annotators")
    User.objects.filter(username__startswith="bench-annotator-").delete()
    password = make_password(None)
    users = User.objects.bulk_create(
        [User(username=f"bench-annotator-{i}", password=password) for i in range(annotators)]
    )
    group.user_set.add(*users)
    AnnotatorProfile.objects.bulk_create([AnnotatorProfile(user=user) for user in users])
    return [Token.objects.create(user=user).key for user in users]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(
    *, database_url: str, port: int, workers: int, threads: int, token: str
) -> subprocess.Popen:
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        DEBUG="0",
        LOG_LEVEL="WARNING",
        PYTHONWARNINGS="ignore::UserWarning",  # whitenoise: no collected static dir here
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "stepwise.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            # Longer than any pause between one annotator's requests, so the server never
            # closes a keep-alive connection the client is about to reuse.
            "--keep-alive",
            "120",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    # Ready means a worker answered an API call, not just that the port is bound.
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with status {proc.returncode}")
        try:
            response = httpx.get(
                f"http://127.0.0.1:{port}/api/me/",
                headers={"Authorization": f"Token {token}"},
                timeout=2.0,
            )
            if response.status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise SystemExit("gunicorn did not answer /api/me/ within 60 s")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process from /proc (None once it has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of stat


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def _backends_of(database: str, exclude: set[int]) -> list[int]:
    """PostgreSQL backend processes serving ``database`` (their titles name it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if title.startswith("postgres:") and f" {database} " in title:
            pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds used by the server's process tree and by PostgreSQL backends over a run.

    Sampled every 0.5 s, keeping each process's latest reading, so a worker or backend that
    exits mid-run still counts up to its last sample. Readings taken before the run starts
    are the baseline; processes that appear later start from zero (their start-up is real
    cost too).
    """

    def __init__(self, *, server_pid: int, database: str, exclude: set[int]) -> None:
        self.server_pid, self.database, self.exclude = server_pid, database, exclude
        self.baseline: dict[str, dict[int, float]] = {"server": {}, "postgres": {}}
        self.latest: dict[str, dict[int, float]] = {"server": {}, "postgres": {}}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        groups = {
            "server": _process_tree(self.server_pid),
            "postgres": _backends_of(self.database, self.exclude),
        }
        for name, pids in groups.items():
            for pid in pids:
                seconds = _cpu_seconds(pid)
                if seconds is not None:
                    self.latest[name][pid] = seconds

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self.baseline = {name: dict(readings) for name, readings in self.latest.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def used(self, name: str) -> float:
        base = self.baseline[name]
        return sum(now - base.get(pid, 0.0) for pid, now in self.latest[name].items())


@dataclass
class LevelResult:
    claims: list[float] = field(default_factory=list)  # seconds
    submits: list[float] = field(default_factory=list)
    empty: int = 0
    errors: list[str] = field(default_factory=list)


async def post(client, url: str, body: dict, headers: dict, result: LevelResult):  # type: ignore[no-untyped-def]
    """POST, retrying once on a dropped connection (both endpoints are safe to repeat)."""
    import httpx

    try:
        return await client.post(url, json=body, headers=headers)
    except httpx.TransportError as error:
        result.errors.append(f"{url}: {error!r} (retried)")
        return await client.post(url, json=body, headers=headers)


async def annotator_loop(  # type: ignore[no-untyped-def]
    client, token: str, deadline: float, think: float, result: LevelResult
) -> None:
    headers = {"Authorization": f"Token {token}"}
    rng = random.Random(token)
    if think:
        # People do not start in lock-step: spread the first claims over one think time.
        await asyncio.sleep(rng.uniform(0, think))
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await post(client, "/api/queue/next/", {}, headers, result)
        result.claims.append(time.perf_counter() - started)
        if response.status_code == 204:
            result.empty += 1
            return
        if response.status_code != 200:
            result.errors.append(f"claim {response.status_code}: {response.text[:200]}")
            return
        task = response.json()
        body = {
            "idempotency_key": str(uuid.uuid4()),
            "ratings": [1] * len(task["steps"]),
            "flags": [False] * len(task["steps"]),
            "human_completion": None,
            "finish_reason": "solution",
            "finish_note": "",
            "total_time_ms": 1000,
            "started_at": None,
        }
        started = time.perf_counter()
        response = await post(client, f"/api/tasks/{task['id']}/submit/", body, headers, result)
        result.submits.append(time.perf_counter() - started)
        if response.status_code not in (200, 201):
            result.errors.append(f"submit {response.status_code}: {response.text[:200]}")
            return
        if think:
            # The person reading the next solution: +-50% so the load does not pulse.
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))


async def run_level(
    *, base_url: str, tokens: list[str], seconds: float, think: float
) -> LevelResult:
    import httpx

    result = LevelResult()
    limits = httpx.Limits(max_connections=len(tokens), max_keepalive_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0) as client:
        # Warm the connections and the workers so the timings are steady state.
        await asyncio.gather(
            *(client.get("/api/me/", headers={"Authorization": f"Token {t}"}) for t in tokens)
        )
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(annotator_loop(client, t, deadline, think, result) for t in tokens))
    return result


def percentiles(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    ms = sorted(s * 1000 for s in samples)

    def pick(q: float) -> float:
        return ms[min(len(ms) - 1, int(q * len(ms)))]

    return (
        f"p50 {statistics.median(ms):6.1f}  p95 {pick(0.95):6.1f}  p99 {pick(0.99):6.1f}"
        f"  max {ms[-1]:6.1f} ms  (n={len(ms)})"
    )


def p99(samples: list[float]) -> float:
    ms = sorted(s * 1000 for s in samples)
    return ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else 0.0


def double_assignments() -> dict[str, int]:
    from django.db import connection

    checks = {
        "labels beyond overlap": "SELECT count(*) FROM (SELECT t.id FROM labeling_task t"
        " JOIN labeling_label l ON l.task_id = t.id GROUP BY t.id, t.required_labels"
        " HAVING count(*) > t.required_labels) x",
        "labels+leases beyond overlap": "SELECT count(*) FROM labeling_task t WHERE"
        " (SELECT count(*) FROM labeling_label l WHERE l.task_id = t.id)"
        " + (SELECT count(*) FROM labeling_lease s WHERE s.task_id = t.id) > t.required_labels"
        " AND t.id IN (SELECT task_id FROM labeling_label"
        " UNION SELECT task_id FROM labeling_lease)",
        "annotator twice on a task": "SELECT count(*) FROM (SELECT task_id, annotator_id FROM"
        " (SELECT task_id, annotator_id FROM labeling_label UNION ALL SELECT task_id,"
        " annotator_id FROM labeling_lease) u GROUP BY task_id, annotator_id"
        " HAVING count(*) > 1) x",
        "counters out of step with rows": "SELECT count(*) FROM labeling_task t WHERE"
        " t.label_count <> (SELECT count(*) FROM labeling_label l WHERE l.task_id = t.id)"
        " OR t.lease_count <> (SELECT count(*) FROM labeling_lease s WHERE s.task_id = t.id)",
    }
    with connection.cursor() as cursor:
        found = {}
        for name, sql in checks.items():
            cursor.execute(sql)
            found[name] = int(cursor.fetchone()[0])
    return found


def service_latency(rounds: int) -> tuple[list[float], list[float]]:
    """task_claim_next / label_submit called in-process (no HTTP), one annotator, sequentially."""
    from django.contrib.auth.models import User

    from labeling.services.labels import label_submit
    from labeling.services.queue import task_claim_next

    user = User.objects.filter(username__startswith="bench-annotator-").order_by("-id")[0]
    claims: list[float] = []
    submits: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        claim = task_claim_next(annotator=user)
        claims.append(time.perf_counter() - started)
        if claim is None:
            break
        steps = claim.task.solution.steps
        started = time.perf_counter()
        label_submit(
            annotator=user,
            task_id=claim.task.pk,
            idempotency_key=str(uuid.uuid4()),
            ratings=[1] * len(steps),
            flags=None,
            human_completion=None,
            finish_reason="solution",
            finish_note="",
            total_time_ms=1000,
            started_at=None,
        )
        submits.append(time.perf_counter() - started)
    return claims, submits


def claim_plan() -> str:
    """EXPLAIN ANALYZE of the claim's SELECT ... FOR UPDATE, captured from the real service."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from labeling.services.queue import task_claim_next

    captured: list[tuple[str, Any]] = []

    def capture(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if "FOR UPDATE" in sql and "labeling_task" in sql:
            captured.append((sql, params))
        return execute(sql, params, many, context)

    user = User.objects.filter(username__startswith="bench-annotator-").order_by("id")[0]
    with transaction.atomic():
        with connection.execute_wrapper(capture):
            task_claim_next(annotator=user)
        if not captured:
            transaction.set_rollback(True)
            return "(no claim query captured)"
        sql, params = captured[0]
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--levels", default="1,10,50", help="comma-separated concurrency levels")
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each level")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=0.0,
        help="pause after each submit (0: back-to-back requests, i.e. a saturation test)",
    )
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    args = parser.parse_args()
    if not args.database_url.startswith("postgres"):
        raise SystemExit("queue_load needs PostgreSQL (--database-url postgres://...)")
    levels = [int(level) for level in args.levels.split(",")]

    ensure_database(args.database_url)
    setup_django(args.database_url)
    started = time.perf_counter()
    tokens = fill(tasks=args.tasks, annotators=max(levels))
    print(f"filled {args.tasks:,} tasks in {time.perf_counter() - started:.1f} s")
    print(
        f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.1f}"
        f"  gunicorn: {args.workers} workers x {args.threads} threads  think: {args.think_ms} ms"
    )

    port = free_port()
    server = start_gunicorn(
        database_url=args.database_url,
        port=port,
        workers=args.workers,
        threads=args.threads,
        token=tokens[0],
    )
    verdicts: list[str] = []
    database = args.database_url.rsplit("/", 1)[1]
    from django.db import connection

    with connection.cursor() as cursor:  # this process's own backend is not the server's
        cursor.execute("SELECT pg_backend_pid()")
        own_backend = {int(cursor.fetchone()[0])}
    try:
        for level in levels:
            with CpuMeter(server_pid=server.pid, database=database, exclude=own_backend) as cpu:
                result = asyncio.run(
                    run_level(
                        base_url=f"http://127.0.0.1:{port}",
                        tokens=tokens[:level],
                        seconds=args.seconds,
                        think=args.think_ms / 1000,
                    )
                )
            rate = len(result.submits) / args.seconds
            print(f"\nC={level:<3} tasks labeled/s {rate:7.1f}")
            print(f"  claim   {percentiles(result.claims)}")
            print(f"  submit  {percentiles(result.submits)}")
            labeled = max(1, len(result.submits))
            server_ms = 1000 * cpu.used("server") / labeled
            postgres_ms = 1000 * cpu.used("postgres") / labeled
            print(
                f"  CPU per labeled task: server {server_ms:5.1f} ms + PostgreSQL"
                f" {postgres_ms:5.1f} ms = {server_ms + postgres_ms:5.1f} ms"
            )
            if result.errors:
                print(f"  errors: {len(result.errors)}, first: {result.errors[0]}")
            if level == 50:
                verdicts.append(
                    f"C=50 claim p99 {p99(result.claims):.1f} ms, submit p99"
                    f" {p99(result.submits):.1f} ms (target <= {TARGET_P99_MS:.0f} ms)"
                )
    finally:
        stop(server)

    claims, submits = service_latency(200)
    print("\nin-process services, C=1 (no HTTP):")
    print(f"  claim   {percentiles(claims)}")
    print(f"  submit  {percentiles(submits)}")

    problems = double_assignments()
    print("\ndouble-assignment checks (all must be 0):")
    for name, count in problems.items():
        print(f"  {name:32s} {count}")
    print("\nclaim query plan:\n" + claim_plan())
    for verdict in verdicts:
        print(verdict)
    if any(problems.values()):
        raise SystemExit("double assignments found")


if __name__ == "__main__":
    main()
