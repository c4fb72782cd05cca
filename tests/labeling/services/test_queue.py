"""The leased queue: claim order, overlap, resume, prefetch, expiry, skip, enqueue."""

import datetime
import functools

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from labeling.models import Lease, QueuedBy, SelectionRule, Skip, Task, TaskKind
from labeling.queries import FIRST_GENERATION, generation_current, generation_latest, queue_scores
from labeling.services.labels import label_submit
from labeling.services.queue import (
    MAX_LIVE_LEASES,
    TaskNotLeased,
    lease_heartbeat,
    leases_release_expired,
    task_claim_next,
    task_skip,
    tasks_enqueue,
)
from labeling.tasks import leases_release_expired_task
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from tests.factories import SolutionFactory, TaskFactory, annotator

pytestmark = pytest.mark.django_db


def submit_solution(user, task: Task, key: str = "") -> None:
    steps = task.solution.steps
    label_submit(
        annotator=user,
        task_id=task.pk,
        idempotency_key=key or f"{user.pk}-{task.pk}",
        ratings=[1] * len(steps),
        flags=[False] * len(steps),
        human_completion=None,
        finish_reason="solution",
        finish_note="",
        total_time_ms=1000,
        started_at=None,
    )


def test_claim_serves_highest_priority_then_lowest_id():
    low = TaskFactory(priority=0.1)
    first = TaskFactory(priority=0.9)
    tie = TaskFactory(priority=0.9)
    user = annotator()
    claims = [task_claim_next(annotator=user, exclude=[])]
    claims.append(task_claim_next(annotator=user, exclude=[claims[0].task.pk]))
    assert [c.task.pk for c in claims] == [first.pk, tie.pk]
    assert low.pk not in {c.task.pk for c in claims}


def test_claim_creates_lease_and_counts_it():
    task = TaskFactory()
    user = annotator()
    claim = task_claim_next(annotator=user)
    assert claim is not None and claim.task == task and not claim.resumed
    task.refresh_from_db()
    assert task.lease_count == 1
    lease = Lease.objects.get(task=task, annotator=user)
    assert lease.expires_at > timezone.now() + datetime.timedelta(minutes=29)


def test_reload_returns_own_live_lease_as_resumed():
    TaskFactory.create_batch(3)
    user = annotator()
    first = task_claim_next(annotator=user)
    again = task_claim_next(annotator=user)
    assert again.task == first.task and again.resumed
    assert Lease.objects.filter(annotator=user).count() == 1


def test_prefetch_gets_a_second_task_and_at_most_two_leases():
    tasks = TaskFactory.create_batch(4)
    user = annotator()
    current = task_claim_next(annotator=user)
    prefetched = task_claim_next(annotator=user, exclude=[current.task.pk])
    assert prefetched.task != current.task and not prefetched.resumed
    third = task_claim_next(annotator=user, exclude=[current.task.pk, prefetched.task.pk])
    assert third is None
    assert Lease.objects.filter(annotator=user).count() == MAX_LIVE_LEASES
    assert Task.objects.filter(pk__in=[t.pk for t in tasks], lease_count=1).count() == 2


def test_overlap_one_task_is_not_given_to_a_second_annotator():
    TaskFactory(required_labels=1)
    assert task_claim_next(annotator=annotator()) is not None
    assert task_claim_next(annotator=annotator()) is None


def test_overlap_two_goes_to_two_different_annotators_not_a_third():
    task = TaskFactory(required_labels=2)
    first, second, third = annotator(), annotator(), annotator()
    assert task_claim_next(annotator=first).task == task
    assert task_claim_next(annotator=first, exclude=[task.pk]) is None  # never twice to one person
    assert task_claim_next(annotator=second).task == task
    assert task_claim_next(annotator=third) is None
    submit_solution(first, task)
    submit_solution(second, task)
    task.refresh_from_db()
    assert (task.label_count, task.lease_count) == (2, 0)
    assert task_claim_next(annotator=third) is None


def test_annotator_never_gets_a_task_they_already_labeled():
    task = TaskFactory(required_labels=3)
    user = annotator()
    task_claim_next(annotator=user)
    submit_solution(user, task)
    assert task_claim_next(annotator=user) is None


def test_expired_lease_returns_task_to_queue_lazily_at_claim():
    task = TaskFactory()
    holder, other = annotator(), annotator()
    task_claim_next(annotator=holder)
    Lease.objects.filter(task=task).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    claim = task_claim_next(annotator=other)
    assert claim is not None and claim.task == task
    assert list(Lease.objects.filter(task=task).values_list("annotator", flat=True)) == [other.pk]
    task.refresh_from_db()
    assert task.lease_count == 1


