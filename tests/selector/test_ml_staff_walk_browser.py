"""Issue 19's walk, in headless Chromium on a real Celery worker: ML staff train a version,
try to evaluate it against an empty evaluation set (refused, with how to get labels), freeze
a set once labels exist and evaluate, promote a worse version (asked twice), run the `test`
simulation and read its page. Every page fits 1280 px, shows no raw JSON unless its toggle is
opened, and no error names an internal parameter."""

import re
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from jobs.models import Job, JobKind, JobStatus
from labeling.models import Grade
from selector.models import SelectorVersion
from selector.services import selector_create_base, selector_permissions_grant
from tests.factories import (
    LabelFactory,
    ProblemFactory,
    SolutionFactory,
    TaskFactory,
    UserFactory,
)
from tests.selector.test_pipeline import build_world, step_label

pytestmark = [
    pytest.mark.browser,
    pytest.mark.worker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

WIDTH = 1280
INTERNALS = ("local_files_only", "Traceback", "kwargs", "_id", "force=", "=True", "=False")


def readable(page: Any) -> str:
    """The page as a person reads it: no horizontal overflow at 1280 px, no raw JSON outside a
    closed toggle (innerText skips a closed <details>), no internal names in its messages."""
    page.wait_for_load_state("load")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= WIDTH, f"{page.url}: {width} px wide"
    text = page.inner_text("#content")
    assert not re.search(r'[{\[]\s*"\w+"\s*:', text), f"{page.url}: raw JSON on the page"
    errors = " ".join(page.locator(".errornote, .messagelist .error").all_inner_texts())
    for name in INTERNALS:
        assert name not in errors, f"{page.url}: {name!r} in {errors!r}"
    return text


def finish(job_id: int, wait_until: Any, timeout: float) -> Job:
    def done() -> bool:
        return Job.objects.get(pk=job_id).status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    wait_until(done, timeout=timeout, message=f"job {job_id} to finish")
    job = Job.objects.get(pk=job_id)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


def settled(page: Any) -> None:
    """The job page reloads itself once the job has finished (its own poll): wait for that
    rather than reloading over it."""
    page.wait_for_selector('#job-progress[data-finished="1"]', timeout=60_000)
    page.wait_for_load_state("load")


def job_id_from(page: Any) -> int:
    page.wait_for_url(re.compile(r"/admin/jobs/job/\d+/change/"))
    return int(re.search(r"/job/(\d+)/", page.url)[1])  # type: ignore[index]


def evaluation_labels(problems: list[Any]) -> None:
    """What annotators produce from the uniform evaluation draw: two labels per problem."""
    for problem in problems:
        for solution in problem.solutions.order_by("pk")[:2]:
            steps = list(solution.steps)
            right = solution.grade == Grade.CORRECT
            ratings = [1] * len(steps) if right else [1, -1]
            task = TaskFactory(solution=solution, generation=None, queued_score=None,
                               queued_by="uniform")  # fmt: skip
            LabelFactory(
                task=task,
                steps=step_label(steps[: len(ratings)], ratings),
                ratings=ratings,
                finish_reason="solution" if right else "found_error",
            )


@pytest.mark.timeout(900)
def test_ml_staff_walk_train_evaluate_promote_simulate(
    page, live_server, celery_worker_factory, selector_settings, tiny_base_model, tmp_path,
    wait_until,
):  # fmt: skip
    selector_settings.SIMULATION_DIR = tmp_path / "simulations"
    celery_worker_factory(
        queues="default,ml",
        name="walk",
        env={
            "SELECTOR_BASE_MODEL": str(tiny_base_model),
            "SELECTOR_CHECKPOINT_DIR": str(settings.SELECTOR_CHECKPOINT_DIR),
            "SELECTOR_DEVICE": "cpu",
            "SELECTOR_MAX_LENGTH": "128",
            "STEPWISE_SIMULATION_DIR": str(settings.SIMULATION_DIR),
        },
    )
    training = build_world(n_problems=12, per_problem=3)
    for problem in training:
        problem.eval_reserved = False
        problem.save(update_fields=["eval_reserved"])
    reserved = []
    for p in range(5):
        problem = ProblemFactory(unique_id=f"test/eval/{p}.json", answer=str(p), eval_reserved=True)
        reserved.append(problem)
        for i in range(3):
            answer = str(p) if i == 0 else str(p + i + 10)
            SolutionFactory.create(
                problem=problem,
                steps=[f"Try {i}: {p} it is.", f"# Answer\n\n{answer}"],
                answer=answer,
                grade=Grade.CORRECT if i == 0 else Grade.INCORRECT,
            )
    selector_create_base(name="base")  # the active version the pool was filled with
    staff = UserFactory(username="ml", is_staff=True)
    staff.groups.add(selector_permissions_grant())
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.set_default_timeout(30_000)

    page.goto("/admin/selector/selectorversion/")
    page.fill("#id_username", "ml")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    readable(page)

    # Train.
    page.click("button[name=start][value=train]")
    train = finish(job_id_from(page), wait_until, timeout=240)
    settled(page)
    text = readable(page)
    assert "Result" in text and "Training labels" in text and "Time taken" in text
    trained = SelectorVersion.objects.get(pk=train.result["version_id"])

    # Evaluate: no evaluation labels yet, so refused with how to get them; nothing frozen.
    page.goto(f"/admin/selector/selectorversion/{trained.pk}/change/")
    text = readable(page)
    assert trained.short_name in text
    page.click("button[name=start][value=evaluate]")
    page.wait_for_selector(".messagelist .error")
    message = page.inner_text(".messagelist .error")
    assert "Not enough evaluation labels yet" in message and "Fill queue" in message
    readable(page)
    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()

    # Annotators label the evaluation draw; ML staff freeze a new set and evaluate.
    evaluation_labels(reserved)
    page.goto("/admin/selector/evalset/")
    readable(page)
    page.click("#freeze-eval-set")
    page.wait_for_selector(".messagelist .success")
    assert "10 labels on 5 problems" in page.inner_text(".messagelist .success")
    readable(page)
    page.goto(f"/admin/selector/selectorversion/{trained.pk}/change/")
    page.click("button[name=start][value=evaluate]")
    finish(job_id_from(page), wait_until, timeout=240)
    settled(page)
    text = readable(page)
    assert "Measured on evaluation set" in text and "10 labels on 5 problems" in text
    page.wait_for_function(
        "() => [...document.querySelectorAll('.selector-plots img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    readable(page)

    # Promote a version its evaluation found clearly worse (the tiny model's real intervals
    # could go either way, so the stored comparison is made worse): asked twice.
    trained.refresh_from_db()
    metrics = trained.metrics
    metrics["comparison"]["intervals"]["step.auroc"] = {"diff": -0.21, "low": -0.34, "high": -0.02}
    SelectorVersion.objects.filter(pk=trained.pk).update(metrics=metrics)
    page.goto(f"/admin/selector/selectorversion/{trained.pk}/change/")
    page.click("#promote-start")
    page.wait_for_selector("#promotion-check")
    assert page.get_attribute("#promotion-check", "data-verdict") == "worse"
    assert "-0.210 [-0.340, -0.020]" in readable(page)
    page.click("#promote-confirm")
    page.wait_for_selector("#second-confirmation")
    readable(page)
    assert not Job.objects.filter(kind=JobKind.PROMOTE).exists()
    page.click("#promote-confirm-worse")
    promote = finish(job_id_from(page), wait_until, timeout=240)
    # The bar sums the scoring chunks of both rounds (decision 0016): full, never past it.
    assert promote.progress_total > 0 and promote.progress_done == promote.progress_total
    settled(page)
    readable(page)
    trained.refresh_from_db()
    assert trained.is_active

    # Simulate with the `test` preset and read its page.
    page.goto("/admin/selector/selectorversion/")
    page.select_option("select[name=preset]", "test")
    page.click("button[name=start][value=simulate]")
    simulate = finish(job_id_from(page), wait_until, timeout=600)
    settled(page)
    page.wait_for_selector("#simulation-summary table")
    text = readable(page)
    assert "Machinery check: not a measurement." in text
    # The ratio as a sentence, whichever way this tiny run came out.
    outcomes = r"80/20 (reached uniform's quality with 1/|needed |and uniform needed about)"
    assert re.search(f"{outcomes}|No ratio", text)
    assert "# Active-learning" not in text
    page.wait_for_function(
        "() => [...document.querySelectorAll('.selector-plots img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    readable(page)
    # The raw data is there, behind its toggle.
    assert '"preset"' not in page.inner_text("#content")
    page.click("#job-raw summary")
    assert '"preset": "test"' in page.inner_text("#job-raw")
    assert Path(settings.SIMULATION_DIR, str(simulate.pk), "summary.md").is_file()
