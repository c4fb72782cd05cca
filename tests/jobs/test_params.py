"""Typed job parameters: bounds checked when a job is created, every bad field named, the same
answer from every front door (the service, a form, a command), and the worker reading a stored
row back through the same class."""

import dataclasses
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from jobs.models import Job, JobKind, JobStatus
from jobs.params import (
    INT_MAX,
    JobParams,
    JobParamsInvalid,
    job_params_class,
    job_params_clean,
)
from jobs.registry import JOB_TASKS
from jobs.services import job_create
from selector.services.job_params import MAX_EPOCHS, FillParams, TrainParams


def errors_of(kind: str, data, **kwargs) -> dict[str, str]:
    with pytest.raises(JobParamsInvalid) as caught:
        job_params_clean(kind, data, **kwargs)
    return caught.value.errors


def test_every_kind_names_a_parameter_class_that_imports():
    for kind in JOB_TASKS:
        cls = job_params_class(kind)
        assert issubclass(cls, JobParams) and dataclasses.is_dataclass(cls), kind
    assert job_params_class(JobKind.TRAIN) is TrainParams
    assert job_params_class(JobKind.EVALUATE).parse({}).as_dict() == {}


@pytest.mark.parametrize(
    ("kind", "data", "field", "message"),
    [
        (JobKind.TRAIN, {"epochs": 1_000_000_000}, "epochs", f"between 1 and {MAX_EPOCHS}"),
        (JobKind.TRAIN, {"epochs": -3}, "epochs", "between 1 and"),
        (JobKind.TRAIN, {"epochs": 0}, "epochs", "between 1 and"),
        (JobKind.TRAIN, {"epochs": 2.5}, "epochs", "must be a whole number"),
        (JobKind.TRAIN, {"epochs": True}, "epochs", "must be a whole number"),
        (JobKind.TRAIN, {"learning_rate": 0}, "learning_rate", "between"),
        (JobKind.TRAIN, {"learning_rate": float("nan")}, "learning_rate", "must be a number"),
        (JobKind.TRAIN, {"name": "x" * 101}, "name", "at most 100 characters"),
        (JobKind.TRAIN, {"name": "v\x00"}, "name", "must not contain the NUL character"),
        (JobKind.TRAIN, {"base": "yes"}, "base", "must be true or false"),
        (JobKind.FILL, {"per_problem": 1001}, "per_problem", "between 0 and 1000"),
        (JobKind.FILL, {"wrong_fraction": 1.5}, "wrong_fraction", "between 0.0 and 1.0"),
        (JobKind.FILL, {"generation": -1}, "generation", "between 0 and"),
        (JobKind.FILL, {"generation": 2**63}, "generation", f"between 0 and {INT_MAX}"),
        (JobKind.SIMULATE, {"preset": "full"}, "preset", "one of test, ci"),
        (JobKind.BENCHMARK, {"threshold": 0.5}, "path", "is required"),
        (JobKind.EXPORT, {"since": "yesterday"}, "since", "is not a date"),
        (JobKind.EXPORT, {"format": "csv"}, "format", "one of prm800k, stepwise"),
        (JobKind.EVALUATE, {"epochs": 3}, "epochs", "not a parameter"),
    ],
)
def test_a_bad_value_is_refused_naming_its_field(kind, data, field, message):
    errors = errors_of(kind, data)
    assert list(errors) == [field]
    assert message in errors[field]


def test_every_bad_field_is_named_at_once_in_the_message():
    with pytest.raises(JobParamsInvalid) as caught:
        job_params_clean(JobKind.TRAIN, {"epochs": 0, "learning_rate": 2, "colour": "red"})
    assert set(caught.value.errors) == {"epochs", "learning_rate", "colour"}
    assert str(caught.value).startswith("colour: is not a parameter")
    assert "epochs: must be between 1 and" in str(caught.value)


def test_good_values_come_back_typed_and_only_those_given():
    assert job_params_clean(JobKind.TRAIN, {"epochs": 2, "name": "v2"}) == {
        "epochs": 2,
        "name": "v2",
    }
    assert job_params_clean(JobKind.FILL, {"per_problem": None, "wrong_fraction": 1}) == {
        "per_problem": None,
        "wrong_fraction": 1.0,
    }


def test_a_form_gives_strings_blanks_and_other_inputs():
    form = {"epochs": " 4 ", "name": "", "base": "on", "csrfmiddlewaretoken": "t", "start": "go"}
    assert job_params_clean(JobKind.TRAIN, form, text=True) == {"epochs": 4, "base": True}
    assert errors_of(JobKind.TRAIN, {"epochs": "many"}, text=True) == {
        "epochs": "must be a whole number, got 'many'"
    }


def test_parse_fills_the_defaults_the_worker_runs_with():
    params = TrainParams.parse({"epochs": 5})
    assert (params.epochs, params.learning_rate, params.exclude_unreliable) == (5, 5e-5, True)
    assert FillParams.parse({}).as_dict() == {
        "per_problem": None,
        "wrong_fraction": None,
        "generation": None,
        "rule": None,  # the worker reads SELECTOR_RULE
    }


@pytest.mark.django_db
def test_job_create_refuses_bad_parameters_and_writes_no_row():
    with pytest.raises(JobParamsInvalid, match="epochs"):
        job_create(kind=JobKind.TRAIN, params={"epochs": -1}, enqueue=False)
    assert not Job.objects.exists()
    job = job_create(kind=JobKind.TRAIN, params={"epochs": 7}, enqueue=False)
    assert job.params == {"epochs": 7}


@pytest.mark.django_db
def test_the_admin_form_shows_the_field_error_and_starts_nothing(staff_client):
    response = staff_client.post(
        reverse("admin:selector_selectorversion_start", args=["train"]),
        {"epochs": "1000000000"},
        follow=True,
    )
    expected = f"Train new selector was not started: epochs must be between 1 and {MAX_EPOCHS}"
    assert expected in response.content.decode()
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_the_command_line_gets_the_same_message():
    with pytest.raises(CommandError, match=f"epochs: must be between 1 and {MAX_EPOCHS}"):
        call_command("train_selector", "--epochs", "-2", stdout=StringIO())
    with pytest.raises(CommandError, match="per_problem: must be between 0 and 1000"):
        call_command("fill_queue", "--per-problem", "5000", stdout=StringIO())
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_stored_row_out_of_bounds_fails_with_the_message_instead_of_running():
    from selector.services.job_runs import job_execute

    # Written before the bounds existed (or by hand): the worker refuses it the same way.
    job = Job.objects.create(kind=JobKind.TRAIN, params={"epochs": 1_000_000_000})
    job = job_execute(job_id=job.pk)
    assert job.status == JobStatus.FAILED
    assert f"epochs: must be between 1 and {MAX_EPOCHS}" in job.error