def test_release_expired_frees_only_expired_leases():
    expired_task, live_task = TaskFactory(), TaskFactory()
    user, other = annotator(), annotator()
    task_claim_next(annotator=user)
    task_claim_next(annotator=other)
    Lease.objects.filter(task=expired_task).update(
        expires_at=timezone.now() - datetime.timedelta(minutes=1)
    )
    assert leases_release_expired() == 1
    assert leases_release_expired() == 0
    expired_task.refresh_from_db()
    live_task.refresh_from_db()
    assert (expired_task.lease_count, live_task.lease_count) == (0, 1)
    assert Lease.objects.filter(task=live_task).exists()


def test_celery_task_releases_expired_leases():
    task = TaskFactory()
    task_claim_next(annotator=annotator())
    Lease.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    assert leases_release_expired_task() == 1
    task.refresh_from_db()
    assert task.lease_count == 0


def test_heartbeat_extends_own_lease_and_rejects_others():
    task = TaskFactory()
    user, other = annotator(), annotator()
    task_claim_next(annotator=user)
    soon = timezone.now() + datetime.timedelta(minutes=1)
    Lease.objects.filter(task=task).update(expires_at=soon)
    new_expiry = lease_heartbeat(annotator=user, task_id=task.pk)
    assert new_expiry > soon + datetime.timedelta(minutes=20)
    assert Lease.objects.get(task=task).expires_at == new_expiry
    with pytest.raises(TaskNotLeased):
        lease_heartbeat(annotator=other, task_id=task.pk)


def test_skip_releases_lease_and_task_is_not_offered_again():
    skipped = TaskFactory(priority=0.9)
    later = TaskFactory(priority=0.1)
    user = annotator()
    assert task_claim_next(annotator=user).task == skipped
    task_skip(annotator=user, task_id=skipped.pk)
    skipped.refresh_from_db()
    assert skipped.lease_count == 0
    assert Skip.objects.filter(task=skipped, annotator=user).exists()
    assert task_claim_next(annotator=user).task == later
    # Someone else still gets the skipped task.
    assert task_claim_next(annotator=annotator()).task == skipped


def test_skip_of_a_task_not_leased_to_you_is_refused():
    task = TaskFactory()
    task_claim_next(annotator=annotator())
    with pytest.raises(TaskNotLeased):
        task_skip(annotator=annotator(), task_id=task.pk)
    task.refresh_from_db()
    assert task.lease_count == 1


def test_paused_annotator_gets_nothing():
    TaskFactory()
    user = annotator()
    user.annotator_profile.is_paused = True
    user.annotator_profile.save()
    assert task_claim_next(annotator=user) is None


def test_claim_creates_missing_profile():
    from tests.factories import UserFactory

    TaskFactory()
    user = UserFactory(groups=["annotators"])
    assert task_claim_next(annotator=user) is not None
    assert user.annotator_profile.labeler is not None


def test_enqueue_creates_tasks_once_with_scores_as_priority():
    solutions = SolutionFactory.create_batch(3)
    version = SelectorVersion.objects.create(
        name="v1", base_model="x", status=VersionStatus.READY, is_active=True
    )
    SolutionScore.objects.create(
        solution=solutions[0], version=version, score=0.8, step_scores=[0.9]
    )
    ids = [s.pk for s in solutions]
    enqueue = functools.partial(tasks_enqueue, overlap=2, kind=TaskKind.NORMAL, scores=queue_scores)
    assert enqueue(solution_ids=ids, generation=2) == 3
    assert enqueue(solution_ids=ids, generation=2) == 0
    scored = Task.objects.get(solution=solutions[0])
    assert (scored.priority, scored.queued_score, scored.required_labels) == (0.8, 0.8, 2)
    unscored = Task.objects.get(solution=solutions[1])
    assert (unscored.priority, unscored.queued_score) == (0.0, None)
    assert tasks_enqueue(solution_ids=ids[:1], generation=3, overlap=1, kind="normal") == 1


def test_enqueue_records_the_uniform_rule_only_for_uniform_draws():
    solutions = SolutionFactory.create_batch(2)
    tasks_enqueue(solution_ids=[solutions[0].pk], generation=1, queued_by=QueuedBy.UNIFORM)
    tasks_enqueue(solution_ids=[solutions[1].pk], generation=1)
    assert dict(Task.objects.values_list("solution_id", "rule")) == {
        solutions[0].pk: SelectionRule.UNIFORM,
        solutions[1].pk: "",
    }


def test_enqueue_with_zero_priority_keeps_score_for_record():
    solution = SolutionFactory()
    version = SelectorVersion.objects.create(name="v", base_model="x", is_active=True)
    SolutionScore.objects.create(solution=solution, version=version, score=0.3, step_scores=[])
    tasks_enqueue(
        solution_ids=[solution.pk],
        generation=1,
        overlap=1,
        kind="normal",
        priority_from="zero",
        scores=queue_scores,
    )
    task = Task.objects.get()
    assert (task.priority, task.queued_score) == (0.0, 0.3)


