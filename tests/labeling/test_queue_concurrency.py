"""Many annotators claiming and submitting at once never exceed a task's overlap (PostgreSQL)."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.db.models import Count

from labeling.models import Label, Lease, QualitySettings, Task
from labeling.services.labels import label_submit
from labeling.services.queue import task_claim_next
from tests.factories import TaskFactory, annotator

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 20


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # The factories set passwords; PBKDF2 for dozens of users would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def run_at_once(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released together, each on its own connection."""
    barrier = threading.Barrier(count)

    def call(index: int) -> object:
        try:
            barrier.wait(timeout=30)
            return work(index)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def submit_all_positive(user, task_id: int, key: str) -> int:
    steps = Task.objects.select_related("solution").get(pk=task_id).solution.steps
    return label_submit(
        annotator=user,
        task_id=task_id,
        idempotency_key=key,
        ratings=[1] * len(steps),
        flags=None,
        human_completion=None,
        finish_reason="solution",
        finish_note="",
        total_time_ms=1,
        started_at=None,
    ).label.pk


def assert_counters_match_rows() -> None:
    for task in Task.objects.annotate(n_labels=Count("labels", distinct=True)).annotate(
        n_leases=Count("leases", distinct=True)
    ):
        assert (task.label_count, task.lease_count) == (task.n_labels, task.n_leases), task.pk


@pytest.mark.parametrize("overlap", [1, 2])
def test_simultaneous_claims_never_exceed_overlap(overlap):
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    tasks = TaskFactory.create_batch(6, required_labels=overlap)
    users = [annotator() for _ in range(THREADS)]

    def claim_twice(index: int) -> list[int]:
        user = users[index]
        first = task_claim_next(annotator=user)
        if first is None:
            return []
        second = task_claim_next(annotator=user, exclude=[first.task.pk])
        return [first.task.pk] + ([second.task.pk] if second else [])

    claimed = run_at_once(THREADS, claim_twice)
    per_task = Counter(task_id for got in claimed for task_id in got)
    # 6 tasks x overlap slots are all handed out, none beyond its overlap
    assert sum(per_task.values()) == 6 * overlap
    assert set(per_task.values()) == {overlap}
    for got in claimed:
        assert len(got) == len(set(got)), "an annotator got the same task twice"
    assert Lease.objects.count() == 6 * overlap
    assert_counters_match_rows()
    assert {t.pk for t in tasks} == set(per_task)


def test_claim_submit_loops_label_every_slot_exactly_once():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    TaskFactory.create_batch(15, required_labels=1)
    TaskFactory.create_batch(15, required_labels=2)
    users = [annotator() for _ in range(THREADS)]

    def work(index: int) -> int:
        user = users[index]
        done = 0
        for _ in range(100):  # bounded: 45 slots in all
            claim = task_claim_next(annotator=user)
            if claim is None:
                return done
            submit_all_positive(user, claim.task.pk, f"{user.pk}-{claim.task.pk}")
            done += 1
        return done

    done = run_at_once(THREADS, work)
    assert sum(done) == 15 + 30
    per_task = dict(Task.objects.values_list("pk", "required_labels"))
    labels = Counter(Label.objects.values_list("task_id", flat=True))
    assert all(labels[task_id] == overlap for task_id, overlap in per_task.items())
    pairs = Counter(Label.objects.values_list("task_id", "annotator_id"))
    assert max(pairs.values()) == 1
    assert not Lease.objects.exists()
    assert_counters_match_rows()


def test_racing_identical_submits_store_one_label():
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    task = TaskFactory(required_labels=1)
    user = annotator()
    assert task_claim_next(annotator=user) is not None
    label_ids = run_at_once(8, lambda _: submit_all_positive(user, task.pk, "same-key"))
    assert len(set(label_ids)) == 1
    assert Label.objects.count() == 1
    task.refresh_from_db()
    assert (task.label_count, task.lease_count) == (1, 0)
