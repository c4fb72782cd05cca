"""The annotator's rating page end to end: real login, real API, real database, Chromium."""

import datetime
import re
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from labeling.models import Label, Lease, Task
from tests.browser.conftest import login
from tests.factories import ProblemFactory, SolutionFactory, TaskFactory, UserFactory, annotator

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def make_task(priority: float, problem: str, steps: list[str], answer: str) -> Task:
    solution = SolutionFactory(problem=ProblemFactory(problem=problem, answer=answer), steps=steps)
    return cast(Task, TaskFactory(solution=solution, priority=priority))


@pytest.fixture
def two_tasks() -> tuple[Task, Task]:
    first = make_task(
        0.9,
        r"Compute $\frac{1}{2} + \frac{3}{2}$. <b>This is not bold</b>"
        "\n[asy]draw((0,0)--(1,1));[/asy]",
        [
            r"We add the fractions: $\frac{1}{2} + \frac{3}{2} = \frac{4}{2}$.",
            r"\[ \frac{4}{2} = 2. \]",
            "So the sum is $3$.",
            "# Answer\n\n3",
        ],
        "2",
    )
    second = make_task(
        0.5,
        "What is $2 \\times 3$?",
        ["Multiply: $2 \\times 3 = 6$.", "That is the product.", "# Answer\n\n6"],
        "6",
    )
    return first, second


def task_on_screen(page: Page, task: Task) -> None:
    expect(page.locator(f'#app[data-state="task"][data-task-id="{task.pk}"]')).to_be_visible()


