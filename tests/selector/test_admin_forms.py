"""The ML-staff job forms (issue 19 §7): inputs carry the bounds the jobs enforce, a bad value
is refused when submitted with the field named in words, and training on few labels warns."""

import io
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from jobs.models import Job, JobKind, JobStatus
from jobs.params import job_params_bounds
from selector.models import SelectorVersion, VersionStatus
from selector.services import job_execute
from selector.services.training import FEW_TRAIN_LABELS, selector_train, training_warnings
from tests.factories import LabelFactory, ProblemFactory, SolutionFactory, TaskFactory


class _Forms(HTMLParser):
    """Each form's action and its inputs' attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, list[dict[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((values.get("action", ""), []))
        elif tag == "input" and self.forms:
            self.forms[-1][1].append(values)


@pytest.fixture
def active(db) -> SelectorVersion:
    return SelectorVersion.objects.create(
        name="base", base_model="-", status=VersionStatus.READY, is_active=True
    )


def job_forms(staff_client) -> dict[str, list[dict[str, str]]]:
    page = staff_client.get(reverse("admin:selector_selectorversion_changelist"))
    assert page.status_code == 200
    parser = _Forms()
    parser.feed(page.content.decode())
    prefix = reverse("admin:selector_selectorversion_start", args=["KIND"]).replace("KIND/", "")
    return {
        action.removeprefix(prefix).strip("/"): inputs
        for action, inputs in parser.forms
        if action.startswith(prefix)
    }


def test_number_inputs_carry_the_bounds_the_job_enforces(staff_client, active):
    forms = job_forms(staff_client)
    checked = []
    for kind in (JobKind.TRAIN, JobKind.FILL, JobKind.GENERATE):
        bounds = job_params_bounds(kind)
        for field in forms[kind]:
            if field.get("type") != "number":
                continue
            name = field["name"]
            assert float(field["min"]) == bounds[name]["low"], (kind, name)
            assert float(field["max"]) == bounds[name]["high"], (kind, name)
            checked.append(f"{kind}.{name}")
    assert {"train.epochs", "fill.per_problem", "generate.max_new_tokens"} <= set(checked)


@pytest.mark.parametrize(
    "kind, data, words",
    [
        ("fill", {"per_problem": "100000"}, "per problem must be between 0 and 1000, got 100000"),
        ("train", {"epochs": "0"}, "epochs must be between 1 and 1000, got 0"),
    ],
)
def test_a_value_past_its_bound_is_refused_on_submit_naming_the_field(
    staff_client, active, kind, data, words
):
    response = staff_client.post(
        reverse("admin:selector_selectorversion_start", args=[kind]), data, follow=True
    )
    text = response.content.decode()
    assert f"{JobKind(kind).label} was not started: {words}." in text
    assert "per_problem" not in text.split("was not started")[1].split(".")[0]
    assert not Job.objects.exists()  # nothing queued to fail in the worker


def few_labels(n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        problem = ProblemFactory(unique_id=f"test/few/{i}.json", eval_reserved=False)
        steps = [f"Step one of {i}.", f"# Answer\n\n{i}"]
        task = TaskFactory(solution=SolutionFactory(problem=problem, steps=steps))
        LabelFactory(
            task=task,
            ratings=[1, 1],
            steps=[
                {
                    "completions": [{"text": text, "rating": 1, "flagged": False}],
                    "human_completion": None,
                    "chosen_completion": 0,
                }
                for text in steps
            ],
            finish_reason="solution",
        )


def test_the_train_form_warns_when_there_are_too_few_labels(staff_client, active):
    few_labels(3)
    text = staff_client.get(reverse("admin:selector_selectorversion_changelist")).content.decode()
    assert "Too few labels: 3 to train on" in text
    few_labels(FEW_TRAIN_LABELS, start=3)
    text = staff_client.get(reverse("admin:selector_selectorversion_changelist")).content.decode()
    assert "Too few labels" not in text


def test_training_warnings_threshold():
    assert training_warnings(FEW_TRAIN_LABELS) == []
    (warning,) = training_warnings(3)
    assert warning.startswith("Too few labels: 3 to train on")


def test_a_train_job_on_three_labels_says_so_in_its_result(db, selector_settings):
    few_labels(3)
    version = selector_train(epochs=1, name="tiny", threshold_fraction=0.0)  # all three fit
    assert version.training_summary["train_labels"] == 3
    (warning,) = version.training_summary["warnings"]
    assert "Too few labels: 3" in warning


def test_a_refused_benchmark_file_lists_each_problem_on_its_own_line_as_named(
    staff_client, active, settings, tmp_path
):
    """Issue 19 §5: not "Notjson.jsonl:1 … notjson.jsonl:2 …" run together on one line. The
    file is checked by its job (issue 18, M3); the job's page shows each problem on a line."""
    settings.VAR_DIR = tmp_path / "var"
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    upload = io.BytesIO(b'not json\n{"id": 1, "problem": "p", "steps": [], "label": -1}\n')
    upload.name = "notjson.jsonl"
    url = reverse("admin:selector_selectorversion_benchmark", args=[active.pk])
    staff_client.post(url, {"file": upload, "threshold": "0.5"})
    job = job_execute(job_id=Job.objects.get(kind=JobKind.BENCHMARK).pk)
    assert job.status == JobStatus.FAILED
    text = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "notjson.jsonl:1: json: " in text
    assert "<br>notjson.jsonl:2: steps: must be a non-empty list of strings" in text
    assert "Notjson" not in text
