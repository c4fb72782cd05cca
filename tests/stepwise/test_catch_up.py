"""Periodic tasks catch up (issue 21): a beat send that fails while the broker is down is sent
again within seconds once it is back (a bounded number of times), and a run that hits a
database outage retries itself, so expired leases are not left for the next minute's tick.

Beat's scheduler runs in process against a throw-away redis-server on a free port, started
and stopped by the test; the retrying run is a real worker whose database connection goes
through a relay the test cuts (PostgreSQL) or whose database directory vanishes (SQLite).
"""

import datetime
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.db import connection
from django.utils import timezone

from bench._relay import TcpRelay
from bench._servers import ThrowawayRedis
from labeling.models import Lease, ReleasedLease
from labeling.tasks import leases_release_expired_task
from stepwise.beat import CatchUpScheduler
from tests.conftest import ARTIFACTS, WorkerStarter, _database_url_for_subprocess
from tests.factories import TaskFactory, annotator

ENTRY = "release-expired-leases"
Breaker = Callable[[], None]


def queued(redis_server: ThrowawayRedis, queue: str = "default") -> int:
    import redis

    return int(redis.Redis(port=redis_server.port).llen(queue))


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = ThrowawayRedis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def scheduler(throwaway_redis: ThrowawayRedis, tmp_path: Path) -> Iterator[CatchUpScheduler]:
    """The project's scheduler class, on an app whose broker is the throw-away Redis, with the
    lease release due now; connected, and then Redis goes down (as in the soak's fault)."""
    url = f"redis://127.0.0.1:{throwaway_redis.port}/0"
    app = Celery("catch-up-test", broker=url)
    app.conf.broker_write_url = url  # beats CELERY_BROKER_URL in the environment
    app.conf.task_default_queue = "default"
    app.conf.broker_connection_timeout = 1
    app.conf.beat_schedule = {ENTRY: {"task": "labeling.leases_release_expired", "schedule": 60.0}}
    beat = CatchUpScheduler(app=app, schedule_filename=str(tmp_path / "beat-schedule"))
    beat.first_retry_seconds = 0.2  # 0.2, 0.4, 0.8, ... so the test takes seconds
    beat.schedule[ENTRY].last_run_at = timezone.now() - datetime.timedelta(seconds=61)
    throwaway_redis.start()
    assert beat.producer is not None  # beat connects at start-up (and waits for the broker)
    throwaway_redis.stop()
    try:
        yield beat
    finally:
        beat.close()


def tick_until(beat: CatchUpScheduler, done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"not done after {seconds} s; owed {beat.owed}"
        time.sleep(min(beat.tick(), 0.1))


def test_a_send_that_failed_while_redis_was_down_goes_out_once_it_is_back(
    scheduler: CatchUpScheduler, throwaway_redis: ThrowawayRedis
) -> None:
    delay = scheduler.tick()  # due now, but Redis is down
    assert scheduler.owed == {ENTRY: 1}
    assert delay <= scheduler.first_retry_seconds  # not the entry's 60 s
    throwaway_redis.start()
    tick_until(scheduler, lambda: not scheduler.owed, seconds=15)
    assert queued(throwaway_redis) == 1  # caught up: the missed run is on the queue
    # The regular schedule goes on from the tick that was due, not from the retry.
    assert 50 < scheduler.tick() <= 60


def test_failed_sends_are_retried_a_bounded_number_of_times(
    scheduler: CatchUpScheduler,
) -> None:
    scheduler.first_retry_seconds = 0.05
    scheduler.tick()
    tick_until(scheduler, lambda: scheduler.owed.get(ENTRY) == 5, seconds=30)
    tick_until(scheduler, lambda: not scheduler.owed, seconds=30)  # gave up after the bound
    assert scheduler.tick() > 30  # left to the next regular run


@pytest.fixture
def breakable_database(tmp_path: Path) -> Iterator[tuple[str, Breaker, Breaker]]:
    """A database URL for a worker process, and break()/mend() for its database: PostgreSQL
    through a relay that is cut; SQLite through a directory link that is removed."""
    url = _database_url_for_subprocess()
    if connection.vendor == "sqlite":
        real = Path(connection.settings_dict["NAME"])
        link = tmp_path / "db"
        link.symlink_to(real.parent, target_is_directory=True)
        yield (
            f"sqlite:///{link / real.name}",
            link.unlink,
            lambda: link.symlink_to(real.parent, target_is_directory=True),
        )
        return
    settings_dict = connection.settings_dict
    relay = TcpRelay((settings_dict["HOST"] or "127.0.0.1", int(settings_dict["PORT"] or 5432)))
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    try:
        yield url.replace(f"@{host_port}/", f"@127.0.0.1:{relay.port}/"), relay.cut, relay.restore
    finally:
        relay.close()


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_lease_release_that_hit_a_database_outage_retries_and_catches_up(
    celery_worker_factory: WorkerStarter,
    breakable_database: tuple[str, Breaker, Breaker],
    wait_until: Callable[..., None],
) -> None:
    url, break_database, mend_database = breakable_database
    task = TaskFactory()
    Lease.objects.create(
        task=task, annotator=annotator(), expires_at=timezone.now() - datetime.timedelta(minutes=1)
    )
    type(task).objects.filter(pk=task.pk).update(lease_count=1)
    log = ARTIFACTS / "celery-catch-up.log"
    log.unlink(missing_ok=True)
    celery_worker_factory(queues="default", name="catch-up", env={"DATABASE_URL": url})
    wait_until(lambda: log.exists() and " ready." in log.read_text(), timeout=90)

    break_database()
    sent_at = time.monotonic()
    leases_release_expired_task.apply_async()
    wait_until(lambda: "Retry in 2s" in log.read_text(), timeout=60, message="a retry")
    assert Lease.objects.filter(task=task).exists()  # the run failed: nothing was released
    mend_database()
    wait_until(lambda: not Lease.objects.filter(task=task).exists(), timeout=60)
    # Caught up within seconds of the outage, not at the next tick a minute later.
    assert time.monotonic() - sent_at < 30
    assert ReleasedLease.objects.filter(task=task).exists()
    task.refresh_from_db()
    assert task.lease_count == 0
    # The worker logs the success just after its commit.
    wait_until(lambda: "succeeded" in log.read_text().split("Retry in 2s", 1)[1], timeout=10)
