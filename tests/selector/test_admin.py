"""The ML-staff admin: job buttons, permissions, live progress JSON, evaluation plots."""

import struct

import pytest
from django.urls import reverse

from jobs.models import Job, JobKind, JobStatus
from selector.models import SelectorVersion, VersionStatus
from tests.factories import UserFactory, annotator

METRICS = {
    "version": "v1",
    "step": {"auroc": 0.81, "auprc": 0.5, "n_steps": 40, "n_negative": 9},
    "first_error": {"acc_erroneous": 0.6, "acc_correct": 0.7, "f1": 0.646, "n_erroneous": 9},
    "best_of_n": {
        "n": [1, 2, 4],
        "selector": [0.3, 0.45, 0.5],
        "majority": [0.3, 0.35, 0.4],
        "random": [0.3, 0.3, 0.3],
    },
    "best_of_n_problems": 5,
    "roc": {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.7, 1.0]},
    "compared_with": {
        "version": "base",
        "step": {"auroc": 0.55},
        "roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 1.0]},
        "best_of_n": {"n": [1, 2, 4], "selector": [0.3, 0.31, 0.32]},
    },
}


@pytest.fixture
def versions(db, eval_set_ready):
    base = SelectorVersion.objects.create(
        name="base", base_model="-", status=VersionStatus.READY, is_active=True
    )
    new = SelectorVersion.objects.create(
        name="v1", base_model="-", status=VersionStatus.READY, metrics=METRICS
    )
    return base, new


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_train_button_starts_a_job_and_redirects_to_it(
    staff_client, ml_staff, versions, django_capture_on_commit_callbacks
):
    url = reverse("admin:selector_selectorversion_start", args=["train"])
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(url, {"epochs": "2"})
    job = Job.objects.get()
    assert (job.kind, job.status, job.params, job.created_by) == (
        JobKind.TRAIN,
        JobStatus.QUEUED,
        {"epochs": 2},
        ml_staff,
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert len(callbacks) == 1  # enqueued only after the commit


@pytest.mark.parametrize("kind", ["evaluate", "score"])
def test_version_buttons_start_jobs_for_that_version(
    staff_client, versions, kind, django_capture_on_commit_callbacks
):
    _, new = versions
    url = reverse("admin:selector_selectorversion_start_for", args=[new.pk, kind])
    with django_capture_on_commit_callbacks():
        response = staff_client.post(url)
    job = Job.objects.get()
    assert (job.kind, job.version) == (kind, new)
    assert response.status_code == 302


def test_fill_button_passes_the_budget(staff_client, versions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        staff_client.post(
            reverse("admin:selector_selectorversion_start", args=["fill"]), {"per_problem": "6"}
        )
    assert Job.objects.get().params == {"per_problem": 6}


def test_bad_input_shows_an_error_and_starts_nothing(staff_client, versions):
    failed = SelectorVersion.objects.create(name="bad", base_model="-", status="failed")
    url = reverse("admin:selector_selectorversion_start_for", args=[failed.pk, "evaluate"])
    response = staff_client.post(url, follow=True)
    assert "not ready" in response.content.decode()
    response = staff_client.post(
        reverse("admin:selector_selectorversion_start", args=["train"]), {"epochs": "many"}
    )
    assert response.status_code == 302
    assert not Job.objects.exists()
    assert (
        staff_client.post(
            reverse("admin:selector_selectorversion_start", args=["export"])
        ).status_code
        == 400
    )


def test_starting_needs_post(staff_client, versions):
    url = reverse("admin:selector_selectorversion_start", args=["train"])
    assert staff_client.get(url).status_code == 405
    assert not Job.objects.exists()


def test_annotators_cannot_reach_the_admin(client, versions):
    client.force_login(annotator())
    response = client.post(reverse("admin:selector_selectorversion_start", args=["train"]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.get(reverse("admin:selector_selectorversion_changelist"))
    assert response.status_code == 302
    assert not Job.objects.exists()


def test_staff_without_ml_permissions_get_403(client, versions):
    client.force_login(UserFactory(username="clerk", is_staff=True))
    response = client.post(reverse("admin:selector_selectorversion_start", args=["train"]))
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_job_progress_json(staff_client, versions):
    job = Job.objects.create(
        kind=JobKind.SCORE, status=JobStatus.RUNNING, progress_done=30, progress_total=120
    )
    response = staff_client.get(reverse("admin:jobs_job_progress", args=[job.pk]))
    assert response.status_code == 200
    assert response.json() == {
        "id": job.pk,
        "kind": "score",
        "status": "running",
        "done": 30,
        "total": 120,
        "percent": 25,
        "finished": False,
        "error": "",
    }
    assert "no-store" in response["Cache-Control"]


def test_job_page_has_a_live_progress_bar(staff_client, versions):
    job = Job.objects.create(kind=JobKind.SCORE, status=JobStatus.RUNNING, progress_total=10)
    html = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'id="job-progress-bar"' in html
    assert reverse("admin:jobs_job_progress", args=[job.pk]) in html
    # The polling script is a static file (the CSP allows no inline script); it runs in
    # tests/selector/test_admin_browser.py.
    assert 'data-finished="0"' in html and 'src="/static/jobs/job_progress.js"' in html
    assert "cdn" not in html.lower()


def test_finished_evaluation_job_shows_table_and_plots(staff_client, versions):
    _, new = versions
    job = Job.objects.create(kind=JobKind.EVALUATE, status=JobStatus.SUCCEEDED, version=new)
    html = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'data-finished="1"' in html
    assert "Step AUROC (negative vs not)</td><td>0.810</td><td>0.550</td>" in html
    for which in ("roc", "best_of_n"):
        assert reverse("admin:selector_selectorversion_plot", args=[new.pk, which]) in html


@pytest.mark.parametrize("which", ["roc", "best_of_n"])
def test_plots_render_as_png(staff_client, versions, which):
    _, new = versions
    response = staff_client.get(
        reverse("admin:selector_selectorversion_plot", args=[new.pk, which])
    )
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert png_size(response.content) == (500, 400)
    assert len(response.content) > 10_000  # curves, legend and labels, not a blank image


def test_plot_without_metrics_still_renders_a_placeholder(staff_client, versions):
    base, _ = versions
    response = staff_client.get(
        reverse("admin:selector_selectorversion_plot", args=[base.pk, "roc"])
    )
    assert png_size(response.content) == (500, 400)
    unknown = reverse("admin:selector_selectorversion_plot", args=[base.pk, "nope"])
    assert staff_client.get(unknown).status_code == 404


def test_version_page_compares_with_the_active_version(staff_client, versions):
    _, new = versions
    html = staff_client.get(
        reverse("admin:selector_selectorversion_change", args=[new.pk])
    ).content.decode()
    assert "<th>v1</th><th>base</th>" in html
    assert reverse("admin:selector_selectorversion_promote", args=[new.pk]) in html
    changelist = staff_client.get(reverse("admin:selector_selectorversion_changelist"))
    assert changelist.status_code == 200
    assert (
        reverse("admin:selector_selectorversion_start", args=["train"])
        in changelist.content.decode()
    )


def test_evaluate_action_starts_one_job_per_version(
    staff_client, versions, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        staff_client.post(
            reverse("admin:selector_selectorversion_changelist"),
            {"action": "evaluate_selected", "_selected_action": [v.pk for v in versions]},
        )
    assert Job.objects.filter(kind=JobKind.EVALUATE).count() == 2
    assert len(callbacks) == 2


def test_train_button_can_create_an_untrained_base(
    staff_client, versions, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        staff_client.post(
            reverse("admin:selector_selectorversion_start", args=["train"]), {"base": "1"}
        )
    assert Job.objects.get().params == {"base": True}


def test_ml_staff_group_cannot_delete_history(ml_staff):
    assert ml_staff.has_perm("jobs.add_job")
    assert ml_staff.has_perm("selector.change_selectorversion")
    assert ml_staff.has_perm("labeling.view_label")
    assert not ml_staff.has_perm("selector.delete_selectorversion")
    assert not ml_staff.has_perm("labeling.change_label")


def test_cancel_button_cancels_a_queued_job_once(staff_client, versions):
    _, v1 = versions
    job = Job.objects.create(kind=JobKind.PROMOTE, version=v1)
    page = reverse("admin:jobs_job_change", args=[job.pk])
    assert 'id="job-cancel"' in staff_client.get(page).content.decode()
    url = reverse("admin:jobs_job_cancel", args=[job.pk])
    assert staff_client.get(url).status_code == 405
    staff_client.post(url)
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    body = staff_client.post(url, follow=True).content.decode()
    assert "has already ended" in body and 'id="job-cancel"' not in body


def test_cancel_needs_the_job_permission(client, versions):
    _, v1 = versions
    client.force_login(UserFactory(username="viewer", is_staff=True))
    job = Job.objects.create(kind=JobKind.PROMOTE, version=v1)
    client.post(reverse("admin:jobs_job_cancel", args=[job.pk]))
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
