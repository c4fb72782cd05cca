"""The simulation job on a real Celery worker: cancelling it from the admin ends its arm
processes and removes its scratch files, and a worker SIGKILLed mid-run takes its arm
processes with it instead of leaving them to train for minutes with no one to read them."""

import os
import signal
from pathlib import Path

import pytest

from jobs.models import Job, JobKind, JobStatus
from jobs.services import job_cancel
from selector.services import job_start
from tests.selector.test_worker import drop_parked_redis_messages, on_redis


def arm_processes(out_dir: Path) -> list[int]:
    """Pids of the simulation worker processes writing under ``out_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        if b"--worker-spec" in cmdline and any(str(out_dir).encode() in a for a in cmdline):
            pids.append(int(proc.name))
    return pids


@pytest.fixture
def sim_worker(celery_worker_factory, tmp_path, settings):
    settings.SIMULATION_DIR = tmp_path / "simulations"
    return celery_worker_factory(
        queues="ml", name="sim", env={"STEPWISE_SIMULATION_DIR": str(settings.SIMULATION_DIR)}
    )


def running_arms(job: Job, out_dir: Path) -> bool:
    job.refresh_from_db()
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING), job.error
    return job.progress_done >= 1 and bool(arm_processes(out_dir))


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_cancel_and_a_killed_worker_end_the_simulation_processes(sim_worker, settings, wait_until):
    # Cancelled from the admin while the arms train.
    job = job_start(kind=JobKind.SIMULATE, params={"preset": "test"})
    out_dir = Path(settings.SIMULATION_DIR) / str(job.pk)
    wait_until(lambda: running_arms(job, out_dir), timeout=180, message="the arms to start")
    assert job_cancel(job=job)
    wait_until(lambda: not arm_processes(out_dir), timeout=30, message="the arms to end")
    wait_until(lambda: not (out_dir / "work").exists(), timeout=30, message="scratch removed")
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert not (out_dir / "report.json").exists()
    assert sim_worker.poll() is None  # the worker lives on, ready for the next job

    # The worker process alone is SIGKILLed (not its process group): the arms notice.
    second = job_start(kind=JobKind.SIMULATE, params={"preset": "test"})
    second_dir = Path(settings.SIMULATION_DIR) / str(second.pk)
    wait_until(lambda: running_arms(second, second_dir), timeout=180, message="arms again")
    os.kill(sim_worker.pid, signal.SIGKILL)
    sim_worker.wait()
    wait_until(lambda: not arm_processes(second_dir), timeout=60, message="orphans to exit")
    if on_redis():
        drop_parked_redis_messages(second.pk)
