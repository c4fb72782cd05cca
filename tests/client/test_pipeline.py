"""Issue 17's "done when": the README's pipeline script, which uses only the client, goes all
the way against a live server and a real Celery worker (default and ml queues), tiny model on
CPU: import problems and candidates, score and fill, label through the annotator API, train,
evaluate, promote, export. The README shows the script as it is in the repository."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from jobs.models import Job, JobKind, JobStatus
from labeling.models import Label, Problem, Solution, Task
from selector.models import SelectorVersion
from tests.conftest import ROOT

SCRIPT = ROOT / "client" / "examples" / "pipeline.py"


def pipeline_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pipeline_example", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_shows_the_script_as_it_is() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = re.search(r"<!-- client/examples/pipeline.py -->\n```python\n(.*?)```", readme, re.S)
    assert shown is not None, "the README's pipeline block is missing"
    assert shown.group(1) == SCRIPT.read_text(encoding="utf-8")


@pytest.fixture
def worker_settings(
    settings: Any, tiny_base_model: Path, tmp_path: Path, monkeypatch: Any
) -> dict[str, str]:
    """The server's and the worker's settings agree: a worker reads them from its environment."""
    env = {
        "SELECTOR_BASE_MODEL": str(tiny_base_model),
        "SELECTOR_CHECKPOINT_DIR": str(tmp_path / "selectors"),
        "SELECTOR_DEVICE": "cpu",
        "SELECTOR_MAX_LENGTH": "128",
        "STEPWISE_IMPORT_DIR": str(tmp_path / "imports"),
        # A quarter of the problems are the frozen evaluation set (queued uniformly).
        "SELECTOR_EVAL_FRACTION": "0.25",
    }
    for name, value in env.items():
        monkeypatch.setitem(os.environ, name, value)
    settings.SELECTOR_BASE_MODEL = env["SELECTOR_BASE_MODEL"]
    settings.SELECTOR_CHECKPOINT_DIR = Path(env["SELECTOR_CHECKPOINT_DIR"])
    settings.SELECTOR_DEVICE = "cpu"
    settings.SELECTOR_MAX_LENGTH = 128
    settings.IMPORT_UPLOAD_DIR = Path(env["STEPWISE_IMPORT_DIR"])
    settings.SELECTOR_EVAL_FRACTION = 0.25
    return env


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_pipeline_script_goes_all_the_way_on_a_real_worker(
    live_server: Any,
    worker_settings: dict[str, str],
    celery_worker_factory: Any,
    staff_token: str,
    annotator_token: str,
    tmp_path: Path,
) -> None:
    celery_worker_factory(queues="default,ml", name="pipeline")
    # The tiny test model learns nothing in two epochs at a real base's learning rate, and
    # a version that learned nothing can come out "clearly worse" than the base by chance.
    summary = pipeline_module().run(
        live_server.url,
        staff_token,
        annotator_token,
        tmp_path / "exports",
        problems=12,
        learning_rate=1e-3,
    )

    assert Problem.objects.count() == 12 and Solution.objects.count() == 72
    jobs = list(Job.objects.order_by("pk").values_list("kind", "status"))
    assert [kind for kind, _ in jobs] == [
        JobKind.IMPORT,
        JobKind.IMPORT,
        JobKind.TRAIN,  # the untrained base version that ranks the first batch
        JobKind.SCORE,
        JobKind.FILL,
        JobKind.TRAIN,
        JobKind.EVALUATE,
        JobKind.PROMOTE,
    ]
    assert {status for _, status in jobs} == {JobStatus.SUCCEEDED}
    # Every queued task was labeled through the annotator API, by the annotator.
    assert summary["labeled"] == Task.objects.count() == Label.objects.count() > 12
    assert set(Label.objects.values_list("annotator__username", flat=True)) == {"rater"}
    trained = SelectorVersion.objects.get(name=summary["version"])
    assert trained.is_active and trained.metrics["held_out"]["labels"] > 0
    assert trained.metrics["comparison"]["against"] != trained.name
    exports = summary["exports"]
    records = [json.loads(line) for line in exports["prm800k"].read_text().splitlines()]
    assert len(records) == Label.objects.count()
    assert {r["label"]["finish_reason"] for r in records} == {"solution", "found_error"}
    rows = exports["stepwise"].read_text().splitlines()
    assert rows and all(json.loads(row)["labels"] for row in rows)
