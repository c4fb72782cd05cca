"""Issue 18: a simulation killed with its worker leaves no ``work/`` folder behind. The reaper
that fails the job removes it (the kind's ``on_abandon``), and a worker that starts sweeps those
of every simulation no longer queued or running."""

from datetime import timedelta
from pathlib import Path

import pytest
from celery.signals import worker_ready
from django.utils import timezone

import selector.tasks  # noqa: F401 - a worker imports its tasks, which connect the sweep
from jobs.models import Job, JobKind, JobStatus
from jobs.services import jobs_reap
from selector.services.simulation import simulation_work_sweep

pytestmark = pytest.mark.django_db


def scratch(root: Path, job: Job) -> Path:
    work = root / str(job.pk) / "work"
    (work / "checkpoints-template").mkdir(parents=True)
    (work / "template.sqlite3").write_bytes(b"x" * 1024)
    return work


def test_the_reaper_removes_a_lost_simulations_work_folder(settings, tmp_path) -> None:
    settings.SIMULATION_DIR = tmp_path
    long_ago = timezone.now() - timedelta(hours=1)
    lost = Job.objects.create(
        kind=JobKind.SIMULATE,
        status=JobStatus.RUNNING,
        started_at=long_ago,
        heartbeat_at=long_ago,
        attempts=1,
    )
    work = scratch(tmp_path, lost)
    (work.parent / "notes.txt").write_text("kept")
    assert jobs_reap().failed == [lost.pk]
    assert not work.exists()
    assert (work.parent / "notes.txt").read_text() == "kept"


def test_a_starting_worker_sweeps_finished_simulations_but_not_running_ones(
    settings, tmp_path
) -> None:
    settings.SIMULATION_DIR = tmp_path
    failed = Job.objects.create(kind=JobKind.SIMULATE, status=JobStatus.FAILED)
    running = Job.objects.create(
        kind=JobKind.SIMULATE, status=JobStatus.RUNNING, heartbeat_at=timezone.now()
    )
    orphan = tmp_path / "999999" / "work"
    orphan.mkdir(parents=True)
    works = [scratch(tmp_path, failed), scratch(tmp_path, running)]
    worker_ready.send(sender=None)  # what a Celery worker sends once it is up
    assert not works[0].exists() and not orphan.exists()
    assert works[1].exists()
    assert simulation_work_sweep() == []
