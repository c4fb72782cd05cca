"""chaos_soak: annotators against the whole product while its parts fail; then proof that
nothing was lost.

Starts a throw-away PostgreSQL (initdb + pg_ctl from /usr/lib/postgresql/*/bin) and Redis on
free loopback ports in a temporary directory (never the user's servers), migrates, queues
``tasks`` normal tasks of overlap ``overlap``, and runs gunicorn, a Celery worker on the
`default` queue and beat the way production does, with 1-minute leases. ``annotators`` API
clients (bench/_soak_clients.py) claim, think and submit through a relay in front of gunicorn,
retrying 5xx and dropped connections with the same idempotency key; a few walk away from a
task, a few come back after their hold ran out. One fault at a time:

    gunicorn-worker   SIGKILL one gunicorn worker (its master starts another)
    celery-worker     SIGKILL the worker; 2 s later a new one starts (a process supervisor)
    redis-down        Redis stopped for 8 s
    postgres-down     PostgreSQL stopped (fast shutdown) for 10 s
    gunicorn-frozen   gunicorn SIGSTOPped for 15 s
    lost-response     the answers to the next 5 submits dropped after the server committed

Then the annotators stop, their retries drain, and the invariants are checked: no acknowledged
label lost or changed, none duplicated, no task over its overlap, counters equal rows, no
lease stuck past two sweeps, no HTTP 500, every dropped answer's retry "already saved" (200)
with the same label, and no process that needed a restart. Prints one row per fault: when,
how long, seconds until the API answered and a periodic task ran again, the failed requests in
its window by kind and the oldest expired lease; exits 1 if an invariant broke.

    .venv/bin/python bench/chaos_soak.py --preset short   # ~4 min in all; CI runs it
    .venv/bin/python bench/chaos_soak.py --preset full    # 30 annotators, 50,000 tasks
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import _pg  # noqa: E402  (sets a bench-only SECRET_KEY)
from bench._relay import TcpRelay  # noqa: E402
from bench._servers import ThrowawayPostgres, ThrowawayRedis, free_port  # noqa: E402
from bench._soak_clients import Annotator, Behaviour, Ledger  # noqa: E402

LEASE_SECONDS = 60  # STEPWISE_LEASE_MINUTES=1
SWEEP_SECONDS = 60  # beat's lease release (CELERY_BEAT_SCHEDULE)
STUCK_AFTER = 2 * SWEEP_SECONDS + 30  # an expired lease older than this was missed twice
PERIODIC = ("labeling.leases_release_expired", "jobs.jobs_reap", "selector.queue_top_up")
DURATION = {"redis-down": 8.0, "postgres-down": 10.0, "gunicorn-frozen": 15.0}
FAULTS = [
    "gunicorn-worker",
    "celery-worker",
    "redis-down",
    "postgres-down",
    "gunicorn-frozen",
    "lost-response",
]
LOST_RESPONSES = 5


@dataclass(frozen=True)
class Preset:
    annotators: int
    tasks: int
    overlap: int
    seconds: float
    # (earliest second of the run, fault); the outages start just before one of beat's ticks
    # (ALIGNED), so the tick they cover has to be caught up.
    plan: list[tuple[float, str]]
    behaviour: Behaviour
    drain: float = 45.0


ALIGNED = {"redis-down": 3.0, "postgres-down": 4.0}  # seconds before the tick
GAP = 12.0  # quiet seconds after a fault clears, so each window shows that fault alone
ROUND = [
    (0, "gunicorn-worker"),
    (12, "celery-worker"),
    (22, "redis-down"),
    (40, "lost-response"),
    (55, "postgres-down"),
    (75, "gunicorn-frozen"),
]
PRESETS = {
    "short": Preset(
        annotators=10,
        tasks=5_000,
        overlap=2,
        seconds=170,
        plan=[(10 + at, name) for at, name in ROUND],
        behaviour=Behaviour(think=(0.5, 2.0), abandon=0.01, late=0.005, late_think=(65, 100)),
    ),
    "full": Preset(
        annotators=30,
        tasks=50_000,
        overlap=2,
        seconds=900,
        plan=[(start + 3 * at, name) for start in (30, 480) for at, name in ROUND],
        behaviour=Behaviour(think=(1.0, 4.0), abandon=0.005, late=0.002, late_think=(65, 130)),
    ),
}


@dataclass
class Fault:
    name: str
    injected: float  # time.time()
    cleared: float
    note: str = ""


@dataclass
class Product:
    """The throw-away servers and the product's processes, with their logs in ``work``."""

    work: Path
    pg: ThrowawayPostgres
    redis: ThrowawayRedis
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    port: int = 0

    def start(self, name: str) -> None:
        python = [sys.executable]
        celery = [*python, "-m", "celery", "-A", "stepwise"]
        commands = {
            "web": [
                *python,
                "-m",
                "gunicorn",
                "stepwise.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
            ],
            "worker": [*celery, "worker", "-Q", "default", "-c", "2", "--loglevel", "INFO"],
            "beat": [*celery, "beat", "--loglevel", "INFO", "-s", str(self.work / "beat-sched")],
        }
        with open(self.work / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                commands[name],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self, name: str) -> str:
        return (self.work / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.redis.close()
        self.pg.close()


def seed(*, tasks: int, overlap: int, annotators: int) -> list[str]:
    """Problems, candidates and tasks with generate_series; annotators with API tokens."""
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from labeling.models import AnnotatorProfile, QualitySettings

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO labeling_problem (unique_id, problem, problem_hash, solution, answer,"
            " subject, level, created_at) SELECT 'soak/' || g || '.json', 'What is $' || g"
            " || ' + ' || g || '$?', md5(g::text), 'Add them.', (2 * g)::text, 'Algebra', 1,"
            " now() FROM generate_series(1, 1000) g"
        )
        cursor.execute(
            "INSERT INTO labeling_solution (problem_id, steps, answer, text_hash, generator,"
            " source, grade, created_at) SELECT 1 + g %% 1000, jsonb_build_array('Step one of"
            " candidate ' || g || '.', 'Step two.', E'# Answer\\n\\n4'), '4', md5(g::text),"
            " 'soak', 'soak', 'ungraded', now() FROM generate_series(1, %s) g",
            [tasks],
        )
        cursor.execute(
            "INSERT INTO labeling_task (solution_id, kind, generation, priority, queued_score,"
            " required_labels, label_count, lease_count, created_at) SELECT id, 'normal', 1,"
            " random(), random(), %s, 0, 0, now() FROM labeling_solution",
            [overlap],
        )
        cursor.execute("ANALYZE")
    QualitySettings.objects.update_or_create(pk=1, defaults={"qc_rate": 0.0})
    group, _ = Group.objects.get_or_create(name="annotators")
    users = User.objects.bulk_create(
        [User(username=f"soak-{i}", password=make_password(None)) for i in range(annotators)]
    )
    group.user_set.add(*users)
    AnnotatorProfile.objects.bulk_create([AnnotatorProfile(user=user) for user in users])
    return [Token.objects.create(user=user).key for user in users]


class LeaseWatch(threading.Thread):
    """Samples, every second, how long ago the oldest unreleased lease expired."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.done = url, [], threading.Event()

    def run(self) -> None:
        import psycopg

        conn = None
        while not self.done.wait(1.0):
            try:
                conn = conn or psycopg.connect(self.url, autocommit=True, connect_timeout=2)
                row = conn.execute(
                    "SELECT EXTRACT(EPOCH FROM now() - min(expires_at)) FROM labeling_lease"
                ).fetchone()
                self.samples.append((time.time(), max(0.0, float(row[0] or 0))))
            except psycopg.Error:
                conn = None  # PostgreSQL is down: nothing to sample

    def oldest(self, start: float, end: float) -> float:
        return max((age for at, age in self.samples if start <= at <= end), default=0.0)


def wait_ready(port: int, token: str, timeout: float = 90) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
            connection.request("GET", "/api/me/", headers={"Authorization": f"Token {token}"})
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("gunicorn did not answer /api/me/ in time")


def inject(name: str, product: Product, relay: TcpRelay) -> Fault:
    started = time.time()
    note = ""
    if name == "gunicorn-worker":
        import psutil

        victim = psutil.Process(product.procs["web"].pid).children()[0]
        victim.kill()
        note = f"killed pid {victim.pid}"
    elif name == "celery-worker":
        os.killpg(product.procs["worker"].pid, signal.SIGKILL)
        product.procs["worker"].wait()
        time.sleep(2.0)  # the supervisor notices and starts a new one
        product.start("worker")
        note = "restarted after 2 s"
    elif name == "redis-down":
        product.redis.stop()
        time.sleep(DURATION[name])
        product.redis.start()
    elif name == "postgres-down":
        product.pg.stop()
        time.sleep(DURATION[name])
        product.pg.start()
    elif name == "gunicorn-frozen":
        os.killpg(product.procs["web"].pid, signal.SIGSTOP)
        time.sleep(DURATION[name])
        os.killpg(product.procs["web"].pid, signal.SIGCONT)
    elif name == "lost-response":
        before = len(relay.swallowed)
        armed = [LOST_RESPONSES]

        def swallow(head: bytes) -> bool:
            if armed[0] > 0 and b"/submit/" in head.split(b"\r\n", 1)[0]:
                armed[0] -= 1
                return True
            return False

        relay.swallow = swallow
        deadline = time.time() + 60
        while len(relay.swallowed) < before + LOST_RESPONSES and time.time() < deadline:
            time.sleep(0.1)
        relay.swallow = None
        note = f"{len(relay.swallowed) - before} answers dropped"
    instant = name in ("gunicorn-worker", "celery-worker")  # recovery counts from the kill
    return Fault(name, started, started if instant else time.time(), note)


def _log_time(stamp: str) -> float:
    """A Celery log line's "2026-12-03 21:10:12,641" as time.time() (same machine, same zone)."""
    seconds, millis = stamp.split(",")
    return time.mktime(time.strptime(seconds, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1e3


def periodic_runs(product: Product) -> list[float]:
    """When a periodic task succeeded, from the worker's log."""
    import re

    pattern = re.compile(r"^\[(\S+ \S+): INFO/\S+\] Task (\S+)\[\S+\] succeeded", re.M)
    runs = pattern.findall(product.log("worker"))
    return sorted(_log_time(stamp) for stamp, task in runs if task in PERIODIC)


def next_tick(product: Product, after: float) -> float:
    """The first of beat's lease-release ticks at or after ``after``: every SWEEP_SECONDS from
    the moment beat started (a fresh schedule runs each entry one interval after start)."""
    import re

    found = re.search(r"^\[(\S+ \S+): INFO/\S+\] beat: Starting", product.log("beat"), re.M)
    if found is None:
        return after
    started = _log_time(found.group(1))
    return started + SWEEP_SECONDS * max(1, -(-(after - started) // SWEEP_SECONDS))


def check_invariants(
    ledger: Ledger, relay: TcpRelay, product: Product, watch: LeaseWatch
) -> list[tuple[str, int]]:
    """(invariant, how many times it broke); every count must be 0."""
    import json

    from django.db import connection

    connection.close()  # this process's connection died with PostgreSQL's restart
    acks = list(ledger.acks.values())
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.idempotency_key, l.id, l.task_id, u.username, l.ratings, l.late"
            " FROM labeling_label l JOIN auth_user u ON u.id = l.annotator_id"
            " WHERE l.idempotency_key = ANY(%s)",
            [[ack.key for ack in acks]],
        )
        # Django leaves jsonb as text for its own decoding.
        stored = {
            key: (label, task, user, json.loads(ratings), late)
            for key, label, task, user, ratings, late in cursor.fetchall()
        }

        def count(sql: str, params: list[object] | None = None) -> int:
            cursor.execute(sql, params or [])
            return int(cursor.fetchone()[0])

        checks = [
            (
                "acknowledged labels lost or changed",
                sum(
                    stored.get(a.key) != (a.label_id, a.task_id, a.annotator, a.ratings, a.late)
                    for a in acks
                ),
            ),
            (
                "labels duplicated (one annotator twice on a task)",
                count(
                    "SELECT count(*) FROM (SELECT 1 FROM labeling_label"
                    " GROUP BY task_id, annotator_id HAVING count(*) > 1) x"
                ),
            ),
            (
                "tasks over their overlap",
                count(
                    "SELECT count(*) FROM labeling_task t WHERE t.label_count > t.required_labels"
                    " OR (SELECT count(*) FROM labeling_label l WHERE l.task_id = t.id"
                    " AND NOT l.late) > t.required_labels"
                ),
            ),
            (
                "tasks whose counters differ from their rows",
                count(
                    "SELECT count(*) FROM labeling_task t LEFT JOIN (SELECT task_id,"
                    " count(*) FILTER (WHERE NOT late) AS n, count(*) FILTER (WHERE late) AS k"
                    " FROM labeling_label GROUP BY task_id) l ON l.task_id = t.id"
                    " LEFT JOIN (SELECT task_id, count(*) AS n FROM labeling_lease"
                    " GROUP BY task_id) s ON s.task_id = t.id"
                    " WHERE t.label_count <> coalesce(l.n, 0) OR t.late_count <> coalesce(l.k, 0)"
                    " OR t.lease_count <> coalesce(s.n, 0)"
                ),
            ),
            (
                f"leases stuck (expired over {STUCK_AFTER} s ago, at the end)",
                count(
                    "SELECT count(*) FROM labeling_lease"
                    " WHERE expires_at < now() - make_interval(secs => %s)",
                    [STUCK_AFTER],
                ),
            ),
        ]
    checks.append(
        (
            f"moments a lease stayed expired over {STUCK_AFTER} s (sampled each second)",
            sum(age > STUCK_AFTER for _, age in watch.samples),
        )
    )
    checks.append(("HTTP 500 answers", sum(r.outcome == "500" for r in ledger.requests)))
    unsaved = 0
    for head, answer in relay.swallowed:
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
        key = next(
            (
                line.split(b":", 1)[1].strip().decode()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"x-soak-key:")
            ),
            "",
        )
        if status in (200, 201):
            label_id = json.loads(answer.split(b"\r\n\r\n", 1)[1])["label_id"]
            ack = ledger.acks.get(key)
            unsaved += not (ack and ack.status == 200 and ack.label_id == label_id)
    checks.append(("dropped answers whose retry was not 200 'already saved'", unsaved))
    checks.append(("acknowledgements still outstanding at the deadline", len(ledger.unfinished)))
    dead = [name for name, proc in product.procs.items() if proc.poll() is not None]
    checks.append((f"processes that died on their own {dead or ''}", len(dead)))
    return checks


def report(
    faults: list[Fault], ledger: Ledger, product: Product, watch: LeaseWatch, origin: float
) -> None:
    runs = periodic_runs(product)
    ends = [f.injected for f in faults[1:]] + [time.time()]
    print(
        f"\n{'fault':<16} {'at s':>6} {'length s':>8} {'API back s':>10} {'tasks back s':>12}"
        f"  {'failed requests':<30} {'oldest expired lease s':>22}"
    )
    for fault, end in zip(faults, ends, strict=True):
        ok_after = [
            r.ended for r in ledger.requests if r.outcome == "ok" and r.started >= fault.cleared
        ]
        api_back = (min(ok_after) - fault.cleared) if ok_after else float("nan")
        tasks_back = "-"
        if fault.name in ("celery-worker", "redis-down", "postgres-down"):
            after = [at for at in runs if at >= fault.cleared]
            tasks_back = f"{after[0] - fault.cleared:.1f}" if after else "never"
        window_end = fault.cleared + (api_back if api_back == api_back else 0) + 2
        failed = [
            r.outcome
            for r in ledger.requests
            if fault.injected <= r.ended <= window_end and r.outcome not in ("ok", "refused")
        ]
        kinds = ", ".join(
            f"{failed.count(k)} {k}" for k in ("503", "net", "500", "5xx") if k in failed
        )
        print(
            f"{fault.name:<16} {fault.injected - origin:6.0f}"
            f" {fault.cleared - fault.injected:8.1f} {api_back:10.1f} {tasks_back:>12}"
            f"  {kinds or 'none':<30} {watch.oldest(fault.injected, end):22.0f}"
        )
    acks = list(ledger.acks.values())
    held = [a for a in acks if a.held_past_expiry]
    refused_late = [r for r in ledger.refusals if r[3]]
    print(
        f"\nsubmits acknowledged: {len(acks):,} ({sum(a.status == 200 for a in acks)} answered"
        f" 'already saved' on a retry); requests: {len(ledger.requests):,}, failed:"
        f" {sum(r.outcome not in ('ok', 'refused') for r in ledger.requests)}"
    )
    print(
        f"late work (submitted after the hold ran out): {len(held) + len(refused_late)};"
        f" kept in a slot {sum(not a.late for a in held)}, kept as late labels"
        f" {sum(a.late for a in held)}, refused {len(refused_late)}"
    )
    if ledger.refusals:
        shown = {(status, why) for _, status, why, _ in ledger.refusals}
        print(f"refusals: {len(ledger.refusals)}: {sorted(shown)[:5]}")
    beat = product.log("beat")
    waited, resent = beat.count("beat: Connection error"), beat.count("could not send")
    retried = product.log("worker").count("retry: Retry in")
    print(
        f"beat: waited for the broker {waited} times, resent {resent} failed sends; periodic"
        f" runs: {len(runs)}, {retried} retried after a database error; oldest expired lease:"
        f" {watch.oldest(0, 1e12):.0f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="short")
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    began = time.time()
    work = Path(tempfile.mkdtemp(prefix="stepwise-soak-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user when we are root
    pg = ThrowawayPostgres(work / "pg")
    redis = ThrowawayRedis(work / "redis")
    product = Product(work=work, pg=pg, redis=redis, env={}, port=free_port())
    relay = TcpRelay(("127.0.0.1", product.port))
    try:
        pg.start()
        pg.create_database("soak")
        redis.start()
        url = pg.url("soak")
        product.env = {
            **os.environ,
            "DATABASE_URL": url,
            "CELERY_BROKER_URL": redis.url(),
            "DEBUG": "0",
            "STEPWISE_LEASE_MINUTES": str(LEASE_SECONDS // 60),
            "STEPWISE_VAR_DIR": str(work / "var"),
            "LOG_LEVEL": "WARNING",
            "PYTHONWARNINGS": "ignore::UserWarning",  # whitenoise: no collected static files
        }
        os.environ["LOG_LEVEL"] = "WARNING"
        os.environ["STEPWISE_VAR_DIR"] = str(work / "var")
        _pg.setup_django(url)
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        tokens = seed(tasks=preset.tasks, overlap=preset.overlap, annotators=preset.annotators)
        for name in ("web", "worker", "beat"):
            product.start(name)
        wait_ready(relay.port, tokens[0])
        ready = time.time()
        print(
            f"{args.preset}: {preset.annotators} annotators, {preset.tasks:,} tasks (overlap"
            f" {preset.overlap}), {preset.seconds:.0f} s; servers, migrations and seed in"
            f" {ready - began:.0f} s; work directory {work}",
            flush=True,
        )
        watch = LeaseWatch(url)
        watch.start()
        ledger, stop, deadline = Ledger(), threading.Event(), [0.0]
        annotators = [
            Annotator(
                name=f"soak-{i}",
                token=token,
                port=relay.port,
                behaviour=preset.behaviour,
                lease_seconds=LEASE_SECONDS,
                ledger=ledger,
                stop=stop,
                deadline=deadline,
                seed=i,
            )
            for i, token in enumerate(tokens)
        ]
        for annotator in annotators:
            annotator.start()
        faults: list[Fault] = []
        for at, name in preset.plan:
            when = max(ready + at, faults[-1].cleared + GAP if faults else 0.0)
            if name in ALIGNED:
                when = next_tick(product, when + ALIGNED[name]) - ALIGNED[name]
            time.sleep(max(0.0, when - time.time()))
            faults.append(inject(name, product, relay))
            print(f"  {time.time() - ready:5.0f} s  {name} {faults[-1].note}".rstrip(), flush=True)
        time.sleep(max(0.0, ready + preset.seconds - time.time()))
        deadline[0] = time.time() + preset.drain
        stop.set()
        for annotator in annotators:
            annotator.join(timeout=preset.drain + 15)
        drained = time.time()
        watch.done.set()
        checks = check_invariants(ledger, relay, product, watch)
        report(faults, ledger, product, watch, origin=ready)
        print("\ninvariants (each must be 0):")
        for name, broken in checks:
            print(f"  {'ok ' if broken == 0 else 'BROKEN'} {broken:5d}  {name}")
        print(
            f"\ntimings: set-up {ready - began:.0f} s, run {preset.seconds:.0f} s, drain"
            f" {drained - ready - preset.seconds:.0f} s, checks {time.time() - drained:.0f} s;"
            f" total {time.time() - began:.0f} s"
        )
        return 1 if any(broken for _, broken in checks) else 0
    finally:
        relay.close()
        product.stop_all()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
