"""Importing an existing open PRM as a selector version, and hub ids for base models."""

import shutil

import pytest
from django.core.management import CommandError, call_command

from selector.models import SelectorVersion, SolutionScore, VersionStatus
from selector.services import SelectorError, candidates_score
from selector.services.versions import base_model_path
from tests.factories import ProblemFactory, SolutionFactory
from tests.selector.ml.conftest import (  # noqa: F401 (session fixtures, by name below)
    tiny_qwen_prm_model,
    tiny_shepherd_model,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("adapter", "fixture"),
    [("qwen-prm", "tiny_qwen_prm_model"), ("math-shepherd", "tiny_shepherd_model")],
)
def test_import_selector_registers_a_version_that_scores_the_pool(
    request, selector_settings, adapter, fixture, capsys
):
    model = request.getfixturevalue(fixture)
    problem = ProblemFactory()
    solutions = [
        SolutionFactory.create(problem=problem, steps=["1 + 1 = 2.", "# Answer\n\n2"]),
        SolutionFactory.create(problem=problem, steps=["1 + 1 = 3.", "So 3.", "# Answer\n\n3"]),
    ]
    call_command("import_selector", str(model), "--adapter", adapter, "--name", "imp", "--activate")
    assert "imported imp" in capsys.readouterr().out
    version = SelectorVersion.objects.get(name="imp")
    assert version.is_active and version.status == VersionStatus.READY
    assert version.base_model == str(model)
    assert version.training_summary["adapter"] == adapter
    assert candidates_score(version=version) == 2
    for s in solutions:
        score = SolutionScore.objects.get(solution=s, version=version)
        assert len(score.step_scores) == len(s.steps) and score.truncated_steps == 0
        assert 0.0 < score.score < 1.0


def test_a_model_of_the_wrong_layout_is_refused_and_leaves_nothing(request, selector_settings):
    shepherd = request.getfixturevalue("tiny_shepherd_model")
    with pytest.raises(CommandError, match="qwen2"):
        call_command("import_selector", str(shepherd), "--adapter", "qwen-prm", "--name", "bad")
    assert not SelectorVersion.objects.exists()
    assert not (selector_settings.SELECTOR_CHECKPOINT_DIR / "bad").exists()


def test_a_hub_id_resolves_from_the_hf_cache_offline_and_fails_clearly_when_absent(
    request, settings, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    shepherd = request.getfixturevalue("tiny_shepherd_model")
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    settings.SELECTOR_BASE_MODEL = "someorg/tiny-prm"
    with pytest.raises(SelectorError, match="not in this server's local model cache") as refused:
        base_model_path(None)
    # Says how to fetch it, and names none of the hub library's internal parameters.
    assert "hf download someorg/tiny-prm" in str(refused.value)
    assert "local_files_only" not in str(refused.value) and "=" not in str(refused.value)
    # What snapshot_download leaves in the cache after an online download.
    repo = cache / "models--someorg--tiny-prm"
    commit = "0" * 40
    shutil.copytree(shepherd, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    assert base_model_path(None) == str(repo / "snapshots" / commit)
    with pytest.raises(SelectorError, match="neither a local directory nor a hub id"):
        base_model_path("/no/such/dir")


def test_the_admin_form_starts_an_import_job_that_checks_the_path_on_the_worker(
    request, client, selector_settings, tmp_path
):
    """Issue 18: the form never looks at the path (it cannot tell an existing one from a
    missing one); the job does, with one message for every failure."""
    from django.urls import reverse

    from jobs.models import Job, JobKind, JobStatus
    from selector.services import job_execute, selector_permissions_grant
    from tests.factories import UserFactory

    model = request.getfixturevalue("tiny_qwen_prm_model")
    url = reverse("admin:selector_selectorversion_import")
    client.force_login(UserFactory(username="viewer", is_staff=True))
    assert client.get(url).status_code == 403  # staff without the selector rights
    staff = UserFactory(username="ml", is_staff=True)
    staff.groups.add(selector_permissions_grant())
    client.force_login(staff)
    assert "Import an existing PRM" in client.get(url).content.decode()

    not_a_model = tmp_path / "exists"
    not_a_model.mkdir()
    tries = {
        "missing": (str(tmp_path / "missing"), "qwen-prm"),
        "not a model": (str(not_a_model), "qwen-prm"),
        "wrong layout": (str(model), "math-shepherd"),
    }
    answers = {}
    for label, (path, adapter) in tries.items():
        response = client.post(url, {"model": path, "adapter": adapter, "name": "x"})
        job = Job.objects.get(kind=JobKind.IMPORT_PRM, params__model=path)
        # The same answer whether the path exists or not: a redirect to the job's page.
        assert response.status_code == 302, label
        assert response["Location"] == reverse("admin:jobs_job_change", args=[job.pk])
        job = job_execute(job_id=job.pk)
        assert job.status == JobStatus.FAILED, label
        answers[label] = job.error.replace(path, "PATH").replace(adapter, "ADAPTER")
    assert len(set(answers.values())) == 1, answers
    assert "PATH: cannot be imported with the ADAPTER adapter" in answers["missing"]
    assert not SelectorVersion.objects.exists()

    ok = client.post(url, {"model": str(model), "adapter": "qwen-prm", "name": "q"})
    job = job_execute(job_id=Job.objects.get(params__name="q").pk)
    version = SelectorVersion.objects.get(name="q")
    assert ok.status_code == 302 and job.status == JobStatus.SUCCEEDED
    assert job.version == version and job.result["version"] == "q"
    assert not version.is_active


def test_training_with_an_imported_prm_active_starts_from_the_base_model(
    request, selector_settings
):
    """An imported PRM cannot be fine-tuned here; the next version starts from the base model
    rather than failing because the imported one happens to be active."""
    from selector.services import selector_train
    from tests.factories import LabelFactory, TaskFactory

    selector_settings.SELECTOR_EVAL_FRACTION = 0.0  # every label may train
    model = request.getfixturevalue("tiny_shepherd_model")
    call_command("import_selector", str(model), "--adapter", "math-shepherd", "--activate")
    for p in range(3):
        solution = SolutionFactory(
            problem=ProblemFactory(), steps=[f"{p} + 1 = {p + 2}.", f"# Answer\n\n{p + 2}"]
        )
        LabelFactory(task=TaskFactory(solution=solution), ratings=[-1, None])
    version = selector_train(epochs=1)
    assert version.status == VersionStatus.READY
    assert version.training_summary["init_from"].startswith("base:")
