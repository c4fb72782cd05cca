"""The simulation in the product: ML staff start it from the selector admin as a Job, watch its
progress, and read its curves, ratio and summary on the job's page."""

import re

import pytest
from django.urls import reverse

from jobs.models import Job, JobKind, JobStatus
from selector import tasks
from selector.simulation.runner import config_for
from tests.factories import UserFactory, annotator


@pytest.fixture
def sim_dir(settings, tmp_path):
    settings.SIMULATION_DIR = tmp_path / "simulations"
    return settings.SIMULATION_DIR


def start_url() -> str:
    return reverse("admin:selector_selectorversion_start", args=["simulate"])


@pytest.mark.slow
def test_admin_starts_a_simulation_job_whose_page_shows_the_curves(
    staff_client, ml_staff, sim_dir, django_capture_on_commit_callbacks
):
    changelist = staff_client.get(reverse("admin:selector_selectorversion_changelist"))
    assert start_url() in changelist.content.decode()  # the button is there for ML staff

    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(start_url(), {"preset": "test"})
    job = Job.objects.get()
    assert (job.kind, job.status, job.params, job.created_by) == (
        JobKind.SIMULATE,
        JobStatus.QUEUED,
        {"preset": "test"},
        ml_staff,
    )
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert len(callbacks) == 1  # the task is sent once the row is committed

    # What the ml-queue worker does with the task it receives.
    assert tasks.simulation_execute(job.pk) == JobStatus.SUCCEEDED
    job.refresh_from_db()
    config = config_for("test")
    # The template, then each arm x seed x round (the baselines' extra budgets are rounds too).
    baselines = ("uniform", "random_wrong")
    rounds = sum(1 + config.rounds + (arm in baselines) * len(config.baseline_extra)
                 for arm in config.arms)  # fmt: skip
    assert job.progress_total == 1 + config.seeds * rounds
    assert job.progress_done == job.progress_total
    assert (sim_dir / str(job.pk) / "report.json").is_file()
    assert set(job.result["data_efficiency"]) >= {"metric", "ratio", "ci95", "method"}
    # The uncertainty rules' ratios come with the result and in the summary on the page.
    for key in ("data_efficiency_uncertainty", "data_efficiency_mixed_vs_80_20"):
        assert set(job.result[key]) == set(job.result["data_efficiency"]), key

    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert 'id="data-efficiency"' in page and "95% interval" in page
    # summary.md rendered as HTML (not raw markdown), the ratio in words, and the test
    # preset marked as a machinery check.
    assert "<h3>Active-learning simulation</h3>" in page and "# Active-learning" not in page
    assert re.search(r"<table[^>]*><thead><tr><th>arm</th>", page)
    assert "Machinery check: not a measurement." in page
    assert "data_efficiency_mixed_vs_80_20" in page
    # The ratio as a sentence, whichever way this tiny run came out.
    outcomes = r"80/20 (reached uniform|needed [0-9.]+ times the labels|and uniform needed about)"
    assert re.search(f"{outcomes}|No ratio", page)
    # The CSP forbids inline scripts: every <script> on the page loads a file.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
    images = re.findall(r'<img src="([^"]+)" alt="simulation curves"', page)
    assert {url.rsplit("/", 1)[1] for url in images} == {"curves_labels.png", "curves_steps.png"}
    for url in images:
        png = staff_client.get(url)
        assert png.status_code == 200 and png["Content-Type"] == "image/png"
        assert b"".join(png.streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulation_needs_the_job_permission(client, sim_dir, db):
    client.force_login(UserFactory(username="clerk", is_staff=True))
    assert client.post(start_url(), {"preset": "test"}).status_code == 403
    client.force_login(annotator("ann"))
    assert client.post(start_url(), {"preset": "test"}).status_code == 302  # to the sign-in
    assert not Job.objects.exists()


def test_unknown_preset_is_refused_with_a_message(staff_client, sim_dir):
    response = staff_client.post(start_url(), {"preset": "full"}, follow=True)
    assert "was not started: preset must be one of test, ci, got &#x27;full&#x27;" in (
        response.content.decode().lower()
    )
    assert not Job.objects.exists()


def test_simulation_files_are_served_to_job_viewers_only(client, staff_client, sim_dir):
    job = Job.objects.create(kind=JobKind.SIMULATE, status=JobStatus.SUCCEEDED)
    out = sim_dir / str(job.pk)
    out.mkdir(parents=True)
    (out / "curves_labels.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (out / "secret.txt").write_text("not served")

    def url(name: str, job_id: int = job.pk) -> str:
        return reverse("admin:selector_selectorversion_simulation_file", args=[job_id, name])

    assert staff_client.get(url("curves_labels.png")).status_code == 200
    assert staff_client.get(url("secret.txt")).status_code == 404  # not a name the runner writes
    assert staff_client.get(url("curves_steps.png")).status_code == 404  # not written
    other = Job.objects.create(kind=JobKind.EXPORT)
    (sim_dir / str(other.pk)).mkdir()
    (sim_dir / str(other.pk) / "curves_labels.png").write_bytes(b"x")
    assert staff_client.get(url("curves_labels.png", other.pk)).status_code == 404
    client.force_login(UserFactory(username="clerk", is_staff=True))
    assert client.get(url("curves_labels.png")).status_code == 403