def test_annotator_rates_submits_reloads_and_reaches_the_empty_queue(
    page: Page,
    two_tasks: tuple[Task, Task],
    artifacts_dir: Path,
    wait_until: Callable[..., None],
) -> None:
    first, second = two_tasks
    user = annotator("ann")
    login(page, "ann")

    # --- the first task: problem and answer rendered, steps revealed one at a time -----------
    task_on_screen(page, first)
    problem = page.locator(".problem-text")
    expect(problem.locator(".katex").first).to_be_visible()
    expect(problem).to_contain_text("<b>This is not bold</b>")  # escaped, shown as text
    assert problem.locator("b").count() == 0
    expect(problem.locator("pre.asy")).to_contain_text("draw((0,0)--(1,1));")
    expect(page.locator(".answer-text")).to_contain_text("2")
    steps = page.locator("li.step")
    expect(steps.nth(0)).to_be_visible()
    expect(steps.nth(1)).to_be_hidden()
    expect(steps.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))

    page.keyboard.press("3")
    expect(steps.nth(0)).to_have_class(re.compile(r"\brated-great\b"))
    expect(steps.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("2")  # Okay, then undo it and rate Great instead
    page.keyboard.press("Backspace")
    expect(steps.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("=")
    page.screenshot(path=artifacts_dir / "label-rating.png", full_page=True)
    page.keyboard.press("1")  # Bad: ends the task as found_error

    expect(page.locator("#app")).to_have_attribute("data-finish", "found_error")
    expect(page.locator(".finish-title")).to_have_text("Found an error in step 3")
    expect(steps.nth(3)).to_be_hidden()

    # Keys typed into the correction box are text, not commands (1, 3, Backspace, Enter).
    page.keyboard.press("c")
    box = page.locator("#correction")
    expect(box).to_be_focused()
    box.press_sequentially("So the sum is 22")
    page.keyboard.press("Backspace")
    page.keyboard.press("Shift+Enter")
    expect(page.locator("#app")).to_have_attribute("data-finish", "found_error")
    expect(box).to_have_value("So the sum is 2\n")
    page.screenshot(path=artifacts_dir / "label-found-error.png")
    page.keyboard.press("Escape")  # leave the box; Enter now submits
    page.keyboard.press("Enter")

    # --- the label lands in the database -----------------------------------------------------
    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label 1")
    label = Label.objects.get(task=first, annotator=user)
    assert label.ratings == [1, 1, -1]
    assert label.finish_reason == "found_error"
    assert label.steps[2]["human_completion"]["text"] == "So the sum is 2"
    assert label.steps[0]["completions"][0]["text"].startswith("We add the fractions")
    assert label.total_time_ms > 0
    assert label.idempotency_key

    # --- the next (prefetched) task is on screen; reloading mid-task keeps the work ----------
    task_on_screen(page, second)
    expect(page.locator("#me-stats")).to_have_attribute("data-total", "1")
    page.keyboard.press("2")
    page.keyboard.press("f")  # flag step 2 while it is current
    expect(steps.nth(1)).to_have_class(re.compile(r"\bflagged\b"))
    page.reload()
    task_on_screen(page, second)
    expect(steps.nth(0)).to_have_class(re.compile(r"\brated-okay\b"))
    expect(steps.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    expect(steps.nth(1)).to_have_class(re.compile(r"\bflagged\b"))
    expect(page.locator(".notice")).to_contain_text("Restored your unfinished work")
    page.keyboard.press("3")
    page.keyboard.press("+")  # the last step without a Bad: solution
    expect(page.locator("#app")).to_have_attribute("data-finish", "solution")
    page.get_by_role("button", name="Submit").click()

    wait_until(lambda: Label.objects.filter(task=second, annotator=user).exists(), 15, "label 2")
    label = Label.objects.get(task=second, annotator=user)
    assert label.ratings == [0, 1, 1]
    assert label.finish_reason == "solution"
    assert [s["completions"][0]["flagged"] for s in label.steps] == [False, True, False]
    assert label.steps[2]["human_completion"] is None

    # --- nothing left: the empty state, and no lease left behind -----------------------------
    expect(page.get_by_text("The queue is empty — check back later")).to_be_visible()
    expect(page.locator("#me-stats")).to_have_attribute("data-total", "2")
    assert not Lease.objects.filter(annotator=user).exists()
    page.screenshot(path=artifacts_dir / "label-empty.png", full_page=True)


def test_give_up_asks_for_a_reason_and_records_it(
    page: Page, two_tasks: tuple[Task, Task], wait_until: Callable[..., None]
) -> None:
    first, _ = two_tasks
    user = annotator("quitter")
    login(page, "quitter")
    task_on_screen(page, first)
    page.keyboard.press("3")
    page.keyboard.press("g")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Give up").click()  # no reason yet: refused
    expect(dialog.get_by_text("Please give a reason.")).to_be_visible()
    dialog.get_by_label("Reason (required)").fill("I cannot follow the second step")
    dialog.get_by_role("button", name="Give up").click()
    expect(dialog).to_be_hidden()
    expect(page.locator(".finish-detail")).to_have_text("Reason: I cannot follow the second step")
    page.keyboard.press("Enter")

    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label")
    label = Label.objects.get(task=first, annotator=user)
    assert (label.finish_reason, label.ratings) == ("give_up", [1])
    assert label.finish_note == "I cannot follow the second step"


def test_a_failed_submit_is_retried_with_the_same_key_and_survives_a_reload(
    page: Page,
    two_tasks: tuple[Task, Task],
    artifacts_dir: Path,
    wait_until: Callable[..., None],
) -> None:
    first, second = two_tasks
    user = annotator("flaky")
    login(page, "flaky")
    task_on_screen(page, first)

    # The network drops every submit: the label waits in the outbox and the page says so.
    page.route("**/api/tasks/*/submit/", lambda route: route.abort("connectionfailed"))
    for key in ("3", "3", "3", "1"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    task_on_screen(page, second)  # the annotator moves on at once
    expect(page.locator("#save-status")).to_contain_text("retrying")
    page.screenshot(path=artifacts_dir / "label-retrying.png", full_page=True)
    assert not Label.objects.filter(task=first).exists()

    # A reload while the label is still unsent: it comes back from localStorage and is sent.
    page.unroute("**/api/tasks/*/submit/")
    page.reload()
    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label")
    label = Label.objects.get(task=first, annotator=user)
    assert label.ratings == [1, 1, 1, -1]
    assert label.finish_reason == "found_error"
    expect(page.locator("#save-status")).to_have_text("All work saved")
    task_on_screen(page, second)


def test_a_user_outside_the_annotators_group_is_told_so(page: Page) -> None:
    UserFactory(username="visitor")
    login(page, "visitor")
    expect(page.get_by_role("heading", name="You are not in the annotators group")).to_be_visible()


def test_mouse_users_have_buttons_for_everything_and_help_lists_the_keys(
    page: Page, two_tasks: tuple[Task, Task], wait_until: Callable[..., None]
) -> None:
    first, second = two_tasks
    user = annotator("mouse")
    login(page, "mouse")
    task_on_screen(page, first)

    page.keyboard.press("?")
    help_dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(help_dialog).to_be_visible()
    expect(help_dialog).to_contain_text("Flag the current step")
    page.keyboard.press("3")  # ignored while the help is open
    help_dialog.get_by_role("button", name="Close").click()
    expect(help_dialog).to_be_hidden()
    expect(page.locator("li.step.rated-great")).to_have_count(0)

    page.get_by_role("button", name="Okay", exact=True).click()
    page.get_by_role("button", name="Flag").click()
    page.get_by_role("button", name="Bad", exact=True).click()
    expect(page.locator("#app")).to_have_attribute("data-finish", "found_error")
    page.get_by_role("button", name="Undo").click()  # back to step 2, flag kept
    expect(page.locator("#app")).to_have_attribute("data-finish", "")
    page.get_by_role("button", name="Bad problem").click()
    dialog = page.get_by_role("dialog", name="Report a bad problem")
    dialog.get_by_label("Reason (required)").fill("The diagram is missing")
    dialog.get_by_role("button", name="Report").click()
    page.get_by_role("button", name="Submit").click()

    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label")
    label = Label.objects.get(task=first, annotator=user)
    assert (label.finish_reason, label.ratings) == ("bad_problem", [0])
    assert label.finish_note == "The diagram is missing"
    task_on_screen(page, second)


def _set_tab_visibility(page: Page, state: str) -> None:
    # Headless Chromium never hides the tab by itself; this is what the browser does on a switch.
    page.evaluate(
        """(state) => {
            const hidden = { value: state, configurable: true };
            Object.defineProperty(document, "visibilityState", hidden);
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def test_heartbeat_extends_the_lease_and_hidden_time_is_not_counted(
    page: Page, two_tasks: tuple[Task, Task], wait_until: Callable[..., None]
) -> None:
    first, _ = two_tasks
    user = annotator("clock")
    page.clock.install()  # the page's timers and clocks, so a minute passes in an instant
    login(page, "clock")
    task_on_screen(page, first)

    # Shorten the lease on the server, then let a minute pass: the heartbeat renews it.
    soon = timezone.now() + datetime.timedelta(seconds=90)
    Lease.objects.filter(task=first, annotator=user).update(expires_at=soon)
    page.clock.fast_forward("01:01")
    wait_until(
        lambda: (
            Lease.objects.get(task=first, annotator=user).expires_at
            > timezone.now() + datetime.timedelta(minutes=5)
        ),
        15,
        "the heartbeat to extend the lease",
    )
    expect(page.locator(".timer")).to_have_text(re.compile(r"^1:0\d$"))

    # Ten minutes in another tab do not count as time on task.
    _set_tab_visibility(page, "hidden")
    page.clock.fast_forward("10:00")
    _set_tab_visibility(page, "visible")
    page.clock.fast_forward("00:30")
    expect(page.locator(".timer")).to_have_text(re.compile(r"^1:3\d$"))
    for key in ("3", "3", "3", "3"):
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    wait_until(lambda: Label.objects.filter(task=first, annotator=user).exists(), 15, "label")
    total = Label.objects.get(task=first, annotator=user).total_time_ms
    assert 91_000 <= total < 120_000, total
