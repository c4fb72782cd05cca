"""Issue 18: a score job runs the model's chat template under a time limit. An imported
qwen-prm whose template loops (almost) forever used to hang the ml worker, out of a cancel's
reach; its job now fails with a message that says what to fix."""

from __future__ import annotations

import shutil
import time

import pytest

from jobs.models import JobStatus
from selector.ml.adapters import CHAT_TEMPLATE_SECONDS
from selector.services import job_execute, selector_import
from selector.services.jobs import scoring_start
from tests.factories import ProblemFactory, SolutionFactory
from tests.selector.ml.conftest import tiny_qwen_prm_model  # noqa: F401 (a session fixture)

# Ten billion turns: hours of rendering, and the sandbox's range limit (100 000) is no help.
LOOPING = (
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    "{% for message in messages %}{{ message.content }}{% endfor %}"
)


@pytest.mark.timeout(120)
def test_a_score_job_stops_a_chat_template_that_loops(
    db,
    selector_settings,
    tiny_qwen_prm_model,  # noqa: F811 (the fixture imported above)
    tmp_path,
) -> None:
    from transformers import AutoTokenizer

    model = tmp_path / "looping-prm"
    shutil.copytree(tiny_qwen_prm_model, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = LOOPING
    tokenizer.save_pretrained(model)
    version = selector_import(model=str(model), adapter="qwen-prm", name="loops")
    SolutionFactory.create(problem=ProblemFactory(), steps=["1 + 1 = 2.", "# Answer\n\n2"])

    job = scoring_start(version=version)
    started = time.monotonic()
    job = job_execute(job_id=job.pk)
    took = time.monotonic() - started
    assert job.status == JobStatus.FAILED
    assert job.error.startswith("ChatTemplateTimeout: the model's chat template ran longer than")
    assert "Fix or remove the chat template" in job.error
    assert took < CHAT_TEMPLATE_SECONDS + 30
