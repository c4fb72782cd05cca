"""The surprise PRM: a language model's surprise over each step, read by the step head."""

import json
import math

import torch

from selector.ml.pretrain import surprise_base_write
from selector.ml.prm import STEP_TOKEN, is_causal, load_prm, prm_init
from selector.ml.scoring import Scorer
from selector.ml.surprise import step_surprise_features
from selector.ml.training import TrainExample, train
from selector.simulation.pool import SYNTH_SMALL, synthetic_pool
from tests.selector.ml.conftest import small_digit_lm

STEP = 9


def test_features_describe_the_current_step_only_and_only_what_came_before():
    # Token t's surprise is -log p[t-1, token t]; uniform log-probs except where set.
    ids = torch.tensor([[1, 2, 3, STEP, 4, 5, STEP, 6]])
    log_probs = torch.full((1, 8, 10), math.log(0.5))
    log_probs[0, 1, 3] = math.log(0.01)  # token 3 (step 1) is surprising
    log_probs[0, 4, 5] = math.log(0.25)  # token 5 (step 2) a little
    features = step_surprise_features(log_probs, ids, STEP)
    s1, s2, half = -math.log(0.01), -math.log(0.25), -math.log(0.5)
    # At the first step token: the step's max, and its mean over [CLS]=0, 2, 3 and the step
    # token itself (no surprise).
    assert features[0, 3, 0].item() == torch.tensor(s1).float().item()
    assert abs(features[0, 3, 1].item() - (0 + half + s1 + 0) / 4) < 1e-5
    assert features[0, 3, 2].item() == 0.0
    # At the second: only step 2's tokens count, not step 1's larger surprise.
    assert abs(features[0, 6, 0].item() - s2) < 1e-5
    assert abs(features[0, 6, 1].item() - (half + s2 + 0) / 3) < 1e-5
    # Prefix invariance: cutting the sequence changes nothing before the cut.
    cut = step_surprise_features(log_probs[:, :5], ids[:, :5], STEP)
    assert torch.allclose(cut, features[:, :5])


def _surprise_base(tmp_path):
    _, tokenizer, _ = small_digit_lm(tmp_path, epochs=2, replace_rate=0.0)
    return surprise_base_write(tmp_path / "lm", tmp_path / "base"), tokenizer


def test_a_surprise_prm_keeps_the_language_model_is_causal_and_trains_and_scores(tmp_path):
    from transformers import BertLMHeadModel

    base, tokenizer = _surprise_base(tmp_path)
    prm_init(base_model=str(base), output_dir=tmp_path / "prm")
    model, loaded = load_prm(tmp_path / "prm", device="cpu", dtype=torch.float32)
    assert type(model).__name__ == "SurpriseBertForTokenClassification"
    assert is_causal(model)
    assert loaded.convert_tokens_to_ids(STEP_TOKEN) == tokenizer.convert_tokens_to_ids(STEP_TOKEN)
    # The language model came through prm_init as the reference: the same predictions.
    language_model = BertLMHeadModel.from_pretrained(tmp_path / "lm").eval()
    ids = torch.tensor([tokenizer("Start with $3$, add 4. What is the result?")["input_ids"]])
    with torch.no_grad():
        expected = language_model(input_ids=ids).logits
        got = model.reference_head(model.reference(input_ids=ids).last_hidden_state)
    assert torch.allclose(expected, got, atol=1e-5)
    features_before = model.surprise_features(ids)

    pool = synthetic_pool(problems=6, candidates=4, seed=0, params=SYNTH_SMALL)
    examples = [
        TrainExample(problem=p.problem, steps=list(c.steps), ratings=list(c.ratings))
        for p in pool
        for c in p.candidates
    ]
    assert not any(p.requires_grad for p in model.reference.parameters())
    summary = train(
        init_from=tmp_path / "prm",
        examples=examples,
        output_dir=tmp_path / "trained",
        epochs=1,
        learning_rate=1e-3,
        max_length=128,
        device="cpu",
    )
    # Only the backbone and the step head count as trained.
    assert summary["trainable_params"] == sum(
        p.numel() for n, p in model.named_parameters() if not n.startswith("reference")
    )
    # Training moves the backbone and the step head, never the reference: its surprise is
    # what the pretrained model said, however long the fine-tune.
    trained, _ = load_prm(tmp_path / "trained", device="cpu", dtype=torch.float32)
    assert not torch.allclose(
        trained.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight
    )
    assert torch.equal(trained.surprise_features(ids), features_before)
    scorer = Scorer.load(tmp_path / "trained", device="cpu")
    problem, steps = pool[0].problem, list(pool[0].candidates[0].steps)
    whole, prefix = scorer.score([(problem, steps), (problem, steps[:2])])
    assert len(whole.step_scores) == len(steps)
    assert all(0.0 <= s <= 1.0 for s in whole.step_scores)
    # A step's score does not depend on later steps.
    assert whole.step_scores[:2] == prefix.step_scores or all(
        abs(a - b) < 1e-5 for a, b in zip(whole.step_scores[:2], prefix.step_scores, strict=True)
    )


def test_the_simulation_builds_a_surprise_base_from_a_plain_language_model(tmp_path):
    from selector.simulation.runner import SimConfig, pretrained_base_model

    config = SimConfig(
        pool="synthetic-small", pretrain_problems=30, pretrain_epochs=1, hidden_size=32, layers=1
    )
    base = pretrained_base_model(config, tmp_path, surprise=True)
    assert base.name == "pretrained-surprise-base"
    prm_init(base_model=str(base), output_dir=tmp_path / "prm")
    model, _ = load_prm(tmp_path / "prm", device="cpu", dtype=torch.float32)
    assert type(model).__name__ == "SurpriseBertForTokenClassification"
    assert json.loads((tmp_path / "pretrain.json").read_text())["replace_rate"] == 0.0
