"""Late work on the page (decision 0003, issue 21), in Chromium against the real API: a label on
a hold that was taken back and given to someone else is saved (late); one the server refuses
for good is announced at once, and its draft stays in the browser, across a reload, until the
annotator dismisses the notice."""

import datetime
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from labeling.models import Label, Lease, QualitySettings, ReleasedLease, Task
from labeling.services.queue import leases_release_expired, task_claim_next
from tests.browser.conftest import login
from tests.factories import ProblemFactory, SolutionFactory, TaskFactory, annotator

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def tasks() -> tuple[Task, Task]:
    QualitySettings.objects.create(pk=1, qc_rate=0.0)
    made = []
    for priority, n in ((0.9, 2), (0.5, 3)):
        solution = SolutionFactory(
            problem=ProblemFactory(problem=f"What is ${n} + {n}$?", answer=str(2 * n)),
            steps=[f"Add: ${n} + {n} = {2 * n}$.", f"# Answer\n\n{2 * n}"],
        )
        made.append(cast(Task, TaskFactory(solution=solution, priority=priority)))
    return made[0], made[1]


def on_screen(page: Page, task: Task) -> None:
    expect(page.locator(f'#app[data-state="task"][data-task-id="{task.pk}"]')).to_be_visible()


def rate_all_great(page: Page) -> None:
    page.keyboard.press("3")
    page.keyboard.press("3")
    expect(page.locator("#app")).to_have_attribute("data-finish", "solution")


def take_back(task: Task) -> None:
    """The hold runs out and the sweep takes it back (a laptop asleep over lunch)."""
    expired = timezone.now() - datetime.timedelta(minutes=1)
    Lease.objects.filter(task=task).update(expires_at=expired)
    assert leases_release_expired() == 1


def draft_keys(page: Page, username: str) -> list[str]:
    return cast(
        list[str],
        page.evaluate(
            "(prefix) => Object.keys(localStorage).filter((k) => k.startsWith(prefix))",
            f"stepwise:{username}:draft:",
        ),
    )


def test_work_on_a_hold_given_to_someone_else_is_saved_as_late(
    page: Page, tasks: tuple[Task, Task], wait_until: Callable[..., None]
) -> None:
    first, _ = tasks
    user = annotator("sleepy")
    login(page, "sleepy")
    on_screen(page, first)
    rate_all_great(page)
    take_back(first)
    claim = task_claim_next(annotator=annotator("quick"))
    assert claim is not None and claim.task.pk == first.pk  # the slot went to someone else

    page.keyboard.press("Enter")
    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label")
    assert Label.objects.get(task=first, annotator=user).late
    expect(page.locator("#save-status")).to_have_text("All work saved")
    expect(page.locator(".refused")).to_be_hidden()
    first.refresh_from_db()
    assert (first.label_count, first.late_count, first.lease_count) == (0, 1, 1)


def test_refused_work_is_announced_and_its_draft_kept_until_dismissed(
    page: Page, tasks: tuple[Task, Task], artifacts_dir: Path
) -> None:
    first, second = tasks
    user = annotator("away")
    login(page, "away")
    on_screen(page, first)
    rate_all_great(page)
    take_back(first)
    ReleasedLease.objects.filter(task=first).delete()  # a day went by: the hold is forgotten
    assert task_claim_next(annotator=annotator("other")).task.pk == first.pk

    page.keyboard.press("Enter")
    notice = page.locator(f'.refused-item[data-task-id="{first.pk}"]')
    expect(notice).to_be_visible()
    expect(notice).to_contain_text(f"Your label for task {first.pk} was not saved.")
    expect(notice).to_contain_text("hold on this task ran out")
    expect(notice).to_contain_text("Your ratings (Great, Great) stay saved in this browser")
    page.screenshot(path=artifacts_dir / "label-refused.png", full_page=True)
    assert not Label.objects.filter(annotator=user).exists()
    assert f"stepwise:away:draft:{first.pk}" in draft_keys(page, "away")
    on_screen(page, second)  # the page moved on; the notice stays above the next task

    # The annotator works on; a reload still shows the notice and still has the draft.
    page.reload()
    expect(notice).to_be_visible()
    assert f"stepwise:away:draft:{first.pk}" in draft_keys(page, "away")

    notice.get_by_role("button", name="Dismiss").click()
    expect(page.locator(".refused")).to_be_hidden()
    assert f"stepwise:away:draft:{first.pk}" not in draft_keys(page, "away")
    page.reload()
    expect(page.locator(".refused-item")).to_have_count(0)
