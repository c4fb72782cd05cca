"""Issue 18, M2: a train job notices a cancel within seconds whatever its settings. Here one
optimizer step spans a whole epoch of micro-batches (a large SELECTOR_GRAD_ACCUMULATION): the
cancel used to wait for that step's end, and the job's batches for every epoch were planned
before its first check."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from jobs.models import Job, JobKind, JobStatus
from jobs.services import job_cancel
from selector.models import VersionStatus
from selector.services import job_execute, job_start
from tests.factories import LabelFactory, ProblemFactory, SolutionFactory, TaskFactory

BRANCHES = 3000  # rated alternatives of one step: one training example each


def many_examples() -> None:
    """Ten labels whose first step has many rated alternatives (PRM800K's branches): thousands
    of one-row examples from a few rows of the database."""
    per_label = BRANCHES // 10
    for p in range(10):
        problem = ProblemFactory(unique_id=f"test/algebra/{p}.json", answer="4")
        solution = SolutionFactory.create(problem=problem, steps=["2 + 2 = 4", "# Answer\n\n4"])
        completions = [{"text": "2 + 2 = 4", "rating": 1, "flagged": False}] + [
            {"text": f"Option {p}-{i}: 2 + 2 = {i}", "rating": -1, "flagged": False}
            for i in range(per_label)
        ]
        LabelFactory(
            task=TaskFactory(solution=solution),
            steps=[{"completions": completions, "human_completion": None, "chosen_completion": 0}],
            ratings=[1],
        )


@pytest.mark.timeout(300)
def test_a_train_job_stops_within_seconds_of_its_cancel(transactional_db, selector_settings):
    many_examples()
    selector_settings.SELECTOR_TOKEN_BUDGET = 2  # one row per micro-batch
    selector_settings.SELECTOR_GRAD_ACCUMULATION = 10**6  # one optimizer step per epoch
    job = job_start(kind=JobKind.TRAIN, params={"epochs": 1000}, enqueue=False)

    def run() -> None:
        try:
            job_execute(job_id=job.pk)
        finally:
            connections.close_all()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while not Job.objects.filter(pk=job.pk, version__isnull=False).exists():
        assert worker.is_alive() and time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    time.sleep(1.0)  # the model loads, the examples are encoded, the first micro-batches run
    cancelled_at = time.monotonic()
    assert job_cancel(job=job)  # what the admin's and the API's cancel call
    worker.join(timeout=60)
    stopped_after = time.monotonic() - cancelled_at
    assert not worker.is_alive()
    print(f"stopped {stopped_after:.2f} s after the cancel")
    assert stopped_after < 8, f"the job ran on {stopped_after:.1f} s after its cancel"
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.version is not None and job.version.status == VersionStatus.FAILED


@pytest.mark.parametrize("epochs", [-1, 0, 10**9, "3; drop"])
def test_bad_epochs_are_a_400_naming_the_field_and_no_job(db, epochs) -> None:
    from rest_framework.test import APIClient

    from tests.factories import staff_with

    client = APIClient()
    client.force_authenticate(staff_with("jobs.add_job"))
    response = client.post("/api/selector/train/", {"epochs": epochs}, format="json")
    assert response.status_code == 400
    assert "epochs" in response.json()
    assert not Job.objects.exists()
