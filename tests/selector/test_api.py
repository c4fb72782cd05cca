"""The selector's staff API: train, evaluate (with a benchmark), promote (refused when clearly
worse unless forced), score and fill answer 202 with a job; bad input is a 400 naming the
field; versions are listed with their metrics and intervals; permissions are the admin's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from jobs.models import Job, JobKind
from selector.models import SelectorVersion, VersionStatus
from selector.services import job_execute
from tests.factories import annotator, staff_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(ml_staff: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(ml_staff)
    return client


def version(name: str, *, ready: bool = True, active: bool = False, **fields: Any) -> Any:
    return SelectorVersion.objects.create(
        name=name,
        base_model="/models/base",
        status=VersionStatus.READY if ready else VersionStatus.TRAINING,
        is_active=active,
        **fields,
    )


def started(response: Any, kind: str) -> Job:
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.kind == kind
    assert response.json()["url"] == f"http://testserver/api/jobs/{job.pk}/"
    return job


def test_train_starts_a_job_with_the_given_parameters(api: APIClient, ml_staff: Any) -> None:
    job = started(api.post("/api/selector/train/", {}, format="json"), JobKind.TRAIN)
    assert job.params == {} and job.created_by == ml_staff
    job = started(
        api.post("/api/selector/train/", {"epochs": 2, "name": "v9"}, format="json"),
        JobKind.TRAIN,
    )
    assert job.params == {"epochs": 2, "name": "v9"}


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("train", {"epochs": 0}, "epochs", "must be between 1 and"),
        ("train", {"epochs": "3"}, "epochs", "must be a whole number"),
        ("train", {"colour": "red"}, "colour", "is not a parameter"),
        ("train", {"learning_rate": None}, "learning_rate", "must not be empty"),
        ("fill", {"per_problem": 5000}, "per_problem", "between 0 and 1000"),
        ("fill", {"wrong_fraction": "most"}, "wrong_fraction", "must be a number"),
        ("fill", {"generation": 2**70}, "generation", "between 0 and"),
        ("evaluate", {"version": "nope"}, "version", "no selector version"),
        ("evaluate", {"version": 2**70}, "version", "no selector version"),
        ("evaluate", {"version": [1]}, "version", "id (a number) or its name"),
        ("evaluate", {"version": "ready", "threshold": 2}, "threshold", "less than or equal"),
        ("promote", {}, "version", "required"),
        ("promote", {"version": "v\x00"}, "version", "no selector version"),
        ("train", {"name": "v\x00"}, "name", "NUL character"),
        ("promote", {"version": "ready", "force": "perhaps"}, "force", "valid boolean"),
        ("promote", {"version": "training"}, "version", "not ready"),
        ("score", {"version": True}, "version", "id (a number) or its name"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_starts_nothing(
    api: APIClient, path: str, body: dict[str, Any], field: str, message: str
) -> None:
    version("ready")
    version("training", ready=False)
    response = api.post(f"/api/selector/{path}/", body, format="json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [field]
    assert message in response.json()[field][0]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"[1, 2]", "application/json", 400),
        (b'"train"', "application/json", 400),
        (b"{", "application/json", 400),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400),
        (b"epochs=3", "application/x-www-form-urlencoded", 415),
        (b"\xff\xfe", "application/json", 400),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(
    api: APIClient, body: bytes, content_type: str, status: int
) -> None:
    for path in ("train", "fill", "promote", "score", "evaluate"):
        response = api.post(f"/api/selector/{path}/", body, content_type=content_type)
        assert response.status_code == status, (path, response.content)
        assert "detail" in response.json()
    assert not Job.objects.exists()


def test_fill_and_score_use_the_active_version(api: APIClient) -> None:
    assert api.post("/api/selector/score/", {}, format="json").json() == {
        "version": ["no active selector version to score with: train or promote one"]
    }
    active = version("active", active=True)
    job = started(api.post("/api/selector/score/", {}, format="json"), JobKind.SCORE)
    assert job.version == active
    other = version("other")
    job = started(api.post("/api/selector/score/", {"version": "other"}, format="json"), "score")
    assert job.version == other
    job = started(api.post("/api/selector/fill/", {"per_problem": 3}, format="json"), "fill")
    assert job.params == {"per_problem": 3}


def test_evaluate_takes_a_version_by_id_or_name_or_the_newest_ready(
    api: APIClient, eval_set_ready: Any
) -> None:
    assert api.post("/api/selector/evaluate/", {}, format="json").json() == {
        "version": ["no version is ready yet: train one first"]
    }
    old = version("old")
    new = version("new")
    version("still-training", ready=False)
    assert started(api.post("/api/selector/evaluate/", {}), JobKind.EVALUATE).version == new
    by_id = api.post("/api/selector/evaluate/", {"version": old.pk}, format="json")
    assert started(by_id, JobKind.EVALUATE).version == old
    by_name = api.post("/api/selector/evaluate/", {"version": "old"}, format="json")
    assert started(by_name, JobKind.EVALUATE).version == old
    as_text = api.post("/api/selector/evaluate/", {"version": str(old.pk)}, format="json")
    assert started(as_text, JobKind.EVALUATE).version == old


def processbench(*records: dict[str, Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_evaluate_with_a_benchmark_upload_starts_a_benchmark_job(
    api: APIClient, settings: Any, tmp_path: Path
) -> None:
    settings.VAR_DIR = tmp_path
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    ready = version("ready")
    good = processbench({"id": "a", "problem": "1+1?", "steps": ["2", "# Answer 2"], "label": -1})
    form = {
        "version": "ready",
        "threshold": "0.3",
        "benchmark": SimpleUploadedFile("pb.jsonl", good),
    }
    job = started(api.post("/api/selector/evaluate/", form, format="multipart"), "benchmark")
    assert job.version == ready and job.params["threshold"] == 0.3
    assert Path(job.params["path"]).read_bytes() == good
    # Kept under its own name for the job; no partial spool file is left.
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [Path(job.params["path"]).name]

    # A bad file is the job's to find (never read in the request): its error names the
    # file as sent, line and field, and the file is gone.
    bad = processbench({"id": "a", "problem": "1+1?", "steps": [], "label": 0})
    form["benchmark"] = SimpleUploadedFile("bad.jsonl", bad)
    job = started(api.post("/api/selector/evaluate/", form, format="multipart"), "benchmark")
    job = job_execute(job_id=job.pk)
    assert job.status == "failed" and "bad.jsonl:1: steps: must be a non-empty list" in job.error
    assert not Path(job.params["path"]).exists()
    followed = api.get(f"/api/jobs/{job.pk}/").json()
    assert "bad.jsonl:1: steps:" in followed["errors"][0]["message"]


def test_evaluate_benchmark_over_the_upload_limit_is_413(
    api: APIClient, settings: Any, tmp_path: Path
) -> None:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "spool"
    settings.IMPORT_UPLOAD_MAX_BYTES = 10
    version("ready")
    form = {"benchmark": SimpleUploadedFile("pb.jsonl", b"x" * 100)}
    response = api.post("/api/selector/evaluate/", form, format="multipart")
    assert response.status_code == 413 and list(response.json()) == ["benchmark"]
    assert list((tmp_path / "spool").iterdir()) == []


WORSE = {
    "step": {"auroc": 0.55},
    "compared_with": {"version": "incumbent", "step": {"auroc": 0.8}},
    "eval_set": {"id": 3},
    "held_out": {"labels": 40},
    "comparison": {
        "against": "incumbent",
        "intervals": {
            "step.auroc": {"diff": -0.25, "low": -0.4, "high": -0.1},
            "first_error.f1": {"diff": 0.01, "low": -0.1, "high": 0.12},
        },
    },
}


def test_promote_refuses_a_clearly_worse_version_unless_forced(api: APIClient) -> None:
    version("incumbent", active=True)
    worse = version("worse", metrics=WORSE)
    response = api.post("/api/selector/promote/", {"version": "worse"}, format="json")
    assert response.status_code == 409
    assert "clearly worse than incumbent" in response.json()["force"][0]
    assert "Step AUROC" in response.json()["force"][0]
    assert not Job.objects.exists()
    forced = api.post("/api/selector/promote/", {"version": "worse", "force": True}, format="json")
    assert started(forced, JobKind.PROMOTE).version == worse


def test_promote_starts_for_an_unclear_or_unevaluated_version(api: APIClient) -> None:
    span = {"diff": -0.1, "low": -0.3, "high": 0.1}
    unclear = {**WORSE, "comparison": {"against": "x", "intervals": {"step.auroc": span}}}
    version("unclear", metrics=unclear)
    version("fresh")
    for name in ("unclear", "fresh"):
        response = api.post("/api/selector/promote/", {"version": name}, format="json")
        assert started(response, JobKind.PROMOTE).version.name == name


def test_versions_list_metrics_and_intervals_in_a_fixed_number_of_queries(
    api: APIClient, django_assert_num_queries: Any
) -> None:
    version("incumbent", active=True, metrics={"step": {"auroc": 0.8}})
    version("worse", metrics=WORSE)
    version("training", ready=False)
    with django_assert_num_queries(3):  # versions, and the permission check (user, groups)
        response = api.get("/api/selector/versions/")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()}
    assert [row["name"] for row in response.json()] == ["training", "worse", "incumbent"]
    worse = rows["worse"]
    assert worse["metrics"]["step.auroc"] == 0.55
    assert worse["compared_with"] == "incumbent"
    assert worse["compared_metrics"]["step.auroc"] == 0.8
    assert worse["intervals"]["step.auroc"] == {
        "diff": -0.25,
        "low": -0.4,
        "high": -0.1,
        "verdict": "worse",
    }
    assert worse["intervals"]["first_error.f1"]["verdict"] == "unclear"
    assert (worse["eval_set"], worse["eval_labels"], worse["evaluated"]) == (3, 40, True)
    assert rows["incumbent"]["is_active"] and rows["incumbent"]["intervals"] == {}
    assert rows["training"]["evaluated"] is False and rows["training"]["status"] == "training"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "train"),
        ("post", "evaluate"),
        ("post", "promote"),
        ("post", "score"),
        ("post", "fill"),
        ("get", "versions"),
    ],
)
def test_staff_without_the_admins_permissions_are_refused(method: str, path: str) -> None:
    for user in (staff_with("labeling.view_problem"), annotator()):
        client = APIClient()
        client.force_authenticate(user)
        assert getattr(client, method)(f"/api/selector/{path}/").status_code == 403
    assert getattr(APIClient(), method)(f"/api/selector/{path}/").status_code == 403
    # add_job alone starts jobs; view_selectorversion alone reads versions.
    allowed = staff_with("jobs.add_job" if method == "post" else "selector.view_selectorversion")
    client = APIClient()
    client.force_authenticate(allowed)
    assert getattr(client, method)(f"/api/selector/{path}/", {}, format="json").status_code != 403


def test_generate_takes_the_commands_fields_and_names_a_bad_one(api: APIClient) -> None:
    body = {"model": "/models/gen", "n": 2, "problems": "test/*", "seed": 3}
    job = started(api.post("/api/selector/generate/", body, format="json"), JobKind.GENERATE)
    assert job.params == body
    response = api.post(
        "/api/selector/generate/", {"model": "m", "temperature": 0, "n": 2}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"n": ["must be 1 at temperature 0 (greedy decoding gives one)"]}
    assert api.post("/api/selector/generate/", {}, format="json").json() == {
        "model": ["is required"]
    }


def test_evaluate_against_an_empty_or_small_eval_set_is_refused_with_how_to_get_labels(
    api: APIClient,
) -> None:
    from selector.models import EvalSet

    version("ready")
    response = api.post("/api/selector/evaluate/", {"version": "ready"}, format="json")
    assert response.status_code == 400
    message = response.json()["eval_set"][0]
    assert "0 on 0 problems" in message and "Fill queue" in message
    assert not EvalSet.objects.exists()  # refusing freezes nothing (no empty first set)
    EvalSet.objects.create(label_ids=[1, 2], problems=1, fraction=0.1, seed=0)
    response = api.post("/api/selector/evaluate/", {"version": "ready"}, format="json")
    assert response.status_code == 400
    assert response.json()["eval_set"][0].startswith("Evaluation set")
    assert "too small: 2 labels on 1 problems" in response.json()["eval_set"][0]
    assert not Job.objects.exists()


def test_promote_409_carries_the_verdict_and_each_metric(api: APIClient) -> None:
    version("incumbent", active=True)
    version("worse", metrics=WORSE)
    body = api.post("/api/selector/promote/", {"version": "worse"}, format="json").json()
    assert body["verdict"] == "worse" and body["active"] == "incumbent"
    auroc = next(m for m in body["metrics"] if m["metric"] == "step.auroc")
    assert (auroc["challenger"], auroc["active"], auroc["verdict"]) == (0.55, 0.8, "worse")
    assert (auroc["low"], auroc["high"]) == (-0.4, -0.1)
    assert "force=true" in body["force"][0]


def test_rolling_back_to_a_version_the_active_one_beat_is_refused(api: APIClient) -> None:
    """The issue's rollback: the old version was never compared with the new one, but the new
    one's evaluation was against it, so the check reads that interval turned round."""
    old = version("old", metrics={"step": {"auroc": 0.6}})
    better = {
        "step": {"auroc": 0.81},
        "compared_with": {"version": "old", "step": {"auroc": 0.6}},
        "eval_set": {"id": 1},
        "comparison": {
            "against": "old",
            "intervals": {"step.auroc": {"diff": 0.21, "low": 0.02, "high": 0.34}},
        },
    }
    version("new", metrics=better, active=True)
    response = api.post("/api/selector/promote/", {"version": "old"}, format="json")
    assert response.status_code == 409, response.content
    auroc = next(m for m in response.json()["metrics"] if m["metric"] == "step.auroc")
    assert (auroc["diff"], auroc["low"], auroc["high"]) == (-0.21, -0.34, -0.02)
    assert (auroc["challenger"], auroc["active"]) == (0.6, 0.81)
    forced = api.post("/api/selector/promote/", {"version": "old", "force": True}, format="json")
    assert started(forced, JobKind.PROMOTE).version == old
