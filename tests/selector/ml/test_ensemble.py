"""The ensemble of step heads: its uncertainty measures, training, saving and scoring."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from selector.ml.ensemble import (
    STEP_HEADS_FILE,
    StepHeads,
    ensemble_stats,
    solution_uncertainty,
    step_heads_load,
)
from selector.ml.metrics import step_metrics
from selector.ml.scoring import Scorer
from selector.ml.training import train
from tests.selector.ml.conftest import obvious_examples


def test_the_spread_is_zero_when_the_heads_agree_and_grows_as_they_disagree():
    base = torch.tensor([0.05, 0.3, 0.5, 0.9, 0.999])
    same = ensemble_stats(base.expand(5, -1))
    assert torch.allclose(same[:, 1], torch.zeros(5), atol=1e-6)  # epistemic
    assert torch.allclose(same[:, 0], base, atol=1e-6)  # p: the mean
    # aleatoric: each head's own entropy, largest at 0.5
    assert same[2, 2] == pytest.approx(1.0, abs=1e-5)
    assert same[4, 2] < same[3, 2] < same[1, 2]

    spreads = []
    for width in (0.0, 0.05, 0.1, 0.2, 0.3):
        offsets = torch.linspace(-width, width, 5)[:, None]
        spreads.append(float(ensemble_stats((0.5 + offsets).expand(5, 3))[0, 1]))
    assert spreads[0] == pytest.approx(0.0, abs=1e-6)
    assert all(b > a for a, b in itertools.pairwise(spreads))
    # Decomposition: epistemic + aleatoric is the entropy of the mean.
    heads = torch.tensor([[0.1, 0.8], [0.6, 0.9], [0.3, 0.2]])
    stats = ensemble_stats(heads)
    p = heads.mean(0).double()
    total = -(p * p.log2() + (1 - p) * (1 - p).log2())
    assert torch.allclose((stats[:, 1] + stats[:, 2]).double(), total, atol=1e-5)


def test_a_solution_is_as_uncertain_as_its_worst_step_up_to_its_first_predicted_error():
    p = [0.9, 0.8, 0.2, 0.5]
    e = [0.01, 0.30, 0.05, 0.0]
    a = [0.10, 0.10, 0.10, 0.99]  # the last step comes after the predicted error: ignored
    assert solution_uncertainty(p, e, a) == pytest.approx(0.40)
    assert solution_uncertainty([0.9, 0.9], [0.0, 0.2], [0.1, 0.5]) == pytest.approx(0.7)
    assert solution_uncertainty([], [], []) == 0.0


def test_extra_heads_leave_what_the_prm_learns_alone_and_their_mean_learns(
    tiny_prm: Path, tmp_path
):
    options = dict(
        init_from=tiny_prm,
        examples=obvious_examples(80, seed=3),
        epochs=3,
        learning_rate=3e-3,
        seed=5,
        device="cpu",
    )
    one = train(output_dir=tmp_path / "one", ensemble_heads=1, **options)
    five = train(output_dir=tmp_path / "five", ensemble_heads=5, **options)
    assert one["ensemble_heads"] == 1 and one["ensemble_params"] == 0
    assert five["ensemble_heads"] == 5 and five["ensemble_params"] > 0
    assert one["epoch_loss"] == five["epoch_loss"]
    assert not (tmp_path / "one" / STEP_HEADS_FILE).exists()

    from safetensors.torch import load_file

    # The extra heads read detached features: the PRM itself is the one-head PRM, bit for bit.
    w_one = load_file(tmp_path / "one" / "model.safetensors")
    w_five = load_file(tmp_path / "five" / "model.safetensors")
    assert w_one.keys() == w_five.keys()
    assert all(torch.equal(w_one[k], w_five[k]) for k in w_one)

    heads = step_heads_load(tmp_path / "five")
    assert heads is not None and heads.extra == 4
    # Each head learned from its own start and bootstrap draw: no two are alike.
    flat = heads.weight.detach().flatten(1)
    assert all(not torch.allclose(flat[i], flat[j]) for i in range(4) for j in range(i + 1, 4))
    # The heads' mean, the score every rule reads, tells bad steps of unseen solutions from
    # good ones at least as well as the PRM's own head.
    scorer = Scorer.load(tmp_path / "five", device="cpu")
    held_out = obvious_examples(30, seed=99)
    per_head = torch.cat(
        [_good_per_head(scorer, heads, (ex.problem, ex.steps)) for ex in held_out], dim=1
    )
    ratings = [r for ex in held_out for r in ex.ratings]
    own = step_metrics(per_head[0].tolist(), ratings)["auroc"]
    mean = step_metrics(per_head.mean(0).tolist(), ratings)["auroc"]
    assert own is not None and mean is not None
    assert mean > 0.9 and mean >= own - 0.02, (mean, own)


def test_scoring_reports_the_ensemble_mean_and_its_uncertainty(tiny_prm: Path, tmp_path):
    out = tmp_path / "v"
    train(
        init_from=tiny_prm,
        examples=obvious_examples(60, seed=4),
        output_dir=out,
        epochs=2,
        learning_rate=3e-3,
        seed=1,
        device="cpu",
        ensemble_heads=3,
    )
    items = [(ex.problem, ex.steps) for ex in obvious_examples(12, seed=8)]
    scored = Scorer.load(out, device="cpu").score(items)
    for s, (_, steps) in zip(scored, items, strict=True):
        assert s.epistemic is not None and s.aleatoric is not None and s.uncertainty is not None
        assert len(s.step_scores) == len(s.epistemic) == len(s.aleatoric) == len(steps)
        assert all(0.0 <= x <= 1.0 for x in s.epistemic + s.aleatoric)
        assert s.uncertainty == pytest.approx(
            solution_uncertainty(s.step_scores, s.epistemic, s.aleatoric)
        )
    assert any(x > 1e-4 for s in scored for x in s.epistemic or [])

    # The mean of the heads, computed here by hand from the model and the saved heads.
    scorer = Scorer.load(out, device="cpu")
    heads = step_heads_load(out)
    assert heads is not None
    by_hand = _good_per_head(scorer, heads, items[0]).mean(0).tolist()
    assert scored[0].step_scores == pytest.approx(by_hand, abs=1e-5)

    # Without the heads' file the same checkpoint is a single-head PRM: no uncertainty.
    (out / STEP_HEADS_FILE).unlink()
    plain = Scorer.load(out, device="cpu").score(items[:2])
    assert plain[0].uncertainty is None and plain[0].epistemic is None


def _good_per_head(scorer: Scorer, heads: StepHeads, item: tuple[str, list[str]]) -> torch.Tensor:
    """(heads, steps) P(good) of each head, computed here from the model and the saved heads."""
    from selector.ml.prm import encode

    window = encode(
        scorer.tokenizer, problem=item[0], steps=item[1], max_length=scorer.max_length
    ).windows[0]
    with torch.no_grad():
        out = scorer.model(input_ids=torch.tensor([window.input_ids]), output_hidden_states=True)
        hidden = out.hidden_states[-1][0, window.step_positions]
        logits = torch.cat([out.logits[0, window.step_positions][None], heads(hidden)])
    probs = logits.softmax(-1)
    return probs[..., 1] + probs[..., 2]


def test_a_bad_number_of_heads_is_refused(tiny_prm: Path, tmp_path):
    with pytest.raises(ValueError, match="ensemble_heads"):
        train(
            init_from=tiny_prm,
            examples=obvious_examples(4, seed=0),
            output_dir=tmp_path / "x",
            ensemble_heads=0,
        )
    assert not (tmp_path / "x").exists()
