"""The ci preset's base: a digit tokenizer and a causal LM pretrained on correct solutions."""

import re

from selector.ml.pretrain import digit_tokenizer_write
from selector.ml.prm import STEP_TOKEN, encode_many, is_causal, prm_init
from selector.simulation.pool import (
    SYNTH_SMALL,
    synthetic_correct_solutions,
    synthetic_pool,
)
from tests.selector.ml.conftest import small_digit_lm


def test_the_digit_tokenizer_sees_every_digit_and_the_step_token(tmp_path):
    texts = synthetic_correct_solutions(problems=40, seed=0, params=SYNTH_SMALL)
    tokenizer = digit_tokenizer_write(tmp_path / "tok", [p + "\n" + "\n".join(s) for p, s in texts])
    assert tokenizer.tokenize("Now $24 - 1 = 23$.") == [
        "Now", "$", "2", "4", "-", "1", "=", "2", "3", "$", ".",
    ]  # fmt: skip
    # 47 and 48 share their first digit's token: a small model can compare them.
    assert tokenizer("47")["input_ids"][-2] == tokenizer("48")["input_ids"][-2]
    assert tokenizer.convert_tokens_to_ids(STEP_TOKEN) != tokenizer.unk_token_id


def test_pretraining_learns_correct_solutions_and_gives_a_causal_prm_base(tmp_path):
    texts, tokenizer, summary = small_digit_lm(tmp_path, epochs=3)
    assert summary["epoch_loss"][-1] < summary["epoch_loss"][0]
    prm_init(base_model=str(tmp_path / "lm"), output_dir=tmp_path / "prm")
    from selector.ml.prm import load_prm

    model, loaded = load_prm(tmp_path / "prm", device="cpu", dtype=None)
    assert is_causal(model)
    # The step token was in the vocabulary from the start: pretraining saw it.
    assert loaded.convert_tokens_to_ids(STEP_TOKEN) == tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    (enc,) = encode_many(loaded, items=[texts[0]], max_length=128)
    assert len(enc.windows[0].step_positions) == len(texts[0][1])


def _template(step: str) -> str:
    return re.sub(r"-?\d+", "N", step).replace("\\times", "OP").replace("+", "OP")


def test_error_steps_are_worded_like_correct_ones_in_the_small_pool():
    """No surface cue: with the numbers and the operator masked, every step that is an error
    reads like some correct step, and the pretraining text holds correct steps only."""
    pool = synthetic_pool(problems=60, candidates=16, seed=0, params=SYNTH_SMALL)
    right, wrong = set(), set()
    for p in pool:
        for c in p.candidates:
            for step, rating in zip(c.steps, c.ratings, strict=True):
                (wrong if rating == -1 else right).add(_template(step).replace("-", "OP"))
    assert wrong and wrong <= right
    assert all(
        c.error_type is None or c.first_error is not None for p in pool for c in p.candidates
    )
    assert max(int(n) for p in pool for n in re.findall(r"\d+", p.problem)) <= 9
