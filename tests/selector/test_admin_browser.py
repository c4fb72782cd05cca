"""The job page's live progress bar in headless Chromium: it polls, moves, and shows results."""

from collections.abc import Iterator

import pytest

from selector.models import Job, JobKind, JobStatus, SelectorVersion, VersionStatus
from selector.services import selector_permissions_grant
from tests.factories import UserFactory
from tests.selector.test_admin import METRICS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, live_server) -> Iterator:
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def test_progress_bar_follows_the_job_and_shows_results_when_done(page):
    user = UserFactory(username="ml", is_staff=True)
    user.groups.add(selector_permissions_grant())
    version = SelectorVersion.objects.create(
        name="v1", base_model="-", status=VersionStatus.READY, metrics={}
    )
    job = Job.objects.create(
        kind=JobKind.EVALUATE, status=JobStatus.RUNNING, version=version, progress_total=10
    )
    page.goto(f"/admin/selector/job/{job.pk}/change/")
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
