"""A step's score depends only on the problem and the steps up to it, for every model family:
scoring a prefix, the whole solution, or the solution with more steps appended gives the same
score for the same step, also when the solution spans several windows."""

from __future__ import annotations

import random

import pytest

from selector.ml.scoring import Scorer
from tests.selector.ml.conftest import FAMILIES

PROBLEM = "What is 17 + 25, and then the product of the result with 3?"


def _steps(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        out.append(rng.choice([f"{a} + {b} = {a + b}.", f"so we get {a} \\times {b}", "hence x."]))
    return [*out, "# Answer\n\n126"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(request.param))


@pytest.mark.parametrize("max_length", [None, 96], ids=["family-window", "many-windows"])
def test_a_steps_score_ignores_later_steps(family, max_length):
    scorer = Scorer.load(family, device="cpu", max_length=max_length)
    steps = _steps(24, seed=3)
    longer = [*steps, "This step is WRONG ??? 9", "# Answer\n\n0"]
    prefixes = [steps[:k] for k in (1, 2, 7, 13, len(steps))]
    results = scorer.score([(PROBLEM, s) for s in [longer, *prefixes]])
    whole = results[0]
    assert whole.truncated_steps == 0 and len(whole.step_scores) == len(longer)
    if max_length is not None:
        # The small window really does cut this solution into several pieces.
        from selector.ml.prm import encode

        enc = encode(
            scorer.tokenizer, problem=PROBLEM, steps=longer, max_length=96, layout=scorer.layout
        )
        assert len(enc.windows) >= 3
    for prefix, result in zip(prefixes, results[1:], strict=True):
        assert len(result.step_scores) == len(prefix)
        assert result.step_scores == pytest.approx(whole.step_scores[: len(prefix)], abs=1e-5)
    # The scores are not constant, or the invariance would say nothing.
    assert max(whole.step_scores) - min(whole.step_scores) > 1e-4


def test_the_default_encoder_attends_only_backwards(minilm_prm):
    from transformers import AutoConfig

    from selector.ml.prm import is_causal, load_prm

    assert AutoConfig.from_pretrained(minilm_prm).is_decoder
    model, _ = load_prm(minilm_prm, device="cpu", dtype=__import__("torch").float32)
    assert is_causal(model)
