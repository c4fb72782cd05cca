"""The annotator bugs of issue 19 §6 and issue 18 §3, in Chromium against the real API: a task
already submitted (in another tab, or on another device) never comes back from a saved draft;
a hold taken back and held by another annotator keeps the draft and says the work is kept;
Backspace after Flag undoes the flag only; the page's key help is the README's table."""

import datetime
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from labeling.models import Label, Lease, QualitySettings, Task
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
            steps=[f"Write ${n} + {n}$.", f"Add: ${n} + {n} = {2 * n}$.", f"# Answer\n\n{2 * n}"],
        )
        made.append(cast(Task, TaskFactory(solution=solution, priority=priority)))
    return made[0], made[1]


def on_screen(page: Page, task: Task) -> None:
    expect(page.locator(f'#app[data-state="task"][data-task-id="{task.pk}"]')).to_be_visible()


def draft_keys(page: Page, username: str) -> list[str]:
    return cast(
        list[str],
        page.evaluate(
            "(prefix) => Object.keys(localStorage).filter((k) => k.startsWith(prefix))",
            f"stepwise:{username}:draft:",
        ),
    )


def submit_all_great(page: Page) -> None:
    for _ in range(3):
        page.keyboard.press("3")
    expect(page.locator("#app")).to_have_attribute("data-finish", "solution")
    page.keyboard.press("Enter")


def test_a_task_submitted_in_another_tab_is_put_away_and_its_draft_never_comes_back(
    page: Page, tasks: tuple[Task, Task], wait_until: Callable[..., None]
) -> None:
    first, second = tasks
    user = annotator("twotabs")
    login(page, "twotabs")
    on_screen(page, first)
    other_tab = page.context.new_page()
    other_tab.goto("/label/")
    on_screen(other_tab, first)  # the same hold, shown in both tabs
    other_tab.keyboard.press("2")  # some work in the second tab, saved as a draft

    page.bring_to_front()
    submit_all_great(page)
    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label")

    # The second tab puts the task away instead of keeping it to be redone.
    on_screen(other_tab, second)
    expect(other_tab.locator(".notice")).to_contain_text(
        f"You submitted task {first.pk} in another tab"
    )
    # Its draft timer (every 5 s) must not write the submitted task's draft back.
    other_tab.wait_for_timeout(6_000)
    assert f"stepwise:twotabs:draft:{first.pk}" not in draft_keys(page, "twotabs")
    page.reload()
    on_screen(page, second)
    assert Label.objects.filter(annotator=user).count() == 1


def test_a_saved_draft_of_a_task_submitted_on_another_device_is_dropped(
    page: Page, browser: Any, live_server: Any, tasks: tuple[Task, Task]
) -> None:
    first, second = tasks
    user = annotator("twodevices")
    login(page, "twodevices")
    on_screen(page, first)
    page.keyboard.press("3")  # half done here, kept as a draft in this browser

    laptop = browser.new_context(base_url=live_server.url)
    try:
        other = laptop.new_page()
        login(other, "twodevices")
        on_screen(other, first)  # the same hold
        submit_all_great(other)
        expect(other.locator("#save-status")).to_have_text("All work saved")
    finally:
        laptop.close()
    assert Label.objects.filter(task=first, annotator=user).count() == 1

    # Back at the first browser: its draft brings the task back; the heartbeat puts it away.
    page.reload()
    on_screen(page, second)
    notice = page.locator(".notice")
    expect(notice).to_contain_text(f"You already submitted task {first.pk}")
    expect(notice).not_to_contain_text("finish it anyway")
    assert f"stepwise:twodevices:draft:{first.pk}" not in draft_keys(page, "twodevices")
    expect(page.locator(".refused-item")).to_have_count(0)


def test_a_hold_taken_back_and_held_by_another_keeps_the_draft_and_says_work_is_kept(
    page: Page, tasks: tuple[Task, Task], wait_until: Callable[..., None]
) -> None:
    first, _ = tasks
    user = annotator("slow")
    login(page, "slow")
    on_screen(page, first)
    page.keyboard.press("3")
    page.keyboard.press("2")
    Lease.objects.filter(task=first).update(
        expires_at=timezone.now() - datetime.timedelta(minutes=1)
    )
    assert leases_release_expired() == 1
    claim = task_claim_next(annotator=annotator("quick"))
    assert claim is not None and claim.task.pk == first.pk  # someone else holds it now

    page.reload()  # the page checks its hold when it opens the task again
    on_screen(page, first)
    notice = page.locator(".notice")
    expect(notice).to_contain_text("another annotator has it now")
    expect(notice).to_contain_text("saved as an extra label")
    steps = page.locator("li.step")
    expect(steps.nth(0)).to_have_class(re.compile(r"\brated-great\b"))  # the draft was kept
    expect(steps.nth(1)).to_have_class(re.compile(r"\brated-okay\b"))
    assert f"stepwise:slow:draft:{first.pk}" in draft_keys(page, "slow")

    page.keyboard.press("3")
    page.keyboard.press("Enter")
    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label")
    label = Label.objects.get(task=first, annotator=user)
    assert label.late and label.ratings == [1, 0, 1]  # what the banner promised
    expect(page.locator(".refused")).to_be_hidden()


def readme_key_table() -> list[tuple[str, str]]:
    text = (Path(settings.BASE_DIR) / "README.md").read_text(encoding="utf-8")
    lines = text.split("### Keys on the label page", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    table = []
    for line in rows[2:]:
        key, what = (cell.strip() for cell in line.strip("|").split("|"))
        table.append((" ".join(key.replace("`", "").split()), what))
    return table


def test_backspace_after_flag_undoes_the_flag_only_and_help_matches_the_readme(
    page: Page, tasks: tuple[Task, Task]
) -> None:
    first, _ = tasks
    annotator("flagger")
    login(page, "flagger")
    on_screen(page, first)
    steps = page.locator("li.step")
    page.keyboard.press("3")
    page.keyboard.press("f")  # flag step 2, the current one
    expect(steps.nth(1)).to_have_class(re.compile(r"\bflagged\b"))

    page.keyboard.press("Backspace")
    expect(steps.nth(1)).not_to_have_class(re.compile(r"\bflagged\b"))
    expect(steps.nth(0)).to_have_class(re.compile(r"\brated-great\b"))  # still rated
    expect(steps.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("Backspace")  # then the rating before it
    expect(steps.nth(0)).not_to_have_class(re.compile(r"\brated-great\b"))
    expect(steps.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))

    # The help the page shows is the README's key table, row for row.
    page.keyboard.press("?")
    rows = page.locator("dialog[open] table.keys tr")
    expect(rows.first).to_be_visible()
    shown = [
        (" ".join(row.locator("th").inner_text().split()), row.locator("td").inner_text())
        for row in rows.all()
    ]
    assert shown == readme_key_table()
    assert {"G", "B", "C", "2 or 0"} <= {key for key, _ in shown}
