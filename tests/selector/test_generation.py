"""Candidate generation: PRM800K-shaped steps from sampled text, validated parameters, and the
whole path on CPU with a tiny random decoder: sampled → imported → graded → scored → queued."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from jobs.models import Job, JobKind, JobStatus
from jobs.params import JobParamsInvalid
from labeling.models import Grade, Solution, Task
from selector.models import SolutionScore
from selector.services import job_start, queue_fill, selector_create_base
from selector.services.generation import generated_steps, problems_matching
from selector.services.job_params import DEFAULT_PROMPT_TEMPLATE, GenerationParams
from tests.factories import ProblemFactory


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        # One step per paragraph; the answer in the paragraph after the marker.
        (
            "We add 3 and 4.\n\nSo $3 + 4 = 7$.\n\n# Answer\n\n7",
            ["We add 3 and 4.", "So $3 + 4 = 7$.", "# Answer\n\n7"],
        ),
        # A paragraph keeps its inner line breaks; extra blank lines are one break.
        (
            "Let $x = 2$.\nThen $x^2 = 4$.\n\n\n\n# Answer\n\n4",
            ["Let $x = 2$.\nThen $x^2 = 4$.", "# Answer\n\n4"],
        ),
        # The answer on the marker's line, and the marker right under a step's last line.
        ("Add.\n# Answer: \\frac{14}{3}", ["Add.", "# Answer\n\n\\frac{14}{3}"]),
        # What follows the answer (a base model writing the next problem) is dropped.
        (
            "It is 5.\n\n# Answer\n\n5\nProblem: what is 2+2?\n\nSolution: ...",
            ["It is 5.", "# Answer\n\n5"],
        ),
        ("# Answer\n\n12", ["# Answer\n\n12"]),
        # A repeated marker is one marker; an answer holding the marker is none.
        ("Add.\n\n# Answer\n\n# Answer\n\n5", ["Add.", "# Answer\n\n5"]),
        ("Add.\n\n# Answer\n\n# Answer", None),
        ("Add.\n\n# Answer: 5 # Answer 6", None),
        # No answer: cut off by the token limit, or a marker with nothing after it.
        ("We add 3 and 4.\n\nSo the sum", None),
        ("We add.\n\n# Answer\n\n   \n", None),
        ("", None),
    ],
)
def test_generated_text_becomes_prm800k_steps(text: str, steps: list[str] | None) -> None:
    assert generated_steps(text) == steps


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({}, "model", "is required"),
        ({"model": "  "}, "model", "must not be blank"),
        ({"model": "m", "n": 0}, "n", "must be between 1 and 10000"),
        ({"model": "m", "n": "4"}, "n", "must be a whole number"),
        ({"model": "m", "n": True}, "n", "must be a whole number"),
        ({"model": "m", "temperature": -1}, "temperature", "must be between 0.0 and 10.0"),
        ({"model": "m", "temperature": 0, "n": 2}, "n", "must be 1 at temperature 0"),
        ({"model": "m", "max_new_tokens": 0}, "max_new_tokens", "must be between 1 and"),
        ({"model": "m", "prompt_template": "Solve it."}, "prompt_template", "{problem}"),
        ({"model": "m", "problems": 3}, "problems", "must be text"),
        ({"model": "m", "seed": -1}, "seed", "must be between 0 and"),
        ({"model": "m", "top_p": 0.9}, "top_p", "is not a parameter"),
    ],
)
def test_bad_parameters_are_refused_at_creation_naming_the_field(
    db: Any, params: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(JobParamsInvalid) as caught:
        job_start(kind=JobKind.GENERATE, params=params)
    assert list(caught.value.errors) == [field]
    assert message in caught.value.errors[field]
    assert not Job.objects.exists()


def test_the_worker_reads_the_stored_parameters_with_their_defaults(db: Any) -> None:
    job = job_start(kind=JobKind.GENERATE, params={"model": "m", "n": 2}, enqueue=False)
    assert job.params == {"model": "m", "n": 2}
    params = GenerationParams.parse(job.params)
    assert (params.n, params.temperature, params.seed) == (2, 1.0, None)
    assert params.prompt_template == DEFAULT_PROMPT_TEMPLATE


def test_problem_filter_is_a_shell_pattern_on_unique_id(db: Any) -> None:
    for unique_id in ["test/algebra/1.json", "test/algebra/22.json", "train/algebra/1.json",
                      "test/geometry/1.json", "test/algebraXjson"]:  # fmt: skip
        ProblemFactory(unique_id=unique_id)

    def matching(pattern: str) -> list[str]:
        return list(problems_matching(pattern).values_list("unique_id", flat=True))

    assert matching("test/algebra/*") == ["test/algebra/1.json", "test/algebra/22.json"]
    assert matching("*/algebra/?.json") == ["test/algebra/1.json", "train/algebra/1.json"]
    assert matching("test/algebra.json") == []  # "." is a dot, not any character
    assert len(matching("")) == 5


@pytest.fixture
def generation_world(selector_settings: Any, db: Any) -> dict[str, Any]:
    """Six algebra problems and one geometry problem, and an active untrained selector."""
    problems = [ProblemFactory(unique_id=f"test/algebra/{i}.json", answer=str(i)) for i in range(6)]
    other = ProblemFactory(unique_id="test/geometry/1.json")
    version = selector_create_base()
    return {"problems": problems, "other": other, "version": version}


def _generate(model: Path, *extra: str) -> Job:
    call_command(
        "generate_candidates",
        *("--model", str(model), "--n", "8", "--max-new-tokens", "48", "--seed", "0"),
        *("--problems", "test/algebra/*", "--sync", *extra),
        verbosity=0,
    )
    return Job.objects.filter(kind=JobKind.GENERATE).latest("created_at")


@pytest.mark.slow
def test_generated_candidates_are_imported_graded_scored_and_queued(
    generation_world: dict[str, Any], tiny_generator: Path
) -> None:
    job = _generate(tiny_generator)
    assert job.status == JobStatus.SUCCEEDED, job.error
    result = job.result
    assert (result["problems"], result["samples"], result["backend"]) == (6, 48, "transformers")
    assert result["finished"] + result["unfinished"] == 48
    generated = Solution.objects.filter(generator=str(tiny_generator))
    assert 0 < result["created"] == generated.count() <= result["finished"]
    assert result["generated_tokens"] > 0 and result["tokens_per_second"] > 0
    assert not generated.filter(problem=generation_world["other"]).exists()
    for solution in generated:
        *steps, last = solution.steps
        assert last.startswith("# Answer\n\n") and solution.answer == last[len("# Answer\n\n") :]
        assert all(step.strip() and "\n\n" not in step for step in steps)
    # Graded by the import path, scored by the active version, progress bar complete.
    assert not generated.filter(grade=Grade.UNGRADED).exists()
    assert result["graded"] == generated.count()
    version = generation_world["version"]
    assert result["scored_by"] == version.name
    scored = SolutionScore.objects.filter(version=version, solution__in=generated)
    assert scored.count() == generated.count() == result["scored"]
    assert job.progress_done == job.progress_total == 48 + result["scored"]
    # The next fill picks them up like any other candidate.
    report = queue_fill(per_problem=2)
    assert report.created > 0
    assert Task.objects.filter(solution__in=generated).count() == report.created

    # The same seed samples the same texts again: all duplicates, nothing new.
    again = _generate(tiny_generator)
    assert again.result["finished"] == result["finished"]
    assert again.result["created"] == 0
    assert generated.count() == result["created"]


def test_generation_needs_a_model_the_worker_can_find(
    generation_world: dict[str, Any], tmp_path: Path
) -> None:
    with pytest.raises(CommandError, match=r"model: .*neither a local directory nor a hub id"):
        _generate(tmp_path / "missing")
    assert not Solution.objects.filter(generator__contains="missing").exists()


def test_generation_with_no_matching_problem_fails_naming_the_filter(
    generation_world: dict[str, Any], tiny_generator: Path
) -> None:
    with pytest.raises(CommandError, match="problems: no problem's unique_id matches"):
        call_command(
            "generate_candidates",
            *("--model", str(tiny_generator), "--n", "1", "--problems", "nope/*", "--sync"),
            verbosity=0,
        )


def test_the_command_refuses_bad_input_before_creating_a_job(db: Any) -> None:
    with pytest.raises(CommandError, match=r"^n: must be between 1 and"):
        call_command("generate_candidates", "--model", "m", "--n", "0", verbosity=0)
    assert not Job.objects.exists()


def test_admin_generate_button_starts_a_job_with_the_form_fields(
    staff_client: Any, django_capture_on_commit_callbacks: Any, db: Any
) -> None:
    page = staff_client.get(reverse("admin:selector_selectorversion_changelist"))
    assert 'name="prompt_template"' in page.content.decode()
    url = reverse("admin:selector_selectorversion_start", args=["generate"])
    form = {
        "model": "/models/m",
        "n": "16",
        "temperature": "0.7",
        "max_new_tokens": "512",
        "problems": "test/*",
        "prompt_template": "Q: {problem}\r\nA:\r\n",
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = staff_client.post(url, form)
    job = Job.objects.get()
    assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
    assert GenerationParams.parse(job.params) == GenerationParams(
        model="/models/m",
        n=16,
        temperature=0.7,
        max_new_tokens=512,
        problems="test/*",
        prompt_template="Q: {problem}\nA:\n",  # its trailing newline kept
    )
    assert len(callbacks) == 1
    response = staff_client.post(url, {**form, "n": "0"}, follow=True)
    refused = "Generate candidates was not started: "
    assert refused + "n must be between 1 and 10000" in response.content.decode()
    response = staff_client.post(url, {**form, "temperature": "hot"}, follow=True)
    assert refused + "temperature must be a number" in response.content.decode()
    assert Job.objects.count() == 1
