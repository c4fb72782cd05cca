"""train(): targets, learning, determinism, checkpoints, bad input; split_by_problem()."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from selector.ml.metrics import step_metrics
from selector.ml.scoring import Scorer
from selector.ml.training import TrainExample, split_by_problem, train, training_targets
from tests.selector.ml.conftest import obvious_examples


def test_targets_stop_after_the_first_negative():
    assert training_targets([1, 0, -1, 1, -1]) == [1, 0, -1, None, None]
    assert training_targets([1, None, 0]) == [1, None, 0]
    assert training_targets([]) == []


@pytest.fixture(scope="module")
def trained(tiny_prm: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("trained") / "v1"
    seen: list[tuple[int, int]] = []
    summary = train(
        init_from=tiny_prm,
        examples=obvious_examples(160, seed=1),
        output_dir=out,
        epochs=4,
        learning_rate=3e-3,
        token_budget=1024,
        seed=7,
        device="cpu",
        progress=lambda d, t: seen.append((d, t)),
    )
    return out, summary, seen


def test_training_lowers_the_loss_and_learns_to_spot_bad_steps(trained, tiny_prm):
    out, summary, _ = trained
    losses = summary["epoch_loss"]
    assert len(losses) == 4
    assert losses[-1] < 0.6 * losses[0]

    held_out = obvious_examples(40, seed=99)
    items = [(ex.problem, ex.steps) for ex in held_out]
    ratings = [int(r) for ex in held_out for r in ex.ratings if r is not None]

    def auroc(path: Path) -> float:
        results = Scorer.load(path, device="cpu").score(items)
        scores = [s for r in results for s in r.step_scores]
        value = step_metrics(scores, ratings)["auroc"]
        assert value is not None
        return value

    assert auroc(out) > 0.95
    assert abs(auroc(tiny_prm) - 0.5) < 0.3  # the untrained head is no better than chance


def test_summary_counts_only_steps_up_to_the_first_negative(trained):
    _, summary, seen = trained
    examples = obvious_examples(160, seed=1)
    targets = [t for ex in examples for t in training_targets(ex.ratings) if t is not None]
    assert summary["labeled_steps"] == len(targets)
    assert summary["label_counts"] == {
        "negative": targets.count(-1),
        "neutral": targets.count(0),
        "positive": targets.count(1),
    }
    assert summary["examples"] == 160 and summary["skipped_examples"] == 0
    assert summary["optimizer_steps"] == len(seen) > 4
    assert seen[-1] == (summary["optimizer_steps"], summary["optimizer_steps"])
    assert summary["device"] == "cpu" and summary["seconds"] > 0


def test_training_is_deterministic_for_a_seed(tiny_prm, tmp_path):
    kwargs: dict[str, Any] = dict(
        examples=obvious_examples(30, seed=2),
        epochs=2,
        learning_rate=1e-3,
        token_budget=512,
        seed=3,
        device="cpu",
    )
    a = train(init_from=tiny_prm, output_dir=tmp_path / "a", **kwargs)
    b = train(init_from=tiny_prm, output_dir=tmp_path / "b", **kwargs)
    assert a["epoch_loss"] == b["epoch_loss"]
    items = [("What is 2 + 3?", ["2 + 3 = 5.", "This step is WRONG ??? 2"])]
    assert Scorer.load(tmp_path / "a", device="cpu").score(items) == Scorer.load(
        tmp_path / "b", device="cpu"
    ).score(items)
    c = train(init_from=tiny_prm, output_dir=tmp_path / "c", **{**kwargs, "seed": 4})
    assert c["epoch_loss"] != a["epoch_loss"]


def test_a_checkpoint_can_be_trained_further_and_reloaded(trained, tmp_path):
    out, _, _ = trained
    summary = train(
        init_from=out,
        examples=obvious_examples(20, seed=5),
        output_dir=tmp_path / "v2",
        epochs=1,
        learning_rate=1e-4,
        device="cpu",
    )
    assert summary["init_from"] == str(out)
    scorer = Scorer.load(tmp_path / "v2", device="cpu")
    (r,) = scorer.score([("What is 1 + 1?", ["1 + 1 = 2.", "This step is WRONG ??? 1"])])
    assert r.step_scores[0] > r.step_scores[1]


def test_bad_examples_fail_before_anything_is_written(tiny_prm, tmp_path):
    bad = [*obvious_examples(3, seed=0), TrainExample(problem="p", steps=["a", "b"], ratings=[1])]
    with pytest.raises(ValueError, match="example 3: 1 ratings for 2 steps"):
        train(init_from=tiny_prm, examples=bad, output_dir=tmp_path / "x", device="cpu")
    bad = [TrainExample(problem="p", steps=["a", "b"], ratings=[1, 5])]
    with pytest.raises(ValueError, match="example 0 step 1"):
        train(init_from=tiny_prm, examples=bad, output_dir=tmp_path / "x", device="cpu")
    unlabeled = [TrainExample(problem="p", steps=["a"], ratings=[None])]
    with pytest.raises(ValueError, match="none of the 1 examples"):
        train(init_from=tiny_prm, examples=unlabeled, output_dir=tmp_path / "x", device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_split_by_problem_is_deterministic_disjoint_and_stable_as_keys_grow():
    keys = [f"test/algebra/{i}.json" for i in range(1000)]
    train_keys, eval_keys = split_by_problem(keys, eval_fraction=0.2, seed=0)
    assert train_keys | eval_keys == set(keys) and not train_keys & eval_keys
    assert 150 < len(eval_keys) < 250
    assert (train_keys, eval_keys) == split_by_problem(keys[::-1], eval_fraction=0.2, seed=0)
    more = keys + [f"new/{i}" for i in range(500)]
    _, eval_more = split_by_problem(more, eval_fraction=0.2, seed=0)
    assert eval_more & set(keys) == eval_keys  # old problems never change side
    _, other_seed = split_by_problem(keys, eval_fraction=0.2, seed=1)
    assert other_seed != eval_keys
    assert split_by_problem(keys, eval_fraction=0.0, seed=0)[1] == set()
    with pytest.raises(ValueError, match="eval_fraction"):
        split_by_problem(keys, eval_fraction=1.5, seed=0)


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    import torch

    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=atol), key


def test_accumulated_micro_batches_give_the_gradient_of_one_batch_of_their_union(tiny_prm):
    import contextlib

    import torch

    from selector.ml.prm import encode_many, load_prm
    from selector.ml.training import _backward_group

    model, tokenizer = load_prm(tiny_prm, device="cpu", dtype=torch.float32)
    examples = obvious_examples(12, seed=4)
    rows = [
        w
        for e in encode_many(
            tokenizer,
            items=[(ex.problem, ex.steps) for ex in examples],
            step_labels=[training_targets(ex.ratings) for ex in examples],
            max_length=256,
        )
        for w in e.windows
    ]

    def gradients(group: list[list[int]]) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        losses = list(
            _backward_group(
                model, rows, group, pad_id=0, device="cpu", autocast=contextlib.nullcontext()
            )
        )
        assert sum(n for _, (_, n) in losses) == sum(lab != -100 for w in rows for lab in w.labels)
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    union = gradients([list(range(12))])
    split = gradients([[i] for i in range(12)])
    uneven = gradients([[0, 1, 2, 3, 4], [5], [6, 7, 8, 9, 10, 11]])
    assert union.keys() == split.keys() == uneven.keys()
    assert max(float(g.abs().max()) for g in union.values()) > 1e-3
    for name, g in union.items():
        assert torch.allclose(g, split[name], atol=1e-6), name
        assert torch.allclose(g, uneven[name], atol=1e-6), name


def test_accumulation_makes_fewer_optimizer_steps(tiny_prm, tmp_path):
    common: dict[str, Any] = dict(examples=obvious_examples(12, seed=4), epochs=1, device="cpu")
    one = train(init_from=tiny_prm, output_dir=tmp_path / "a", token_budget=1, **common)
    acc = train(
        init_from=tiny_prm, output_dir=tmp_path / "b", token_budget=1, grad_accumulation=5, **common
    )
    assert one["optimizer_steps"] == 12 and acc["optimizer_steps"] == 3
    assert acc["grad_accumulation"] == 5


def test_gradient_checkpointing_gives_the_same_weights(tiny_prm, tmp_path):
    common: dict[str, Any] = dict(
        examples=obvious_examples(16, seed=6), epochs=1, learning_rate=1e-2, device="cpu", seed=1
    )
    plain = train(init_from=tiny_prm, output_dir=tmp_path / "plain", **common)
    ckpt = train(
        init_from=tiny_prm, output_dir=tmp_path / "ckpt", gradient_checkpointing=True, **common
    )
    assert ckpt["gradient_checkpointing"] and not plain["gradient_checkpointing"]
    assert ckpt["epoch_loss"] == pytest.approx(plain["epoch_loss"], rel=1e-5)
    _assert_same_weights(tmp_path / "plain", tmp_path / "ckpt", atol=1e-5)


def test_lora_trains_few_parameters_and_saves_a_plain_checkpoint(tiny_prm, tmp_path):
    pytest.importorskip("peft")
    full = train(
        init_from=tiny_prm,
        output_dir=tmp_path / "full",
        examples=obvious_examples(8, seed=1),
        epochs=1,
        device="cpu",
    )
    lora = train(
        init_from=tiny_prm,
        output_dir=tmp_path / "lora",
        examples=obvious_examples(80, seed=1),
        epochs=3,
        learning_rate=5e-3,
        lora_rank=4,
        device="cpu",
    )
    assert 0 < lora["trainable_params"] < full["trainable_params"] / 4
    assert lora["epoch_loss"][-1] < lora["epoch_loss"][0]
    # Merged: the same tensors as any checkpoint, loadable without peft, and changed.
    assert _weights(tmp_path / "lora").keys() == _weights(tiny_prm).keys()
    items = [("What is 1 + 1?", ["1 + 1 = 2.", "This step is WRONG ??? 1"])]
    before = Scorer.load(tiny_prm, device="cpu").score(items)[0].step_scores
    after = Scorer.load(tmp_path / "lora", device="cpu").score(items)[0].step_scores
    assert after != pytest.approx(before, abs=1e-3)


@pytest.mark.parametrize("family", ["tiny_prm", "tiny_llama_prm", "tiny_bert_prm"])
def test_lora_trains_the_step_token_row_and_no_other_embedding(family, request, tmp_path):
    """prm_init gives the step token a random embedding and every score is read at it: LoRA
    must train that row (and only it), and the merged checkpoint must keep it."""
    pytest.importorskip("peft")
    import torch

    from selector.ml.prm import load_prm, step_token_id

    prm: Path = request.getfixturevalue(family)
    rank = 4
    summary = train(
        init_from=prm,
        output_dir=tmp_path / "lora",
        examples=obvious_examples(16, seed=2),
        epochs=1,
        learning_rate=5e-3,
        lora_rank=rank,
        device="cpu",
    )
    initial, tokenizer = load_prm(prm, device="cpu", dtype=torch.float32)
    step_id = step_token_id(tokenizer)
    hidden = initial.config.hidden_size
    if family == "tiny_prm":
        # A tied decoder base; its token-classification model has no LM head to tie the row to.
        assert initial.config.tie_word_embeddings and initial.get_output_embeddings() is None

    # Before: rank x (in + out) per adapted linear layer, and the head in full. Now one more
    # embedding row.
    head = initial.classifier if hasattr(initial, "classifier") else initial.score
    adapted = [m for m in initial.modules() if isinstance(m, torch.nn.Linear) and m is not head]
    before = sum(rank * (m.in_features + m.out_features) for m in adapted)
    before += sum(p.numel() for p in head.parameters())
    assert summary["trainable_params"] == before + hidden

    # The checkpoint as Scorer.load reads it: a plain model whose step row moved, alone.
    start = initial.get_input_embeddings().weight.detach()
    saved = Scorer.load(tmp_path / "lora", device="cpu").model.get_input_embeddings().weight
    saved = saved.detach()
    assert saved.shape == start.shape
    assert not torch.allclose(saved[step_id], start[step_id], atol=1e-4)
    others = torch.arange(start.shape[0]) != step_id
    assert torch.equal(saved[others], start[others])
    common = tokenizer("1 + 1 = 2.", add_special_tokens=False)["input_ids"][0]
    assert torch.equal(saved[common], start[common])


def test_long_examples_train_on_every_rated_step_and_a_lost_one_is_reported(tiny_prm, tmp_path):
    long_steps = [f"{i} + {i} = {2 * i}." for i in range(40)]
    examples = [
        TrainExample(problem="What is it?", steps=long_steps, ratings=[1] * 39 + [-1]),
        # A rated step longer than any window: it and the rated step after it cannot be kept.
        TrainExample(
            problem="p",
            steps=["1 + 1 = 2.", " ".join(["3 + 4 = 7"] * 60), "5 + 5 = 10."],
            ratings=[1, 1, -1],
        ),
    ]
    summary = train(
        init_from=tiny_prm,
        output_dir=tmp_path / "v",
        examples=examples,
        epochs=1,
        max_length=64,
        device="cpu",
    )
    assert summary["labeled_steps"] == 40 + 1
    assert summary["label_counts"]["negative"] == 1
    assert summary["windows"] > 2
    assert summary["dropped_rated_steps"] == 2
    assert summary["errors"] == [
        "example 1: 2 rated step(s) from step 1 dropped: step 1 does not fit the window with "
        "the problem"
    ]


def test_out_of_memory_becomes_a_clear_error_and_writes_nothing(tiny_prm, tmp_path, monkeypatch):
    import torch

    def exhausted(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    # Fault injection: no GPU here, so the allocator failure is raised where the loss is made.
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", exhausted)
    from selector.ml.training import TrainingOutOfMemory

    with pytest.raises(TrainingOutOfMemory, match="out of cpu memory at optimizer step 1") as err:
        train(
            init_from=tiny_prm,
            output_dir=tmp_path / "v",
            examples=obvious_examples(4, seed=0),
            device="cpu",
        )
    assert "gradient checkpointing" in str(err.value) and "token_budget=8192" in str(err.value)
    assert not (tmp_path / "v").exists()


def test_bad_training_options_are_refused(tiny_prm, tmp_path):
    for option, message in [
        ({"grad_accumulation": 0}, "grad_accumulation"),
        ({"lora_rank": -1}, "lora_rank"),
    ]:
        with pytest.raises(ValueError, match=message):
            train(
                init_from=tiny_prm,
                output_dir=tmp_path / "x",
                examples=obvious_examples(2, seed=0),
                device="cpu",
                **option,
            )
    assert not (tmp_path / "x").exists()
