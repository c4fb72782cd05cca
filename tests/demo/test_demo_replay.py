"""`seed_demo --simulate`: two rounds of the real loop in the database itself, the oracle as the
annotator, leaving two evaluated versions and two generations of tasks for a new user."""

import io

import pytest
from django.core.management import call_command
from django.urls import reverse

from demo.replay import DEMO_ORACLE, DEMO_VERSION_PREFIX
from labeling.models import Label, Problem, Task, TaskKind
from selector.models import SelectorVersion, VersionStatus
from selector.simulation.pool import synthetic_pool
from tests.factories import UserFactory


def seed_simulate() -> str:
    out = io.StringIO()
    call_command("seed_demo", "--no-grade", "--simulate", stdout=out)
    return out.getvalue()


@pytest.mark.slow
def test_seed_demo_simulate_leaves_two_versions_and_two_generations(
    db, selector_settings, tmp_path, client
):
    selector_settings.SIMULATION_DIR = tmp_path / "simulations"
    out = seed_simulate()
    assert "versions demo-sim-r1, demo-sim-r2 (the last one active)" in out

    r1, r2 = (SelectorVersion.objects.get(name=f"{DEMO_VERSION_PREFIX}-r{n}") for n in (1, 2))
    assert (r1.status, r2.status) == (VersionStatus.READY, VersionStatus.READY)
    assert not r1.is_active and r2.is_active
    for version in (r1, r2):
        assert version.metrics["step"]["auroc"] is not None
    # Both measured on the same frozen evaluation set, so the admin can compare them.
    assert r1.metrics["eval_set"]["id"] == r2.metrics["eval_set"]["id"]
    assert r2.training_summary["examples"] > r1.training_summary["examples"]

    synthetic = Task.objects.filter(kind=TaskKind.NORMAL, solution__source="synthetic")
    gen1, gen2 = synthetic.filter(generation=1), synthetic.filter(generation=2)
    assert gen1.exists() and gen2.exists()
    assert set(gen1.values_list("selector_version", flat=True)) == {r1.pk}
    assert set(gen2.values_list("selector_version", flat=True)) == {r2.pk}
    assert not gen1.filter(label_count=0).exists()  # the oracle labeled generation 1...
    assert not gen2.exclude(label_count=0).exists()  # ...and left generation 2 for people
    # The demo's own queue is untouched.
    assert not Label.objects.filter(task__solution__source="demo").exists()

    # The oracle's labels are the pool's known ratings, through the first wrong step.
    truth = {
        (p.key, c.steps): [r for r in c.ratings if r is not None]
        for p in synthetic_pool(problems=30, candidates=10, seed=0)
        for c in p.candidates
    }
    labels = Label.objects.filter(annotator__username=DEMO_ORACLE).select_related(
        "task__solution__problem"
    )
    assert labels.count() == synthetic.exclude(label_count=0).count()
    for label in labels:
        solution = label.task.solution
        assert label.ratings == truth[solution.problem.unique_id, tuple(solution.steps)]

    # The admin shows each version's metrics and plots.
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:selector_selectorversion_change", args=[r2.pk]))
    html = page.content.decode()
    assert "Evaluation on the frozen evaluation set" in html
    assert reverse("admin:selector_selectorversion_plot", args=[r2.pk, "roc"]) in html

    # Once per database: a second run changes nothing.
    counts = (Problem.objects.count(), Task.objects.count(), Label.objects.count())
    assert "already replayed" in seed_simulate()
    assert counts == (Problem.objects.count(), Task.objects.count(), Label.objects.count())
