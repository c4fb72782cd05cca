"""Adding Task.queued_by classifies the tasks that exist from what they recorded."""

import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from labeling.models import Task

BEFORE = [("labeling", "0006_label_late_task_late_count")]


@pytest.mark.django_db(transaction=True)
def test_queued_by_is_backfilled_from_what_each_task_recorded():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = MigrationExecutor(connection).loader.project_state(BEFORE).apps
    Problem, Solution = old.get_model("labeling", "Problem"), old.get_model("labeling", "Solution")
    OldTask, Label = old.get_model("labeling", "Task"), old.get_model("labeling", "Label")
    Version = old.get_model("selector", "SelectorVersion")
    version = Version.objects.create(name="v", base_model="-", status="ready")
    reserved = Problem.objects.create(unique_id="r", problem="?", eval_reserved=True)
    other = Problem.objects.create(unique_id="o", problem="?", eval_reserved=False)

    def task(problem, n, **fields):
        solution = Solution.objects.create(problem=problem, steps=["a"], text_hash=f"{n:064d}")
        return OldTask.objects.create(solution=solution, kind="normal", generation=1, **fields)

    picked = task(other, 1, selector_version=version, queued_score=0.7, priority=0.7)
    imported = task(reserved, 2, queued_score=0.3, priority=0.3)
    Label.objects.create(
        task=imported, labeler=uuid.uuid4(), steps=[], finish_reason="solution",
        created_at=timezone.now(), record_extras={"generation": 1},
    )  # fmt: skip
    uniform = task(reserved, 3, queued_score=None, priority=0.42)
    by_hand_zero = task(reserved, 4, queued_score=None, priority=0.0)
    by_hand_scored = task(reserved, 5, queued_score=0.8, priority=0.8)
    off_reserve = task(other, 6, queued_score=None, priority=0.42)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    got = dict(Task.objects.values_list("pk", "queued_by"))
    assert got == {
        picked.pk: "selector",
        imported.pk: "import",
        uniform.pk: "uniform",
        by_hand_zero.pk: "manual",
        by_hand_scored.pk: "manual",
        off_reserve.pk: "manual",
    }
