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
from tests.factories import LabelFactory, TaskFactory, UserFactory, annotator, staff_with

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


def test_selector_metrics_read_whatever_keys_exist() -> None:
    SelectorVersion.objects.create(name="v1", base_model="m", metrics={"auroc": 0.7})
    SelectorVersion.objects.create(
        name="v2",
        base_model="m",
        metrics={"step_auroc": 0.8, "eval": {"loss": 0.5}, "note": "text", "flag": True},
    )
    SelectorVersion.objects.create(name="v3", base_model="m", metrics=[])  # malformed: ignored
    names, versions = dashboard.selector_metrics()
    assert names == ["step_auroc", "auroc", "eval.loss"]
    assert [v["values"] for v in versions] == [
        [None, 0.7, None],
        [0.8, None, 0.5],
        [None, None, None],
    ]


def test_dashboard_page_renders_every_section(
    staff: Client, django_assert_max_num_queries: Any
) -> None:
    user = annotator("ada")
    profile = AnnotatorProfile.objects.get(user=user)
    LabelFactory(annotator=user, labeler=profile.labeler, created_at=timezone.now())
    SelectorVersion.objects.create(name="v1", base_model="m", metrics={"step_auroc": 0.81})
    with django_assert_max_num_queries(20):
        response = staff.get("/admin/dashboard/")
    assert response.status_code == 200
    body = response.content.decode()
    for marker in ['id="progress"', 'id="ratings"', 'id="finish-reasons"', 'id="annotators"',
                   'id="selector-metrics"', "ada", "step_auroc", "0.8100"]:  # fmt: skip
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
