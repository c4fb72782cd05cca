"""The CSP in a real browser: no violations on the label, admin and API docs pages, and KaTeX
keeps a hostile \\rule small."""

from typing import cast

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from jobs.models import Job, JobKind, JobStatus
from labeling.models import Task
from tests.browser.conftest import login
from tests.factories import ProblemFactory, SolutionFactory, TaskFactory, UserFactory, annotator

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Recorded inside the page as they happen; Chromium also reports each one on the console.
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective}: ${e.blockedURI || "inline"} on ${e.documentURI}`);
});
"""


@pytest.fixture
def violations(page: Page) -> list[str]:
    found: list[str] = []
    page.add_init_script(RECORD_VIOLATIONS)

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            found.append(message.text)

    page.on("console", on_console)
    return found


def page_violations(page: Page) -> list[str]:
    return cast(list[str], page.evaluate("window.__csp || []"))


def test_the_label_page_runs_without_violations_and_a_huge_rule_stays_small(
    page: Page, violations: list[str]
) -> None:
    solution = SolutionFactory(
        problem=ProblemFactory(problem=r"Draw $\rule{100000em}{100000em}$ please.", answer="1"),
        steps=[r"A wide kern $\kern{50000em}x$ and $\frac{1}{2}$.", "# Answer\n\n1"],
    )
    task = cast(Task, TaskFactory(solution=solution))
    annotator("ann")
    login(page, "ann")
    expect(page.locator(f'#app[data-state="task"][data-task-id="{task.pk}"]')).to_be_visible()
    problem = page.locator(".problem-text")
    expect(problem.locator(".katex").first).to_be_visible()
    expect(page.locator("li.step").first.locator(".katex").first).to_be_visible()

    # The rule is drawn, capped at KaTeX's maxSize (10em), and the page stays page-sized.
    rule = problem.locator(".rule").first
    box = rule.bounding_box()
    font_px = float(
        page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('.problem-text')).fontSize)"
        )
    )
    assert box is not None and 0 < box["height"] <= 10 * font_px * 1.5
    sizes = page.evaluate(
        "[document.documentElement.scrollHeight, document.documentElement.scrollWidth]"
    )
    assert sizes[0] < 3000 and sizes[1] < 3000, sizes

    assert page_violations(page) == [] and violations == []


def test_admin_pages_and_the_api_docs_run_without_violations(
    page: Page, violations: list[str]
) -> None:
    UserFactory(username="root", is_staff=True, is_superuser=True)
    job = Job.objects.create(kind=JobKind.EXPORT, status=JobStatus.RUNNING, progress_total=10)
    login(page, "root")
    for url, ready in [
        ("/admin/", "#stepwise-links"),
        ("/admin/dashboard/", "#annotators"),
        ("/admin/labeling/label/", "#changelist"),
        ("/admin/labeling/label/export/", "form"),
        (f"/admin/jobs/job/{job.pk}/change/", "#job-progress-bar"),
        ("/admin/selector/selectorversion/", "#changelist"),
        ("/api/docs/", ".swagger-ui .opblock"),
    ]:
        page.goto(url)
        expect(page.locator(ready).first).to_be_visible()
        assert page_violations(page) == [], url
    # Swagger UI really started (its script is a file now): it lists the API's operations.
    expect(page.locator(".swagger-ui .opblock-summary-path").first).to_be_visible()
    assert violations == []
