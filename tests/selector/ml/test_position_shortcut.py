"""Labels unrelated to content must give chance-level held-out AUROC.

Phase-2 shape: each rated step is negative with a fixed probability and rating stops at the
first negative, so in training (rated prefix only) the negative is always the last step. A model
that can look past a step (a bidirectional encoder) learns that position cue; a causal one has
nothing to learn, and scores whole solutions exactly as it scores the rated prefixes.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from selector.ml.metrics import step_metrics
from selector.ml.scoring import Scorer
from selector.ml.training import TrainExample, split_by_problem, train

WORDS = ["so", "then", "we", "get", "hence", "note", "the", "sum", "is", "x", "and", "value"]


def _solutions(seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for p in range(70):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        for _ in range(4):
            steps = [
                " ".join(rng.choices(WORDS, k=rng.randint(3, 6))) + f" {rng.randint(0, 99)}."
                for _ in range(rng.randint(2, 6))
            ]
            steps.append(f"# Answer\n\n{a + b}")
            ratings: list[int | None] = []
            for _ in steps:
                if rng.random() < 0.25:  # same hazard at every step: position says nothing
                    ratings.append(-1)
                    break
                ratings.append(rng.choice([1, 1, 0]))
            out.append(
                {
                    "key": f"p{p}",
                    "problem": f"Problem {p}: {a} + {b}?",
                    "steps": steps,
                    "ratings": ratings,
                }
            )
    return out


def _null_sd(n_negative: int, n_other: int) -> float:
    """AUROC's standard deviation when the scores carry no information (Mann-Whitney)."""
    return math.sqrt((n_negative + n_other + 1) / (12 * n_negative * n_other))


def _train_and_score(
    init: Path, out: Path, data: list[dict], epochs: int = 3
) -> tuple[dict, dict, int]:
    _, held_keys = split_by_problem({d["key"] for d in data}, eval_fraction=0.3, seed=0)
    examples = [
        TrainExample(
            problem=d["problem"], steps=d["steps"][: len(d["ratings"])], ratings=d["ratings"]
        )
        for d in data
        if d["key"] not in held_keys
    ]
    summary = train(
        init_from=init,
        examples=examples,
        output_dir=out,
        epochs=epochs,
        learning_rate=3e-3,
        token_budget=2048,
        seed=0,
        device="cpu",
    )
    assert summary["epoch_loss"][-1] < summary["epoch_loss"][0]  # it did fit something
    held = [d for d in data if d["key"] in held_keys]
    ratings = [int(r) for d in held for r in d["ratings"] if r is not None]
    scorer = Scorer.load(out, device="cpu")
    views = {}
    for view in ("rated_prefix", "whole_solution"):
        items = [
            (
                d["problem"],
                d["steps"][: len(d["ratings"])] if view == "rated_prefix" else d["steps"],
            )
            for d in held
        ]
        results = scorer.score(items)
        views[view] = [
            s
            for d, r in zip(held, results, strict=True)
            for s in r.step_scores[: len(d["ratings"])]
        ]
    metrics = {v: step_metrics(scores, ratings) for v, scores in views.items()}
    return metrics, views, len(ratings)


@pytest.mark.parametrize("family", ["tiny_bert_prm", "tiny_prm"])
def test_random_step_labels_give_chance_auroc_on_held_out_problems(request, family, tmp_path):
    metrics, views, _ = _train_and_score(
        request.getfixturevalue(family), tmp_path / "v", _solutions(5)
    )
    whole = metrics["whole_solution"]
    sd = _null_sd(whole["n_negative"], whole["n_steps"] - whole["n_negative"])
    assert whole["n_negative"] >= 40
    assert abs(whole["auroc"] - 0.5) < 3 * sd, (whole["auroc"], sd)
    # Causal: the rated prefix alone and the whole solution give the same step scores.
    assert views["rated_prefix"] == pytest.approx(views["whole_solution"], abs=1e-5)


def test_the_same_check_catches_a_bidirectional_encoder(tiny_bert_prm, tmp_path):
    """Control: with BERT's full attention back, the position cue is learned and the held-out
    AUROC on rated prefixes is far from chance: the test above can fail."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    bidirectional = tmp_path / "bi"
    AutoModelForTokenClassification.from_pretrained(
        tiny_bert_prm, is_decoder=False
    ).save_pretrained(bidirectional)
    AutoTokenizer.from_pretrained(tiny_bert_prm).save_pretrained(bidirectional)
    metrics, _, _ = _train_and_score(bidirectional, tmp_path / "v", _solutions(5), epochs=8)
    prefix = metrics["rated_prefix"]
    sd = _null_sd(prefix["n_negative"], prefix["n_steps"] - prefix["n_negative"])
    assert prefix["auroc"] > 0.5 + 3 * sd, (prefix["auroc"], sd)