def test_enqueue_takes_the_scores_it_is_given_and_none_without_them():
    scored, unscored = SolutionFactory.create_batch(2)
    asked = []

    def lookup(ids: list[int]) -> dict[int, float]:
        asked.append(sorted(ids))
        return {scored.pk: 0.7}

    tasks_enqueue(solution_ids=[scored.pk, unscored.pk], generation=1, scores=lookup)
    tasks_enqueue(solution_ids=[scored.pk], generation=2)
    assert asked == [sorted([scored.pk, unscored.pk])]
    rows = {(t.solution_id, t.generation): (t.priority, t.queued_score) for t in Task.objects.all()}
    assert rows == {
        (scored.pk, 1): (0.7, 0.7),
        (unscored.pk, 1): (0.0, None),
        (scored.pk, 2): (0.0, None),
    }


def test_enqueue_with_unknown_solution_names_it_and_writes_nothing():
    solution = SolutionFactory()
    with pytest.raises(ValidationError) as error:
        tasks_enqueue(solution_ids=[solution.pk, 999_999], generation=1, overlap=1, kind="normal")
    assert "999999" in str(error.value.message_dict["solution_ids"])
    assert not Task.objects.exists()


def test_enqueue_rejects_overlap_below_one():
    with pytest.raises(ValidationError) as error:
        tasks_enqueue(solution_ids=[SolutionFactory().pk], generation=1, overlap=0, kind="normal")
    assert "overlap" in error.value.message_dict


# --- the two front doors of tasks_enqueue: the command and the admin action -----------------


def test_enqueue_command_all_unqueued_then_nothing_left():
    from io import StringIO

    from django.core.management import call_command

    solutions = SolutionFactory.create_batch(3)
    TaskFactory(solution=solutions[0], generation=1)
    out = StringIO()
    call_command("enqueue", "--all-unqueued", "--generation", "4", "--overlap", "2", stdout=out)
    assert "queued 2 normal tasks in generation 4" in out.getvalue()
    new = Task.objects.filter(generation=4)
    assert set(new.values_list("solution_id", flat=True)) == {solutions[1].pk, solutions[2].pk}
    assert set(new.values_list("required_labels", flat=True)) == {2}
    call_command("enqueue", "--all-unqueued", stdout=out)
    assert Task.objects.count() == 3


def test_enqueue_command_queues_with_the_active_selectors_scores():
    from django.core.management import call_command

    solution = SolutionFactory()
    version = SelectorVersion.objects.create(
        name="v-cmd", base_model="x", status=VersionStatus.READY, is_active=True
    )
    SolutionScore.objects.create(solution=solution, version=version, score=0.6, step_scores=[])
    call_command("enqueue", "--solution-ids", str(solution.pk), "--generation", "1")
    task = Task.objects.get()
    assert (task.priority, task.queued_score) == (0.6, 0.6)


def test_one_generation_current_and_its_answer_on_an_empty_queue():
    assert (generation_latest(), generation_current()) == (None, FIRST_GENERATION)
    TaskFactory(generation=-1, kind=TaskKind.SCREENING)  # PRM800K's screening: not a round
    TaskFactory(generation=0)
    assert (generation_latest(), generation_current()) == (0, 0)
    TaskFactory(generation=3)
    assert (generation_latest(), generation_current()) == (3, 3)


def test_enqueue_command_reports_unknown_ids_as_an_error():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="no such solution: 31337"):
        call_command("enqueue", "--solution-ids", "31337")


def test_admin_action_queues_selected_solutions_in_current_generation(client):
    from tests.factories import UserFactory

    TaskFactory(generation=5)
    chosen = SolutionFactory.create_batch(2)
    SolutionFactory()  # not selected
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    response = client.post(
        "/admin/labeling/solution/",
        {"action": "queue_for_labeling", "_selected_action": [s.pk for s in chosen]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Queued 2 of 2 selected solutions" in response.content.decode()
    queued = Task.objects.filter(solution__in=chosen)
    assert set(queued.values_list("generation", flat=True)) == {5}
    assert Task.objects.count() == 3


@pytest.mark.worker
@pytest.mark.slow
def test_real_worker_runs_the_beat_task_that_releases_expired_leases(
    celery_worker_process, wait_until
):
    from labeling.tasks import leases_release_expired_task

    task = TaskFactory()
    task_claim_next(annotator=annotator())
    Lease.objects.update(expires_at=timezone.now() - datetime.timedelta(minutes=1))
    # The beat schedule sends it by name; do the same.
    leases_release_expired_task.apply_async()
    wait_until(lambda: not Lease.objects.exists(), timeout=90, message="lease released")
    task.refresh_from_db()
    assert task.lease_count == 0
