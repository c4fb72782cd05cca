"""Scorer: determinism, batch independence, ranges, aggregation, truncation, the real MiniLM."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from selector.ml.scoring import ScoredSolution, Scorer, aggregate_steps


def _solutions(n: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        steps = [f"{a} + {b} = {a + b + rng.choice([0, 0, 1])}." for _ in range(rng.randint(1, 9))]
        steps.append(f"# Answer\n\n{a + b}")
        out.append((f"Problem {i % 4}: what is {a} + {b}?", steps))
    return out


@pytest.fixture(scope="module")
def scorer(tiny_prm: Path) -> Scorer:
    return Scorer.load(tiny_prm, device="cpu", token_budget=256)


def test_scoring_twice_gives_identical_scores(scorer):
    items = _solutions(12)
    assert scorer.score(items) == scorer.score(items)


def test_scores_do_not_depend_on_batching_or_order(tiny_prm):
    items = _solutions(20)
    big = Scorer.load(tiny_prm, device="cpu", token_budget=100_000).score(items)
    small_scorer = Scorer.load(tiny_prm, device="cpu", token_budget=64)
    alone = [small_scorer.score([item])[0] for item in items]
    reversed_scores = small_scorer.score(items[::-1])[::-1]
    for a, b, c in zip(big, alone, reversed_scores, strict=True):
        assert len(a.step_scores) == len(b.step_scores) == len(c.step_scores)
        assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)
        assert a.step_scores == pytest.approx(c.step_scores, abs=1e-5)
        assert a.score == pytest.approx(b.score, abs=1e-5)


def test_results_follow_input_order_and_scores_are_probabilities(scorer):
    items = _solutions(15)
    results = scorer.score(items)
    assert len(results) == len(items)
    for (_, steps), r in zip(items, results, strict=True):
        assert isinstance(r, ScoredSolution)
        assert len(r.step_scores) == len(steps)
        assert r.truncated_steps == 0
        assert all(0.0 <= s <= 1.0 for s in r.step_scores)
        assert 0.0 <= r.score <= 1.0
        assert r.score == pytest.approx(math.prod(r.step_scores), rel=1e-9)
    # Distinct solutions get distinct scores (the model reads the text, not just its length).
    assert len({round(r.score, 9) for r in results}) > 1


def test_min_aggregate_is_the_weakest_step_and_never_below_product(tiny_prm):
    items = _solutions(6)
    product = Scorer.load(tiny_prm, device="cpu").score(items)
    minimum = Scorer.load(tiny_prm, device="cpu", aggregate="min").score(items)
    for p, m in zip(product, minimum, strict=True):
        assert m.step_scores == p.step_scores
        assert m.score == min(m.step_scores)
        assert p.score <= m.score


def test_aggregate_rules():
    assert aggregate_steps([0.5, 0.5], "product") == 0.25
    assert aggregate_steps([0.5, 0.2], "min") == 0.2
    assert aggregate_steps([], "product") == 1.0
    assert aggregate_steps([1.0000001], "product") == 1.0  # rounding never leaves [0, 1]
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate_steps([0.5], "mean")


def test_a_solution_longer_than_the_window_is_scored_on_every_step(tiny_prm):
    steps = [f"{i} + {i} = {2 * i}." for i in range(30)]
    windowed = Scorer.load(tiny_prm, device="cpu", max_length=64)
    (result,) = windowed.score([("What is it?", steps)])
    assert result.truncated_steps == 0
    assert len(result.step_scores) == 30
    assert result.score == pytest.approx(math.prod(result.step_scores))
    # Later windows see only part of the earlier steps, so scores can differ from one wide
    # window, but the early steps (first window) are identical.
    (wide,) = Scorer.load(tiny_prm, device="cpu").score([("What is it?", steps)])
    assert result.step_scores[:3] == pytest.approx(wide.step_scores[:3], abs=1e-5)


def test_only_a_step_longer_than_any_window_and_what_follows_go_unscored(tiny_prm):
    scorer = Scorer.load(tiny_prm, device="cpu", max_length=64)
    steps = ["1 + 1 = 2.", " ".join(["3 + 4 = 7"] * 60), "5 + 5 = 10."]
    (result,) = scorer.score([("p", steps)])
    assert len(result.step_scores) == 1
    assert result.truncated_steps == 2


def test_solution_without_steps_scores_one_and_the_rest_are_unaffected(scorer):
    items = _solutions(3)
    results = scorer.score([items[0], ("p", []), items[1]])
    assert results[1] == ScoredSolution(step_scores=[], score=1.0, truncated_steps=0)
    assert results[0].step_scores == pytest.approx(
        scorer.score([items[0]])[0].step_scores, abs=1e-5
    )


def test_progress_reports_every_batch_up_to_the_total(scorer):
    seen: list[tuple[int, int]] = []
    scorer.score(_solutions(25), progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 1  # a 256-token budget needs several batches
    assert seen[-1] == (25, 25)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_each_family_gets_its_default_window_and_the_setting_overrides_it(tiny_prm, minilm_prm):
    from selector.ml.prm import DECODER_MAX_LENGTH

    # The tiny decoder's position table (1024) is shorter than the decoder default.
    assert DECODER_MAX_LENGTH >= 2048
    assert Scorer.load(tiny_prm, device="cpu").max_length == 1024
    assert Scorer.load(tiny_prm, device="cpu", max_length=300).max_length == 300
    assert Scorer.load(tiny_prm, device="cpu", max_length=5000).max_length == 1024
    assert Scorer.load(minilm_prm, device="cpu", max_length=128).max_length == 128


def test_loading_a_plain_base_model_or_missing_dir_fails_clearly(tiny_qwen2_base, tmp_path):
    with pytest.raises(ValueError, match="prm_init"):
        Scorer.load(tiny_qwen2_base, device="cpu")
    with pytest.raises(FileNotFoundError, match="not a PRM checkpoint"):
        Scorer.load(tmp_path, device="cpu")
    with pytest.raises(ValueError, match="unknown device"):
        Scorer.load(tiny_qwen2_base, device="tpu")


def test_save_load_round_trip_gives_the_same_scores(tiny_prm, tmp_path):
    from selector.ml.prm import save_pretrained_atomically

    first = Scorer.load(tiny_prm, device="cpu")
    items = _solutions(5)
    save_pretrained_atomically(first.model, first.tokenizer, tmp_path / "copy")
    again = Scorer.load(tmp_path / "copy", device="cpu")
    assert again.score(items) == first.score(items)


def test_packaged_minilm_scores_solutions_end_to_end(minilm_prm):
    scorer = Scorer.load(minilm_prm, device="auto")
    assert scorer.max_length == 512  # BERT's default window: its whole position table
    items = _solutions(8)
    items.append(("Long one", [f"step {i} with words" for i in range(400)]))
    results = scorer.score(items)
    # Nothing is cut: the 400-step solution is scored in windows.
    assert [len(r.step_scores) for r in results] == [len(steps) for _, steps in items]
    assert {r.truncated_steps for r in results} == {0}
    assert all(0.0 <= r.score <= 1.0 for r in results)
    alone = scorer.score(items[:1])[0]
    assert alone.step_scores == pytest.approx(results[0].step_scores, abs=1e-5)


def test_pools_larger_than_a_chunk_score_the_same_and_report_progress_across_chunks(
    tiny_prm, monkeypatch
):
    from selector.ml import scoring

    items = _solutions(11)
    whole = Scorer.load(tiny_prm, device="cpu").score(items)
    monkeypatch.setattr(scoring, "CHUNK_SOLUTIONS", 4)
    seen: list[tuple[int, int]] = []
    chunked = Scorer.load(tiny_prm, device="cpu").score(
        items, progress=lambda d, t: seen.append((d, t))
    )
    for a, b in zip(whole, chunked, strict=True):
        assert a.step_scores == pytest.approx(b.step_scores, abs=1e-5)
    assert seen[-1] == (11, 11)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert {d for d, _ in seen} >= {4, 8, 11}
