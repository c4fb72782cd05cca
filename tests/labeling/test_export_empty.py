"""An export that would be empty says so and why (issue 19 §7), instead of downloading an empty
file: on the admin page (download or background) and in a background job's result."""

import datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from jobs.models import Job
from labeling.models import TaskKind
from labeling.services.export import ExportFilters
from labeling.services.export_jobs import export_empty_reason, export_job_create, export_job_run
from tests.factories import LabelFactory, TaskFactory, UserFactory

pytestmark = pytest.mark.django_db
EXPORT = "/admin/labeling/label/export/"


@pytest.fixture(autouse=True)
def export_dir(settings: Any, tmp_path: Any) -> Any:
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    return client


def form(**fields: str) -> dict[str, str]:
    return {"format": "prm800k", "neutral": "positive", **fields}


@pytest.mark.parametrize("button", ["download", "background"])
def test_a_generation_with_no_labels_says_the_export_is_empty_and_why(admin_client, button):
    LabelFactory(task=TaskFactory(generation=3))
    LabelFactory(task=TaskFactory(generation=4))
    response = admin_client.post(EXPORT, {**form(generation="999999"), button: "1"})
    assert response.status_code == 200
    assert "Content-Disposition" not in response  # no empty file
    text = response.content.decode()
    assert (
        "The export is empty: no label is in generation 999999 "
        "(the latest generation with labels is 4)." in text
    )
    assert not Job.objects.exists()


def test_a_generation_past_what_the_column_holds_is_a_field_error(admin_client):
    LabelFactory(task=TaskFactory(generation=3))
    response = admin_client.post(EXPORT, {**form(generation=str(10**20)), "download": "1"})
    assert response.status_code == 200
    assert "Content-Disposition" not in response
    assert "Ensure this value is less than or equal to 2147483647" in response.content.decode()


def test_each_reason_is_named():
    assert export_empty_reason(filters=ExportFilters()) == (
        "The export is empty: there are no labels yet."
    )
    label = LabelFactory(task=TaskFactory(kind=TaskKind.QUALITY_CONTROL, generation=1))
    assert "quality-control or screening label" in str(export_empty_reason(filters=ExportFilters()))
    assert export_empty_reason(filters=ExportFilters(include_qc=True)) is None
    later = timezone.now() + datetime.timedelta(days=1)
    since = export_empty_reason(filters=ExportFilters(since=later, generation=7))
    assert since is not None
    assert "no label is in generation 7 (the latest generation with labels is 1)" in since
    assert f"the newest is from {label.created_at:%Y-%m-%d %H:%M} UTC" in since
    both = export_empty_reason(filters=ExportFilters(generation=1, include_qc=False))
    assert both is not None and "left out unless included" in both


def test_an_empty_background_export_says_so_in_its_result():
    LabelFactory(task=TaskFactory(generation=2))
    job = export_job_create(
        created_by=None, filters=ExportFilters(generation=5), export_format="prm800k"
    )
    export_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert job.result["lines"] == 0
    assert job.result["empty"].startswith("The export is empty: no label is in generation 5")
