"""Admin export page and actions, QC actions (gold, QC tasks, pause) and quality settings."""

import json
from typing import Any

import pytest
from django.test import Client

from jobs.models import Job
from labeling.models import AnnotatorProfile, QualitySettings, Task, TaskKind
from labeling.services.export_jobs import export_job_run
from tests.factories import LabelFactory, SolutionFactory, TaskFactory, UserFactory, annotator
from tests.labeling.prm800k_records import (
    STEPWISE_OPTIONS,
    row_completions,
    stepwise_option_labels,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def export_dir(settings: Any, tmp_path: Any) -> Any:
    settings.EXPORT_DIR = tmp_path / "exports"
    return settings.EXPORT_DIR


@pytest.fixture
def boss() -> Any:
    return UserFactory(username="boss", is_staff=True, is_superuser=True)


@pytest.fixture
def admin_client(boss: Any) -> Client:
    client = Client()
    client.force_login(boss)
    return client


def streamed_lines(response: Any) -> list[dict]:
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def action(client: Client, model: str, name: str, ids: list[int]) -> Any:
    return client.post(
        f"/admin/labeling/{model}/",
        {"action": name, "_selected_action": [str(i) for i in ids]},
        follow=name.startswith("export") is False,
    )


def test_export_page_is_staff_only() -> None:
    client = Client()
    response = client.get("/admin/labeling/label/export/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(annotator("worker"))
    assert client.get("/admin/labeling/label/export/").status_code == 302


def test_export_selected_labels_action_streams_just_those(admin_client: Client) -> None:
    chosen = LabelFactory(task=TaskFactory(kind=TaskKind.QUALITY_CONTROL))
    LabelFactory()
    response = action(admin_client, "label", "export_selected_prm800k", [chosen.pk])
    assert response.status_code == 200 and response.streaming
    [record] = streamed_lines(response)
    assert record["labeler"] == str(chosen.labeler)
    assert record["is_quality_control_question"] is True


def test_export_page_download_and_background_job(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    LabelFactory(task=TaskFactory(generation=3))
    LabelFactory(task=TaskFactory(generation=4))
    page = admin_client.get("/admin/labeling/label/export/")
    assert page.status_code == 200 and b"Download now" in page.content
    form = {"format": "prm800k", "generation": "4", "neutral": "positive"}
    response = admin_client.post("/admin/labeling/label/export/", {**form, "download": "1"})
    assert [r["generation"] for r in streamed_lines(response)] == [4]

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(
            "/admin/labeling/label/export/", {**form, "background": "1"}, follow=True
        )
    assert len(callbacks) == 1
    job = Job.objects.get()
    assert job.params["generation"] == 4
    assert b"Export job #" in response.content
    assert b'http-equiv="refresh"' in response.content  # refreshes while the job runs
    export_job_run(job_id=job.pk)
    page = admin_client.get("/admin/labeling/label/export/").content.decode()
    assert f'href="/api/export/jobs/{job.pk}/download/"' in page
    assert 'http-equiv="refresh"' not in page
    download = admin_client.get(f"/api/export/jobs/{job.pk}/download/")
    assert [
        json.loads(x)["generation"] for x in b"".join(download.streaming_content).splitlines()
    ] == [4]


def test_export_page_offers_the_trl_options_off_by_default(admin_client: Client) -> None:
    form = admin_client.get("/admin/labeling/label/export/").context["form"]
    for option in STEPWISE_OPTIONS[1:]:
        assert form.fields[option].help_text.startswith("TRL only:")
        assert not form.fields[option].required and not form[option].value()


@pytest.mark.parametrize("option", STEPWISE_OPTIONS)
def test_export_page_download_passes_each_trl_option_through(
    admin_client: Client, option: str
) -> None:
    expected = stepwise_option_labels()
    form = {"format": "stepwise", "neutral": "positive", "download": "1"}
    if option:
        form[option] = "on"
    response = admin_client.post("/admin/labeling/label/export/", form)
    assert response.status_code == 200 and response.streaming
    assert row_completions(streamed_lines(response)) == expected[option]


@pytest.mark.parametrize("option", STEPWISE_OPTIONS)
def test_export_page_background_job_passes_each_trl_option_through(
    admin_client: Client, option: str, django_capture_on_commit_callbacks: Any
) -> None:
    expected = stepwise_option_labels()
    form = {"format": "stepwise", "neutral": "negative", "background": "1"}
    if option:
        form[option] = "on"
    with django_capture_on_commit_callbacks(execute=False):
        admin_client.post("/admin/labeling/label/export/", form)
    job = Job.objects.get()
    assert job.params["neutral"] == "negative"
    assert [k for k in STEPWISE_OPTIONS[1:] if job.params[k]] == ([option] if option else [])
    export_job_run(job_id=job.pk)
    download = admin_client.get(f"/api/export/jobs/{job.pk}/download/")
    rows = [json.loads(x) for x in b"".join(download.streaming_content).splitlines()]
    assert row_completions(rows) == expected[option]


def test_export_page_rejects_a_bad_date(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/labeling/label/export/",
        {"format": "prm800k", "since": "soon", "neutral": "positive", "download": "1"},
    )
    assert response.status_code == 200
    assert response.context["form"].errors["since"]


def test_use_my_label_as_gold_action(admin_client: Client, boss: Any) -> None:
    mine = TaskFactory(kind=TaskKind.QUALITY_CONTROL)
    LabelFactory(task=mine, annotator=boss)
    other = TaskFactory(kind=TaskKind.QUALITY_CONTROL)
    response = action(admin_client, "task", "use_my_label_as_gold", [mine.pk, other.pk])
    body = response.content.decode()
    assert "Your label is now gold on 1 task(s)." in body
    assert f"You have no label on task(s) {other.pk}" in body
    mine.refresh_from_db()
    other.refresh_from_db()
    assert mine.gold_label is not None and mine.gold_label.annotator == boss
    assert other.gold_label is None


def test_queue_solutions_as_qc_and_screening(admin_client: Client) -> None:
    solutions = [SolutionFactory(), SolutionFactory()]
    ids = [s.pk for s in solutions]
    response = action(admin_client, "solution", "queue_as_screening", ids)
    assert "Created 2 screening task(s)" in response.content.decode()
    action(admin_client, "solution", "queue_as_quality_control", ids[:1])
    kinds = sorted(Task.objects.values_list("kind", flat=True))
    assert kinds == [TaskKind.QUALITY_CONTROL, TaskKind.SCREENING, TaskKind.SCREENING]


def test_pause_and_resume_actions(admin_client: Client) -> None:
    profile = AnnotatorProfile.objects.get(user=annotator("ada"))
    action(admin_client, "annotatorprofile", "pause_annotators", [profile.pk])
    profile.refresh_from_db()
    assert profile.is_paused
    action(admin_client, "annotatorprofile", "resume_annotators", [profile.pk])
    profile.refresh_from_db()
    assert not profile.is_paused


def test_quality_settings_singleton_is_editable(admin_client: Client) -> None:
    response = admin_client.get("/admin/labeling/qualitysettings/")
    assert response.status_code == 302
    assert response["Location"].endswith("/admin/labeling/qualitysettings/1/change/")
    response = admin_client.post(
        "/admin/labeling/qualitysettings/1/change/",
        {"qc_rate": "0.2", "screening_pass_mark": "0.8", "screening_required": ""},
    )
    assert response.status_code == 302
    row = QualitySettings.objects.get(pk=1)
    assert (row.qc_rate, row.screening_pass_mark) == (0.2, 0.8)
    assert admin_client.get("/admin/labeling/qualitysettings/add/").status_code == 403


def test_pause_below_threshold_pauses_only_failing_selected(admin_client: Client) -> None:
    failing, passing, other = annotator("fail"), annotator("pass"), annotator("other")
    AnnotatorProfile.objects.filter(user__in=[failing, other]).update(screening_passed=False)
    AnnotatorProfile.objects.filter(user=passing).update(screening_passed=True)
    selected = AnnotatorProfile.objects.filter(user__in=[failing, passing])
    response = action(
        admin_client,
        "annotatorprofile",
        "pause_below_threshold",
        list(selected.values_list("pk", flat=True)),
    )
    assert "Paused 1 annotator(s) below the threshold: fail." in response.content.decode()
    paused = set(
        AnnotatorProfile.objects.filter(is_paused=True).values_list("user__username", flat=True)
    )
    assert paused == {"fail"}  # "other" fails too but was not selected
