"""Jobs: the thin Celery tasks called directly, idempotency, failures, and the commands."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from jobs.models import Job, JobKind, JobStatus
from jobs.services import job_cancel, job_mark_failed, jobs_reap
from labeling.models import Grade, Task
from selector import tasks
from selector.models import EvalSet, SelectorVersion, SolutionScore, VersionStatus
from selector.services import job_execute, job_start, selector_create_base
from tests.factories import ProblemFactory, SolutionFactory


@pytest.fixture
def scored_pool(db, settings):
    settings.SELECTOR_EVAL_FRACTION = 0.0  # every problem is the selector's to fill
    version = SelectorVersion.objects.create(
        name="hand", base_model="-", status=VersionStatus.READY, is_active=True
    )
    for _ in range(3):
        problem = ProblemFactory()
        for score, grade in [(0.9, Grade.INCORRECT), (0.5, Grade.CORRECT), (0.2, Grade.INCORRECT)]:
            s = SolutionFactory.create(problem=problem, grade=grade)
            SolutionScore.objects.create(solution=s, version=version, score=score, step_scores=[])
    return version


def test_fill_task_runs_the_job_once(scored_pool):
    job = job_start(kind=JobKind.FILL, params={"per_problem": 2}, enqueue=False)
    assert tasks.queue_fill(job.pk) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and job.started_at and job.finished_at
    assert job.result["created"] == 6 and job.result["wrong_share"] == 1.0
    assert (job.progress_done, job.progress_total) == (6, 6)
    # acks_late redelivery: a succeeded job is not redone (no second generation).
    assert tasks.queue_fill(job.pk) == JobStatus.SUCCEEDED
    assert Task.objects.count() == 6


def test_failed_job_records_the_error(db):
    job = job_start(kind=JobKind.FILL, params={}, enqueue=False)
    assert tasks.queue_fill(job.pk) == JobStatus.FAILED
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert "no active selector version" in job.error
    assert job.finished_at is not None


def test_jobs_needing_a_version_refuse_without_one(db):
    from selector.services import SelectorError

    with pytest.raises(SelectorError, match="needs a selector version"):
        job_start(kind=JobKind.PROMOTE, params={})
    with pytest.raises(SelectorError, match="not a background"):
        job_start(kind="export", params={})
    assert not Job.objects.exists()


def test_fill_queue_command_sync(scored_pool, capsys):
    call_command("fill_queue", "--sync", "--per-problem", "1", verbosity=0)
    assert Task.objects.count() == 3
    assert Job.objects.get().status == JobStatus.SUCCEEDED
    assert "succeeded" in capsys.readouterr().out


def test_fill_queue_command_enqueues_by_default(scored_pool, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        call_command("fill_queue", verbosity=0)
    assert Job.objects.get().status == JobStatus.QUEUED
    assert len(callbacks) == 1
    assert not Task.objects.exists()


def test_command_errors_are_clear(db):
    with pytest.raises(CommandError, match="no selector version with that name"):
        call_command("promote_selector", "--selector", "nope", "--sync")
    with pytest.raises(CommandError, match="no active selector version"):
        call_command("fill_queue", "--sync", verbosity=0)


@pytest.mark.slow
def test_score_and_evaluate_commands_sync(db, selector_settings, capsys):
    call_command("train_selector", "--base", "--name", "b0")
    base = SelectorVersion.objects.get(name="b0")
    assert base.is_active
    SolutionFactory.create_batch(5)
    call_command("score_candidates", "--sync", verbosity=0)
    assert SolutionScore.objects.filter(version=base).count() == 5
    assert Job.objects.get(kind=JobKind.SCORE).progress_done == 5
    # No evaluation labels yet: refused, saying how to get them (issue 19), nothing frozen.
    with pytest.raises(CommandError, match="Not enough evaluation labels yet"):
        call_command("evaluate_selector", "--sync", verbosity=0)
    assert not EvalSet.objects.exists()
    # A set big enough on paper whose labels are gone: the metrics stay empty-safe.
    EvalSet.objects.create(label_ids=list(range(10**6, 10**6 + 8)), problems=2, fraction=0.1,
                           seed=0)  # fmt: skip
    call_command("evaluate_selector", "--sync", verbosity=0)
    assert "Step AUROC" in capsys.readouterr().out
    base.refresh_from_db()
    assert base.metrics["held_out"]["labels"] == 0
    call_command("promote_selector", "--selector", "b0", "--sync", verbosity=0)
    assert Job.objects.get(kind=JobKind.PROMOTE).status == JobStatus.SUCCEEDED


def test_job_execute_is_a_no_op_for_succeeded_jobs(db):
    job = Job.objects.create(kind=JobKind.TRAIN, status=JobStatus.SUCCEEDED, result={"x": 1})
    assert job_execute(job_id=job.pk).result == {"x": 1}
    assert not SelectorVersion.objects.exists()


def test_base_version_via_service_writes_a_checkpoint(db, selector_settings):
    version = selector_create_base(name="b1")
    assert (selector_settings.SELECTOR_CHECKPOINT_DIR / "b1" / "config.json").is_file()
    assert version.checkpoint_path.endswith("b1")


def test_train_job_with_base_creates_the_first_active_version(db, selector_settings):
    job = job_start(kind=JobKind.TRAIN, params={"base": True, "name": "first"}, enqueue=False)
    assert tasks.selector_train(job.pk) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    version = SelectorVersion.objects.get(name="first")
    assert job.version == version and version.is_active
    assert job.result == {"version_id": version.pk, "version": "first", "active": True}


def training_job(version_status: str) -> tuple[Job, SelectorVersion]:
    version = SelectorVersion.objects.create(name="half", base_model="-", status=version_status)
    job = Job.objects.create(
        kind=JobKind.TRAIN,
        status=JobStatus.RUNNING,
        version=version,
        started_at=timezone.now() - timedelta(hours=1),
        heartbeat_at=timezone.now() - timedelta(hours=1),
        worker="gone-host:1",
    )
    return job, version


@pytest.mark.parametrize(
    "finish",
    [
        lambda job: jobs_reap(lost_after=60),
        lambda job: job_mark_failed(job_id=job.pk),
        lambda job: job_cancel(job=job),
    ],
    ids=["worker-lost", "marked-failed", "cancelled"],
)
def test_a_train_job_finished_without_its_worker_fails_its_version(db, finish):
    job, version = training_job(VersionStatus.TRAINING)
    finish(job)
    job.refresh_from_db()
    version.refresh_from_db()
    assert job.status in (JobStatus.FAILED, JobStatus.CANCELLED)
    assert version.status == VersionStatus.FAILED
    assert version.training_summary == {"error": job.error} and job.error


def test_the_abandon_hook_leaves_a_finished_version_alone(db):
    job, version = training_job(VersionStatus.READY)  # trained; the worker died after
    assert jobs_reap(lost_after=60).failed == [job.pk]
    version.refresh_from_db()
    assert version.status == VersionStatus.READY
