"""The staff dashboard: permissions, SQL aggregates, and plots that really render."""

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from PIL import Image

from labeling import dashboard, permissions
from labeling.models import AnnotatorProfile, Task, TaskKind
from selector.models import SelectorVersion
from tests.factories import (
    LabelFactory,
    ProblemFactory,
    SolutionFactory,
    TaskFactory,
    UserFactory,
    annotator,
    staff_with,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff() -> Client:
    client = Client()
    client.force_login(
        staff_with(permissions.VIEW_DASHBOARD, permissions.PAUSE_ANNOTATORS, username="boss")
    )
    return client


def test_dashboard_is_staff_only() -> None:
    client = Client()
    for url in ["/admin/dashboard/", "/admin/dashboard/plots/ratings.png"]:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(annotator("worker"))
    assert client.get("/admin/dashboard/").status_code == 302
    profile = AnnotatorProfile.objects.get(user__username="worker")
    client.post(f"/admin/dashboard/annotators/{profile.pk}/pause/", {"paused": "1"})
    profile.refresh_from_db()
    assert profile.is_paused is False


def test_admin_index_links_to_dashboard(staff: Client) -> None:
    UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(UserFactory(username="root"))
    body = client.get("/admin/").content.decode()
    assert 'href="/admin/dashboard/"' in body


def test_progress_counts_queued_leased_and_labeled_per_generation() -> None:
    TaskFactory(generation=1, required_labels=1, label_count=1)
    TaskFactory(generation=1, required_labels=2, label_count=1, lease_count=1)
    TaskFactory(generation=1, required_labels=1)
    TaskFactory(generation=2, required_labels=1)
    TaskFactory(generation=-1, kind=TaskKind.SCREENING)
    rows = {(r.generation, r.kind): r for r in dashboard.progress_by_generation()}
    g1 = rows[(1, TaskKind.NORMAL)]
    assert (g1.tasks, g1.queued, g1.in_progress, g1.labeled, g1.labels) == (3, 1, 1, 1, 2)
    assert rows[(2, TaskKind.NORMAL)].queued == 1
    assert rows[(-1, TaskKind.SCREENING)].tasks == 1


def test_labels_per_hour_buckets_the_last_48_hours() -> None:
    now = datetime(2024, 6, 1, 12, 30, tzinfo=UTC)
    LabelFactory(created_at=now - timedelta(minutes=10))
    LabelFactory(created_at=now - timedelta(minutes=20))
    LabelFactory(created_at=now - timedelta(hours=3))
    LabelFactory(created_at=now - timedelta(hours=60))  # too old
    series = dashboard.labels_per_hour(now=now)
    assert len(series) == 48
    assert series[-1] == (datetime(2024, 6, 1, 12, tzinfo=UTC), 2)
    assert series[-4] == (datetime(2024, 6, 1, 9, tzinfo=UTC), 1)
    assert sum(n for _, n in series) == 3


def test_rating_distribution_unnests_ratings_in_sql() -> None:
    LabelFactory(ratings=[1, 1, 0, -1])
    LabelFactory(ratings=[1, None])
    assert dashboard.rating_distribution() == {"1": 3, "0": 1, "-1": 1, "null": 1}


@pytest.mark.slow
def test_selector_metrics_show_what_the_evaluator_really_wrote(settings, tmp_path) -> None:
    """Real evaluator output (a tiny CPU model), not hand-written keys: the dashboard's
    numbers are the ones the selector admin shows for the same rows."""
    from selector import dashboard as selector_dashboard
    from selector import metric_rows
    from selector.services import selector_create_base, selector_evaluate
    from tests.selector.conftest import tiny_bert_dir

    settings.SELECTOR_BASE_MODEL = str(tiny_bert_dir(tmp_path))
    settings.SELECTOR_CHECKPOINT_DIR = tmp_path / "selectors"
    settings.SELECTOR_DEVICE = "cpu"
    settings.SELECTOR_EVAL_FRACTION = 1.0  # every problem is in the evaluation set
    for p in range(4):
        problem = ProblemFactory(unique_id=f"test/dash/{p}.json")
        for wrong in (False, True):
            steps = [f"We add {p} and {p}.", f"# Answer\n\n{2 * p + wrong}"]
            task = TaskFactory(
                solution=SolutionFactory(problem=problem, steps=steps), queued_by="uniform"
            )
            LabelFactory(
                task=task,
                ratings=[1, -1] if wrong else [1, 1],
                finish_reason="found_error" if wrong else "solution",
            )
    version = selector_create_base(name="dash-base")
    metrics = selector_evaluate(version=version, resamples=10)
    assert metrics["step"]["auroc"] is not None and metrics["first_error"]["f1"] is not None
    names, versions = selector_dashboard.selector_metrics()
    assert names == [row.label for row in metric_rows.HEADLINE_ROWS]
    (row,) = versions
    assert row["eval_set"] == metrics["eval_set"]["id"]
    assert row["values"][names.index("Step AUROC (negative vs not)")] == metrics["step"]["auroc"]
    assert row["values"][names.index("First-error F1")] == metrics["first_error"]["f1"]
    assert None not in row["values"]


def test_dashboard_page_renders_every_section(
    staff: Client, django_assert_max_num_queries: Any
) -> None:
    user = annotator("ada")
    profile = AnnotatorProfile.objects.get(user=user)
    LabelFactory(annotator=user, labeler=profile.labeler, created_at=timezone.now())
    SelectorVersion.objects.create(
        name="v1", base_model="m", metrics={"step": {"auroc": 0.81}, "eval_set": {"id": 3}}
    )
    with django_assert_max_num_queries(20):
        response = staff.get("/admin/dashboard/")
    assert response.status_code == 200
    body = response.content.decode()
    for marker in ['id="progress"', 'id="ratings"', 'id="finish-reasons"', 'id="annotators"',
                   'id="selector-metrics"', "ada", "Step AUROC", "0.8100"]:  # fmt: skip
        assert marker in body, marker


def test_query_count_does_not_grow_with_labels(
    staff: Client, django_assert_max_num_queries: Any
) -> None:
    for _ in range(40):
        LabelFactory(created_at=timezone.now())
    with django_assert_max_num_queries(20):
        assert staff.get("/admin/dashboard/").status_code == 200


@pytest.mark.parametrize("name", list(dashboard.PLOTS))
def test_plots_are_valid_pngs(staff: Client, name: str) -> None:
    LabelFactory(ratings=[1, 0, -1], created_at=timezone.now())
    SelectorVersion.objects.create(name="v1", base_model="m", metrics={"auroc": 0.6})
    response = staff.get(f"/admin/dashboard/plots/{name}.png")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(response.content))
    image.verify()  # raises on a truncated or corrupt file
    assert image.size[0] >= 400 and image.size[1] >= 200


def test_plots_render_on_an_empty_database(staff: Client) -> None:
    for name in dashboard.PLOTS:
        response = staff.get(f"/admin/dashboard/plots/{name}.png")
        assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert staff.get("/admin/dashboard/plots/nope.png").status_code == 404


def test_pause_from_dashboard_keeps_labels(staff: Client) -> None:
    user = annotator("ada")
    profile = AnnotatorProfile.objects.get(user=user)
    LabelFactory(annotator=user, labeler=profile.labeler)
    response = staff.post(f"/admin/dashboard/annotators/{profile.pk}/pause/", {"paused": "1"})
    assert response.status_code == 302
    profile.refresh_from_db()
    assert profile.is_paused and user.labels.count() == 1
    assert "Resume" in staff.get("/admin/dashboard/").content.decode()
    assert Task.objects.count() == 1


@pytest.mark.parametrize("profile_id", [2**63, 10**30])
def test_pausing_a_profile_id_past_64_bits_is_a_404(staff: Client, profile_id: int) -> None:
    response = staff.post(f"/admin/dashboard/annotators/{profile_id}/pause/", {"paused": "1"})
    assert response.status_code == 404
