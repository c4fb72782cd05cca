"""Imported PRMs scored through their own layouts (tiny random models of the same shapes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selector.ml.adapters import (
    ADAPTER_FILE,
    MATH_SHEPHERD,
    QWEN_PRM,
    adapter_check,
    adapter_write,
)
from selector.ml.scoring import Scorer

ITEMS = [
    ("What is 2 + 3?", ["2 + 3 = 5.", "# Answer\n\n5"]),
    ("What is 7 + 8?", ["7 + 8 = 16.", "This step is WRONG ??? 7", "# Answer\n\n16"]),
]


def _reference_qwen(model_dir: Path, problem: str, steps: list[str]) -> list[float]:
    """Qwen2.5-Math-PRM as its model card scores: the chat-templated text with steps joined by
    <extra_0>, one forward pass of the whole thing, softmax of the head at each separator."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, Qwen2Model

    tok = AutoTokenizer.from_pretrained(model_dir)
    messages = [
        {
            "role": "system",
            "content": "Please reason step by step, and put your final answer within \\boxed{}.",
        },
        {"role": "user", "content": problem},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    text += "<extra_0>".join(steps) + "<extra_0>"
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    base = Qwen2Model.from_pretrained(model_dir).eval()
    weights = load_file(str(model_dir / "model.safetensors"))
    head = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    head.load_state_dict(
        {k[len("score.") :]: v for k, v in weights.items() if k.startswith("score.")}
    )
    with torch.no_grad():
        probs = head(base(input_ids=ids).last_hidden_state[0]).softmax(-1)[:, 1]
    sep = tok.convert_tokens_to_ids("<extra_0>")
    return probs[ids[0] == sep].tolist()


def _reference_shepherd(model_dir: Path, problem: str, steps: list[str]) -> list[float]:
    """Math-Shepherd as its authors score: "problem Step 1: … ки\\nStep 2: … ки", logits of
    "+" and "-" at each tag, P(+)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    text = problem + " " + "\n".join(f"Step {i + 1}: {s} ки" for i, s in enumerate(steps))
    ids = torch.tensor([tok(text)["input_ids"]])
    good, bad = tok("+ -", add_special_tokens=False)["input_ids"]
    tag = tok(" ки", add_special_tokens=False)["input_ids"][-1]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0][:, [good, bad]]
    return logits.softmax(-1)[:, 0][ids[0] == tag].tolist()


@pytest.mark.parametrize(
    ("adapter_fixture", "model_fixture", "reference"),
    [
        ("qwen_prm_adapter", "tiny_qwen_prm_model", _reference_qwen),
        ("shepherd_adapter", "tiny_shepherd_model", _reference_shepherd),
    ],
)
def test_adapter_scores_equal_the_models_own_recipe(
    request, adapter_fixture, model_fixture, reference
):
    scorer = Scorer.load(request.getfixturevalue(adapter_fixture), device="cpu")
    model_dir = request.getfixturevalue(model_fixture)
    results = scorer.score(ITEMS)
    for (problem, steps), result in zip(ITEMS, results, strict=True):
        expected = reference(model_dir, problem, steps)
        assert len(expected) == len(steps)
        assert result.step_scores == pytest.approx(expected, abs=1e-5)
        assert result.truncated_steps == 0
    assert len({round(s, 6) for r in results for s in r.step_scores}) > 1


def _shepherd_text(problem: str, steps: list[str]) -> str:
    return problem + " " + "\n".join(f"Step {i + 1}: {s} ки" for i, s in enumerate(steps))


def test_shepherd_input_is_the_whole_text_tokenized_once(shepherd_adapter, tiny_shepherd_model):
    """The model card's recipe: ``tokenizer.encode(f"{question} {output}")``, the step scores
    at the tokens equal to the tag's id. With a SentencePiece tokenizer, tokenizing the problem
    and each "\\nStep k: …" apart adds a "▁" per piece and moves every tag."""
    from transformers import AutoTokenizer

    from selector.ml.prm import encode

    tok = AutoTokenizer.from_pretrained(tiny_shepherd_model)
    assert "Metaspace" in str(tok.backend_tokenizer.pre_tokenizer)
    layout = Scorer.load(shepherd_adapter, device="cpu").layout
    tag = tok.encode("ки")[-1]  # as the model card finds it
    cases = [*ITEMS, (ITEMS[1][0] + "\n", ["so 7 + 8 = 15.", "# Answer\n\n15"])]
    for problem, steps in cases:
        reference = tok.encode(_shepherd_text(problem, steps))
        enc = encode(tok, problem=problem, steps=steps, max_length=1024, layout=layout)
        (window,) = enc.windows
        assert len(window.input_ids) == len(reference)
        assert window.input_ids == reference
        assert window.step_positions == [k for k, t in enumerate(reference) if t == tag]
    # The pieces tokenized apart really are longer here, or this test would say nothing.
    problem, steps = ITEMS[1]
    pieces = [problem + " "] + [
        ("\n" if i else "") + f"Step {i + 1}: {s} ки" for i, s in enumerate(steps)
    ]
    apart = 1 + sum(len(tok.encode(p, add_special_tokens=False)) for p in pieces)
    assert apart > len(tok.encode(_shepherd_text(problem, steps)))


def test_a_tag_typed_inside_a_shepherd_step_is_not_a_step_end(
    shepherd_adapter, tiny_shepherd_model
):
    from transformers import AutoTokenizer

    from selector.ml.prm import encode

    tok = AutoTokenizer.from_pretrained(tiny_shepherd_model)
    layout = Scorer.load(shepherd_adapter, device="cpu").layout
    steps = ["so x ки is 5.", "# Answer\n\n5"]
    reference = tok.encode(_shepherd_text("What is x?", steps))
    tags = [k for k, t in enumerate(reference) if t == tok.encode("ки")[-1]]
    assert len(tags) == 3
    (window,) = encode(
        tok, problem="What is x?", steps=steps, max_length=1024, layout=layout
    ).windows
    assert window.input_ids == reference
    assert window.step_positions == [tags[1], tags[2]]


def test_an_adapter_version_is_only_a_pointer_file(qwen_prm_adapter, tiny_qwen_prm_model):
    assert [p.name for p in qwen_prm_adapter.iterdir()] == [ADAPTER_FILE]
    spec = json.loads((qwen_prm_adapter / ADAPTER_FILE).read_text())
    assert spec == {"adapter": QWEN_PRM, "model": str(tiny_qwen_prm_model.resolve())}


def test_a_model_of_the_wrong_layout_is_refused_and_nothing_written(
    tiny_shepherd_model, tiny_qwen_prm_model, tiny_prm, tmp_path
):
    with pytest.raises(ValueError, match="qwen2"):
        adapter_write(adapter=QWEN_PRM, model_path=tiny_shepherd_model, output_dir=tmp_path / "a")
    with pytest.raises(ValueError, match="<extra_0>"):
        # A Qwen2 PRM made here: right family, wrong layout (no separator token, own head).
        adapter_write(adapter=QWEN_PRM, model_path=tiny_prm, output_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="unknown adapter"):
        adapter_check(adapter="orm", model_path=tiny_qwen_prm_model)
    with pytest.raises(FileNotFoundError, match="not a local model directory"):
        adapter_check(adapter=MATH_SHEPHERD, model_path=tmp_path / "missing")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_training_from_an_imported_prm_is_refused_clearly(shepherd_adapter, tmp_path):
    from selector.ml.training import TrainExample, train

    with pytest.raises(ValueError, match="imported PRM"):
        train(
            init_from=shepherd_adapter,
            examples=[TrainExample(problem="p", steps=["a"], ratings=[1])],
            output_dir=tmp_path / "out",
            device="cpu",
        )
    assert not (tmp_path / "out").exists()
