"""The selector jobs on a real Celery worker process (the `ml` queue), tiny model on CPU."""

import os

import pytest

from jobs.models import Job, JobKind, JobStatus
from labeling.models import Grade, Task
from selector.models import SolutionScore
from selector.services import job_start, selector_create_base
from tests.factories import ProblemFactory, SolutionFactory


@pytest.fixture
def worker_env(tiny_base_model, tmp_path, monkeypatch, selector_settings):
    # The worker is a separate process: it reads its settings from the environment.
    monkeypatch.setitem(os.environ, "SELECTOR_BASE_MODEL", str(tiny_base_model))
    monkeypatch.setitem(
        os.environ, "SELECTOR_CHECKPOINT_DIR", str(selector_settings.SELECTOR_CHECKPOINT_DIR)
    )
    monkeypatch.setitem(os.environ, "SELECTOR_DEVICE", "cpu")
    monkeypatch.setitem(os.environ, "SELECTOR_MAX_LENGTH", "128")
    return selector_settings


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_score_and_fill_jobs_run_on_a_real_worker(worker_env, celery_worker_process, wait_until):
    version = selector_create_base(name="worker-base")
    for _ in range(4):
        problem = ProblemFactory()
        for i in range(5):
            SolutionFactory.create(
                problem=problem, grade=Grade.INCORRECT if i % 2 else Grade.CORRECT
            )

    job = job_start(kind=JobKind.SCORE, params={}, version=version)
    seen: list[str] = []

    def finished() -> bool:
        job.refresh_from_db()
        if not seen or seen[-1] != job.status:
            seen.append(job.status)
        return job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    wait_until(finished, timeout=240, message="the score job to finish")
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert seen[0] in (JobStatus.QUEUED, JobStatus.RUNNING)
    assert (job.progress_done, job.progress_total) == (20, 20)
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at <= job.finished_at
    assert job.result == {"scored": 20}
    assert SolutionScore.objects.filter(version=version).count() == 20

    fill = job_start(kind=JobKind.FILL, params={"per_problem": 2})
    wait_until(
        lambda: Job.objects.get(pk=fill.pk).status in (JobStatus.SUCCEEDED, JobStatus.FAILED),
        timeout=60,
        message="the fill job to finish",
    )
    fill.refresh_from_db()
    assert fill.status == JobStatus.SUCCEEDED, fill.error
    assert Task.objects.count() == 8 and fill.result["created"] == 8
