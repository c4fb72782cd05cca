"""QC questions come at random positions and stay blind afterwards (issue 18, M4).

At a fixed spacing (every round(1/qc_rate)-th task) a careless annotator could be careful only
where a QC question was due, and ``/api/me``'s gold agreement moving right after a submit told
them which task had been one.
"""

import itertools
from typing import Any

import pytest
from django.contrib.auth.models import User

from labeling.models import AnnotatorProfile, Label, QualitySettings, TaskKind
from labeling.services.quality import qc_min_gap, qc_reveal_after
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, annotator
from tests.labeling.api.support import client_for, submit_body

pytestmark = pytest.mark.django_db

STEPS = ["Let $x = 2$.", "Then $x^2 = 4$.", "# Answer\n\n4"]
RATE = 0.2  # a mean of four normal labels between QC questions


def setup_queue(*, normal: int, qc: int) -> set[int]:
    QualitySettings.objects.create(pk=1, qc_rate=RATE)
    for index in range(normal):
        TaskFactory(
            solution=SolutionFactory(steps=STEPS), priority=1.0 - index / 10_000, required_labels=2
        )
    qc_ids = set()
    for _ in range(qc):
        task = TaskFactory(kind=TaskKind.QUALITY_CONTROL, solution=SolutionFactory(steps=STEPS))
        # The gold label disagrees with the annotator's all-positive ratings on the last step.
        task.gold_label = LabelFactory(task=task, ratings=[1, 1, -1], is_gold=True)
        task.save(update_fields=["gold_label"])
        qc_ids.add(task.pk)
    return qc_ids


def work(user: Any, count: int, qc_ids: set[int]) -> list[tuple[bool, Any, Any]]:
    """Claim and submit ``count`` tasks through the API: (was QC, /api/me before, after)."""
    served = []
    for _ in range(count):
        client = client_for(User.objects.get(pk=user.pk))  # as a request loads it
        response = client.post("/api/queue/next/", {}, format="json")
        assert response.status_code == 200, response.content
        task_id = response.json()["id"]
        before = client.get("/api/me/").json()
        submitted = client.post(f"/api/tasks/{task_id}/submit/", submit_body(), format="json")
        assert submitted.status_code == 201
        served.append((task_id in qc_ids, before, client.get("/api/me/").json()))
    return served


def passed_annotator() -> Any:
    user = annotator()
    AnnotatorProfile.objects.filter(user=user).update(screening_passed=True)
    return user


def test_qc_positions_are_random_at_the_configured_rate_with_a_minimum_gap() -> None:
    qc_ids = setup_queue(normal=150, qc=50)
    kinds = [was_qc for was_qc, _, _ in work(passed_annotator(), 150, qc_ids)]
    positions = [index for index, was_qc in enumerate(kinds) if was_qc]
    gaps = [later - earlier - 1 for earlier, later in itertools.pairwise(positions)]
    assert abs(len(positions) / len(kinds) - RATE) <= 0.07, positions
    assert min(gaps) >= qc_min_gap(RATE) == 2, gaps  # never two QC questions close together
    assert len(set(gaps)) >= 3, gaps  # not periodic: the spacing varies
    # Another annotator gets other positions.
    other = [was_qc for was_qc, _, _ in work(passed_annotator(), 60, qc_ids)]
    assert other != kinds[:60]


def test_api_me_does_not_change_right_after_a_qc_submit() -> None:
    qc_ids = setup_queue(normal=60, qc=15)
    user = passed_annotator()
    served = work(user, 60, qc_ids)
    qc_at = [index for index, (was_qc, _, _) in enumerate(served) if was_qc]
    assert len(qc_at) >= 3
    # Each QC label counts once its own delay of further labels has passed: at qc + delay.
    label_ids = list(
        Label.objects.filter(annotator=user).order_by("id").values_list("id", flat=True)
    )
    reveals = {j + qc_reveal_after(label_id=label_ids[j], qc_rate=RATE) for j in qc_at}
    checked = 0
    for index in qc_at:
        _, before, after = served[index]
        assert after["labels_total"] == before["labels_total"] + 1  # like any other submit
        if index in reveals:  # an earlier QC label's delay happens to end at this submit
            continue
        assert after["gold_agreement"] == before["gold_agreement"], index
        checked += 1
    assert checked >= 2
    # The figure moves only where some QC label's delay ends, never at its own submit.
    agreement = [after["gold_agreement"] for _, _, after in served]
    changes = {i for i in range(1, len(served)) if agreement[i] != agreement[i - 1]}
    assert changes and changes <= reveals, (changes, reveals)
    assert served[qc_at[0]][2]["gold_agreement"] is None
    assert served[-1][2]["gold_agreement"] is not None
