"""The fill's rule through every front door (issue 20): the admin's select (unavailable rules
labelled so and refused), the API (400 naming ``rule``), ``fill_queue --rule``, and the job's
result recording the rule it filled by."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from rest_framework.test import APIClient

from jobs.models import Job
from labeling.models import Task
from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import job_execute
from tests.factories import ProblemFactory, SolutionFactory


def active_version(*, heads: int, imported: bool = False) -> SelectorVersion:
    return SelectorVersion.objects.create(
        name="v7",
        base_model="-",
        status=VersionStatus.READY,
        is_active=True,
        ensemble_heads=heads,
        training_summary={"init": "import"} if imported else {},
    )


@pytest.fixture
def pool(db, settings):
    settings.SELECTOR_EVAL_FRACTION = 0.0
    problem = ProblemFactory()
    return [SolutionFactory(problem=problem) for _ in range(3)]


def scored(version, pool) -> None:
    for i, solution in enumerate(pool):
        SolutionScore.objects.create(
            solution=solution, version=version, score=0.1 * i, step_scores=[], uncertainty=1 - i
        )


@pytest.fixture
def api(ml_staff) -> APIClient:
    client = APIClient()
    client.force_authenticate(ml_staff)
    return client


def test_admin_fill_form_labels_the_unavailable_rules(staff_client, pool):
    active_version(heads=0, imported=True)
    page = staff_client.get(reverse("admin:selector_selectorversion_changelist")).content.decode()
    assert '<select name="rule">' in page
    assert "uncertainty — unavailable: the active version v7 has no ensemble (imported PRM)" in page
    assert "mixed — unavailable: the active version v7 has no ensemble (imported PRM)" in page
    assert '<td class="field-step_heads">—</td>' in page
    assert '<option value="80_20" selected' in page


def test_admin_fill_form_offers_every_rule_with_an_ensemble_and_preselects_the_setting(
    staff_client, pool, settings
):
    settings.SELECTOR_RULE = "mixed"
    active_version(heads=5)
    page = staff_client.get(reverse("admin:selector_selectorversion_changelist")).content.decode()
    assert "unavailable" not in page
    assert '<option value="mixed" selected' in page
    # The version list says how many step heads each version has.
    assert '<td class="field-step_heads">5</td>' in page


def test_admin_refuses_an_unavailable_rule_with_a_message(staff_client, pool):
    active_version(heads=1)
    response = staff_client.post(
        reverse("admin:selector_selectorversion_start", args=["fill"]),
        {"rule": "uncertainty"},
        follow=True,
    )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Fill queue was not started: rule uncertainty is unavailable" in text
    assert "single step head" in text
    assert not Job.objects.exists()


def test_admin_fill_records_the_rule_in_params_and_result(
    staff_client, pool, django_capture_on_commit_callbacks
):
    version = active_version(heads=5)
    scored(version, pool)
    with django_capture_on_commit_callbacks():
        staff_client.post(
            reverse("admin:selector_selectorversion_start", args=["fill"]),
            {"per_problem": "2", "rule": "uncertainty"},
        )
    job = Job.objects.get()
    assert job.params == {"per_problem": 2, "rule": "uncertainty"}
    job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.result["rule"] == "uncertainty" and job.result["created"] == 2
    page = staff_client.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "Selection rule" in page
    assert set(Task.objects.values_list("solution_id", "rule")) == {
        (pool[0].pk, "uncertainty"),
        (pool[1].pk, "uncertainty"),
    }


def test_api_unavailable_rule_is_a_400_naming_rule(api, pool):
    active_version(heads=0)
    response = api.post("/api/selector/fill/", {"rule": "mixed"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["rule"]
    assert "SELECTOR_ENSEMBLE_HEADS > 1" in response.json()["rule"][0]
    assert not Job.objects.exists()


def test_api_unknown_rule_is_a_400_naming_rule(api, pool):
    active_version(heads=5)
    response = api.post("/api/selector/fill/", {"rule": "uniform"}, format="json")
    assert response.status_code == 400
    assert "must be one of 80_20, uncertainty, mixed" in response.json()["rule"][0]


def test_api_refuses_when_the_setting_is_unavailable_and_no_rule_given(api, pool, settings):
    settings.SELECTOR_RULE = "uncertainty"
    active_version(heads=0)
    response = api.post("/api/selector/fill/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["rule"][0].startswith("uncertainty (SELECTOR_RULE) is unavailable")


def test_api_fill_with_a_rule_starts_a_job(api, pool):
    active_version(heads=5)
    response = api.post("/api/selector/fill/", {"rule": "mixed"}, format="json")
    assert response.status_code == 202
    assert Job.objects.get().params == {"rule": "mixed"}


def test_cli_rule_fills_by_it(pool):
    version = active_version(heads=5)
    scored(version, pool)
    call_command(
        "fill_queue",
        "--sync",
        "--per-problem",
        "1",
        "--rule",
        "uncertainty",
        verbosity=0,
        stdout=StringIO(),
    )
    assert list(Task.objects.values_list("solution_id", "rule")) == [(pool[0].pk, "uncertainty")]


def test_cli_unavailable_rule_is_a_command_error(pool):
    active_version(heads=0, imported=True)
    with pytest.raises(CommandError, match="imported PRM"):
        call_command("fill_queue", "--sync", "--rule", "mixed", verbosity=0, stdout=StringIO())
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("fill_queue", "--rule", "uniform", verbosity=0, stdout=StringIO())
    assert not Job.objects.exists()
