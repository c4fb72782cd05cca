"""encode(): where the step-end tokens and labels land, windows, and prm_init()."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selector.ml.prm import (
    IGNORE_INDEX,
    STEP_TOKEN,
    encode,
    encode_many,
    prm_init,
    step_token_id,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_prm: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_prm)


@pytest.fixture(scope="module")
def bert_tokenizer(minilm_prm: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_prm)


def _assert_lined_up(tok, enc, ratings):
    sid = step_token_id(tok)
    assert [i for i, t in enumerate(enc.input_ids) if t == sid] == enc.step_positions
    assert len(enc.labels) == len(enc.input_ids)
    assert enc.first_step == 0
    expected = {-1: 0, 0: 1, 1: 2, None: IGNORE_INDEX}
    for pos, rating in zip(enc.step_positions, ratings, strict=False):
        assert enc.labels[pos] == expected[rating]
    others = set(range(len(enc.input_ids))) - set(enc.step_positions)
    assert all(enc.labels[i] == IGNORE_INDEX for i in others)


@pytest.mark.parametrize("fixture", ["tokenizer", "bert_tokenizer"])
def test_labels_sit_exactly_on_step_end_tokens_for_short_and_long_steps(request, fixture):
    tok = request.getfixturevalue(fixture)
    steps = ["x", "1 + 2 = 3, so we get 3 and then 5 \\times 7 = 35.", "y", "# Answer\n\n35"]
    ratings = [1, 0, -1, None]
    encoded = encode(
        tok, problem="What is 5 + 30?", steps=steps, step_labels=ratings, max_length=256
    )
    assert encoded.truncated_steps == 0
    (enc,) = encoded.windows
    assert len(enc.step_positions) == 4
    _assert_lined_up(tok, enc, ratings)
    # The one-character step really is a single token right before its step-end token.
    single = tok("x", add_special_tokens=False)["input_ids"]
    assert len(single) == 1
    assert enc.input_ids[enc.step_positions[0] - 1] == single[0]
    # Each step's own tokens sit between the previous step-end and its own.
    long_ids = tok(steps[1], add_special_tokens=False)["input_ids"]
    assert len(long_ids) > 5
    assert enc.input_ids[enc.step_positions[0] + 1 : enc.step_positions[1]] == long_ids


def test_bert_layout_keeps_cls_and_sep_around_the_text(bert_tokenizer):
    (enc,) = encode(bert_tokenizer, problem="p", steps=["a", "b"], max_length=64).windows
    assert enc.input_ids[0] == bert_tokenizer.cls_token_id
    assert enc.input_ids[-1] == bert_tokenizer.sep_token_id
    assert enc.step_positions[-1] == len(enc.input_ids) - 2


def test_labels_default_to_ignore_without_ratings(tokenizer):
    (enc,) = encode(tokenizer, problem="p", steps=["a", "b"], max_length=64).windows
    assert set(enc.labels) == {IGNORE_INDEX}
    assert len(enc.step_positions) == 2


def test_a_long_solution_is_cut_into_windows_that_score_every_step_once(tokenizer):
    steps = [f"step {i}: {i} + {i} = {2 * i}." for i in range(40)]
    ratings = [1] * 39 + [-1]
    full = encode(
        tokenizer, problem="What is it?", steps=steps, step_labels=ratings, max_length=4096
    )
    assert len(full.windows) == 1 and full.truncated_steps == 0
    max_length = len(full.windows[0].input_ids) // 3
    enc = encode(
        tokenizer, problem="What is it?", steps=steps, step_labels=ratings, max_length=max_length
    )
    assert enc.truncated_steps == 0 and len(enc.windows) >= 3
    sid = step_token_id(tokenizer)
    scored: list[int] = []
    for w in enc.windows:
        assert len(w.input_ids) <= max_length
        scored.extend(range(w.first_step, w.first_step + len(w.step_positions)))
        # Every window starts with the problem, and the steps it scores are its last ones.
        assert w.input_ids[: w.step_positions[0]][:4] == full.windows[0].input_ids[:4]
        assert w.step_positions[-1] == len(w.input_ids) - 1
        for j, pos in zip(range(w.first_step, 40), w.step_positions, strict=False):
            assert w.input_ids[pos] == sid
            assert w.labels[pos] == (0 if ratings[j] == -1 else 2)
        # Context steps carried from before are not labeled again.
        assert sum(lab != IGNORE_INDEX for lab in w.labels) == len(w.step_positions)
    assert scored == list(range(40))
    # Later windows carry preceding steps as context.
    assert enc.windows[1].input_ids.count(sid) > len(enc.windows[1].step_positions)


def test_windows_of_a_prefix_are_the_leading_windows_of_the_whole(tokenizer):
    steps = [f"{i} \\times {i + 3} = {i * (i + 3)}" for i in range(30)]
    whole = encode(tokenizer, problem="Find it.", steps=steps, max_length=80)
    for k in (1, 9, 17, 30):
        part = encode(tokenizer, problem="Find it.", steps=steps[:k], max_length=80)
        for a, b in zip(part.windows, whole.windows, strict=False):
            assert a.first_step == b.first_step
            assert a.input_ids == b.input_ids[: len(a.input_ids)]
            assert a.step_positions == b.step_positions[: len(a.step_positions)]


def test_a_step_longer_than_the_window_and_the_rest_are_truncated_and_counted(tokenizer):
    steps = ["1 + 1 = 2.", " ".join(["3 + 4 = 7"] * 60), "5 + 5 = 10."]
    enc = encode(tokenizer, problem="p", steps=steps, max_length=64)
    assert enc.truncated_steps == 2
    assert [len(w.step_positions) for w in enc.windows] == [1]


def test_a_long_problem_is_cut_to_half_the_window_whatever_the_steps(tokenizer):
    problem = " ".join(f"{i} + {i}" for i in range(300))
    few = encode(tokenizer, problem=problem, steps=["a", "b"], max_length=128)
    many = encode(
        tokenizer, problem=problem, steps=[f"{i} + 1" for i in range(200)], max_length=128
    )
    # The problem keeps half of the room (no specials in this tokenizer), every window.
    assert {w.input_ids[:64] == few.windows[0].input_ids[:64] for w in many.windows} == {True}
    assert few.windows[0].step_positions[0] == 64 + 1
    assert many.truncated_steps == 0


def test_literal_step_token_in_text_does_not_add_a_scoring_position(tokenizer):
    (enc,) = encode(
        tokenizer, problem=f"a {STEP_TOKEN} b", steps=[f"x {STEP_TOKEN} y"], max_length=64
    ).windows
    assert enc.step_positions == [len(enc.input_ids) - 1]
    assert enc.input_ids.count(step_token_id(tokenizer)) == 1


def test_encode_many_equals_encode_one_by_one(tokenizer):
    items = [("p1", ["a", "b"]), ("p1", ["a", "c", "d"]), ("p2", ["zz"])]
    labels = [[1, -1], None, [0]]
    batch = encode_many(tokenizer, items=items, step_labels=labels, max_length=64)
    single = [
        encode(tokenizer, problem=p, steps=s, step_labels=lab, max_length=64)
        for (p, s), lab in zip(items, labels, strict=True)
    ]
    assert batch == single


@pytest.mark.parametrize(
    ("steps", "labels", "message"),
    [
        (["a", "b"], [1], "solution 0: 1 ratings for 2 steps"),
        (["a", "b"], [1, 2], "solution 0 step 1: rating must be"),
        (["a", "b"], [1, True], "solution 0 step 1: rating must be"),
        (["a", 3], None, "solution 0 step 1: expected a string"),
        ("a single string", None, "steps must be a list"),
    ],
)
def test_bad_input_names_the_step(tokenizer, steps, labels, message):
    with pytest.raises((ValueError, TypeError), match=message):
        encode(tokenizer, problem="p", steps=steps, step_labels=labels, max_length=64)


def test_base_tokenizer_without_step_token_is_refused(tiny_qwen2_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen2_base)
    with pytest.raises(ValueError, match="prm_init"):
        encode(tok, problem="p", steps=["a"], max_length=64)


@pytest.mark.parametrize("base", ["tiny_qwen2_base", "tiny_llama_base"])
def test_prm_init_makes_a_three_label_decoder_prm_with_step_and_pad_tokens(request, base, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    out = tmp_path / "prm"
    prm_init(base_model=str(request.getfixturevalue(base)), output_dir=out)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForTokenClassification.from_pretrained(out)
    assert STEP_TOKEN in tok.all_special_tokens
    assert tok.pad_token is not None
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    # Nothing but the checkpoint is left behind (no temp dirs).
    assert [p.name for p in tmp_path.iterdir()] == ["prm"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    assert len(json.loads((out / "config.json").read_text())["id2label"]) == 3


def test_prm_init_refuses_a_missing_base_model_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local model directory"):
        prm_init(base_model=str(tmp_path / "nope"), output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prm_init_writes_beside_other_files_and_over_an_earlier_checkpoint(
    tiny_qwen2_base, tiny_llama_base, tmp_path
):
    from transformers import AutoConfig

    out = tmp_path / "out"
    (out / "_init").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    prm_init(base_model=str(tiny_qwen2_base), output_dir=out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "_init").is_dir()
    assert AutoConfig.from_pretrained(out).model_type == "qwen2"
    prm_init(base_model=str(tiny_llama_base), output_dir=out)  # a retried job: overwrite
    assert AutoConfig.from_pretrained(out).model_type == "llama"
    assert not [p for p in out.iterdir() if p.name.startswith(".partial-")]
    with pytest.raises(FileExistsError, match="not a directory"):
        prm_init(base_model=str(tiny_qwen2_base), output_dir=out / "notes.txt")


def test_prm_init_is_repeatable_and_leaves_the_global_seed_alone(tiny_bert_base, tmp_path):
    import torch
    from safetensors.torch import load_file

    torch.manual_seed(123)
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        prm_init(base_model=str(tiny_bert_base), output_dir=tmp_path / name, seed=seed)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after, torch.rand(3))  # its own RNG: the caller's sequence goes on
    a, b, c = (load_file(tmp_path / n / "model.safetensors") for n in ("a", "b", "c"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # the seed decides the new weights
