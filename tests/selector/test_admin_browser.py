"""The job page's live progress bar in headless Chromium: it polls, moves, and shows results."""

import pytest

from jobs.models import Job, JobKind, JobStatus
from selector.models import SelectorVersion, VersionStatus
from selector.services import selector_permissions_grant
from tests.factories import UserFactory
from tests.selector.test_admin import METRICS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_progress_bar_follows_the_job_and_shows_results_when_done(page):
    user = UserFactory(username="ml", is_staff=True)
    user.groups.add(selector_permissions_grant())
    version = SelectorVersion.objects.create(
        name="v1", base_model="-", status=VersionStatus.READY, metrics={}
    )
    job = Job.objects.create(
        kind=JobKind.EVALUATE, status=JobStatus.RUNNING, version=version, progress_total=10
    )
    page.goto(f"/admin/jobs/job/{job.pk}/change/")
    page.fill("#id_username", "ml")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#job-progress-bar")
    assert page.eval_on_selector("#job-progress-bar", "el => el.value") == 0

    Job.objects.filter(pk=job.pk).update(progress_done=5)
    page.wait_for_function("document.getElementById('job-progress-bar').value === 50")
    assert "5 / 10" in page.inner_text("#job-progress-text")

    SelectorVersion.objects.filter(pk=version.pk).update(metrics=METRICS)
    Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, progress_done=10)
    # Finished: the page reloads itself and renders the table and both plots server-side.
    page.wait_for_selector("table.selector-metrics")
    assert "0.810" in page.inner_text("table.selector-metrics")
    page.wait_for_function(
        "[...document.querySelectorAll('.selector-plots img')]"
        ".every(img => img.complete && img.naturalWidth === 500)"
    )
    assert page.eval_on_selector("#job-progress", "el => el.dataset.finished") == "1"
