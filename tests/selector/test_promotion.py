"""Safe promotion: score first, switch in one transaction; failure and cancel change nothing."""

import pytest

from jobs.models import Job, JobKind, JobStatus
from jobs.services import job_cancel
from labeling.models import Grade, Solution, Task
from selector.models import SolutionScore
from selector.services import (
    candidates_score,
    job_execute,
    job_start,
    queue_fill,
    selector_active,
    selector_create_base,
    selector_promote,
)
from tests.factories import ProblemFactory, SolutionFactory

SENTINEL = 0.123  # a priority no score reproduces: any re-prioritisation would show


@pytest.fixture
def world(db, selector_settings):
    selector_settings.SELECTOR_EVAL_FRACTION = 0.0
    old = selector_create_base(name="old")
    for p in range(4):
        problem = ProblemFactory()
        for i in range(5):
            SolutionFactory.create(
                problem=problem,
                steps=[f"Try {p}.{i}: add.", f"# Answer\n\n{i}"],
                answer=str(i),
                grade=Grade.INCORRECT,
            )
    candidates_score(version=old)
    queue_fill(per_problem=2)
    Task.objects.update(priority=SENTINEL)
    new = selector_create_base(name="new")
    assert selector_active() == old and not new.is_active
    return old, new


def test_promotion_scores_the_pool_while_the_old_version_is_still_active(world):
    old, new = world
    active_while_scoring: list[int] = []
    result = selector_promote(
        version=new, progress=lambda _d, _t: active_while_scoring.append(selector_active().pk)
    )
    assert active_while_scoring and set(active_while_scoring) == {old.pk}
    assert selector_active() == new
    assert result["scored"] == Solution.objects.count() == 20
    assert result["reprioritized"] == Task.objects.count() == 8
    for task in Task.objects.all():
        assert task.priority == SolutionScore.objects.get(version=new, solution=task.solution).score


def test_failed_promotion_leaves_the_old_version_active_and_the_queue_untouched(world):
    old, new = world

    def fail_after_storing(_done: int, _total: int) -> None:
        # Fail once every score is stored: between the scoring and the switch.
        if SolutionScore.objects.filter(version=new).count() == Solution.objects.count():
            raise RuntimeError("the GPU fell off the bus")

    with pytest.raises(RuntimeError, match="GPU"):
        selector_promote(version=new, progress=fail_after_storing)
    assert selector_active() == old
    assert set(Task.objects.values_list("priority", flat=True)) == {SENTINEL}
    stored = SolutionScore.objects.filter(version=new).count()
    assert stored == 20  # kept: a retry resumes instead of starting over
    retry = selector_promote(version=new)
    assert retry["scored"] == 0 and selector_active() == new


def test_cancelled_promotion_job_changes_nothing(world):
    old, new = world
    job = job_start(kind=JobKind.PROMOTE, version=new, enqueue=False)

    cancelled: list[bool] = []

    def cancel_midway(done: int, _total: int) -> None:
        if done and not cancelled:
            cancelled.append(job_cancel(job=Job.objects.get(pk=job.pk)))

    job = job_execute(job_id=job.pk, echo=cancel_midway)
    assert cancelled == [True]
    assert job.status == JobStatus.CANCELLED and "cancelled" in job.error
    assert selector_active() == old
    new.refresh_from_db()
    assert not new.is_active and new.promoted_at is None
    assert set(Task.objects.values_list("priority", flat=True)) == {SENTINEL}


def test_a_job_cancelled_before_it_runs_never_starts(world):
    _, new = world
    job = job_start(kind=JobKind.PROMOTE, version=new, enqueue=False)
    assert job_cancel(job=job)
    assert job_execute(job_id=job.pk).status == JobStatus.CANCELLED
    assert not SolutionScore.objects.filter(version=new).exists()
    assert not job_cancel(job=job)  # already over: nothing to cancel


def test_promotion_progress_only_moves_forward_across_its_phases(world, settings):
    _, new = world
    settings.SELECTOR_SCORE_CHUNK = 2  # several chunks, and a catch-up round's chunks after
    job = job_start(kind=JobKind.PROMOTE, version=new, enqueue=False)
    seen: list[tuple[int, int]] = []
    job_execute(job_id=job.pk, echo=lambda done, total: seen.append((done, total)))
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    fractions = [done / total for done, total in seen if total]
    # The job's bar sums its chunks across both rounds: never back to a later "0 / 1".
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert job.progress_total > 1 and job.progress_done == job.progress_total


def test_selector_promote_reports_one_forward_range_across_its_passes(world):
    """Outside a job (the simulation's promotions), one callback sees both scoring passes
    mapped into one range."""
    _, new = world
    seen: list[tuple[int, int]] = []
    selector_promote(version=new, progress=lambda done, total: seen.append((done, total)))
    fractions = [done / total for done, total in seen if total]
    assert fractions == sorted(fractions) and len(fractions) >= 2
    assert {total for _, total in seen} == {1000}
