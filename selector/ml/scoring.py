"""Batched PRM inference over many candidate solutions.

Throughput comes from: tokenizing every distinct text once (``encode_many``), sorting by
length and packing batches up to a token budget (little padding), ``inference_mode``, bf16 +
SDPA on CUDA, and reading out only the step-end positions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selector.ml.batching import collate, plan_batches
from selector.ml.prm import NEUTRAL, POSITIVE, encode_many, load_prm

AGGREGATES = ("product", "min")
CHUNK_SOLUTIONS = 8192
CPU_BATCH_TOKENS = 2048


@dataclass
class ScoredSolution:
    step_scores: list[float]  # P(positive) + P(neutral) at each kept step
    score: float  # product (or min) of step_scores; 1.0 when no step was kept
    truncated_steps: int  # steps past max_length, not scored


def aggregate_steps(step_scores: Sequence[float], how: str) -> float:
    if how == "product":
        value = math.prod(step_scores)
    elif how == "min":
        value = min(step_scores, default=1.0)
    else:
        raise ValueError(f"unknown aggregate {how!r}: expected one of {AGGREGATES}")
    return min(1.0, max(0.0, value))


class Scorer:
    """A loaded PRM that scores (problem, steps) pairs. Load once, score many times."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str,
        aggregate: str = "product",
        token_budget: int = 16384,
        max_length: int = 512,
    ) -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}: expected one of {AGGREGATES}")
        if token_budget < 1 or max_length < 2:
            raise ValueError("token_budget and max_length must be positive")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.aggregate = aggregate
        self.token_budget = token_budget
        if not device.startswith("cuda"):
            # Measured on a 2-core AVX-512 CPU (bench/selector_throughput.py, MiniLM): batches
            # of 1-2K tokens keep activations in cache and beat the naive loop by ~10%, while
            # 16K-token batches are ~20% slower than it. GPUs want the big batches.
            self.token_budget = min(token_budget, CPU_BATCH_TOKENS)
        # Absolute-position encoders (BERT: 512) cannot read past their position table.
        positions = getattr(model.config, "max_position_embeddings", None) or max_length
        self.max_length = min(max_length, int(positions))
        # Tensor cores want multiples of 8; on CPU padding is pure waste.
        self.pad_multiple = 8 if device.startswith("cuda") else 1
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "auto",
        aggregate: str = "product",
        token_budget: int = 16384,
        max_length: int = 512,
    ) -> Scorer:
        from selector.ml.devices import inference_dtype, resolve_device

        resolved = resolve_device(device)
        model, tokenizer = load_prm(path, device=resolved, dtype=inference_dtype(resolved))
        return cls(
            model,
            tokenizer,
            device=resolved,
            aggregate=aggregate,
            token_budget=token_budget,
            max_length=max_length,
        )

    def score(
        self,
        items: Sequence[tuple[str, Sequence[str]]],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[ScoredSolution]:
        """Score (problem, steps) pairs; results come back in input order.

        ``progress(done, total)`` is called after each batch with solution counts.
        """
        total = len(items)
        out: list[ScoredSolution] = []
        # Chunks bound the memory of the token lists for pools of millions; within a chunk
        # length sorting still leaves little padding.
        for start in range(0, total, CHUNK_SOLUTIONS):
            chunk = items[start : start + CHUNK_SOLUTIONS]
            encoded = encode_many(self.tokenizer, items=chunk, max_length=self.max_length)

            def chunk_progress(done: int, _: int, start: int = start) -> None:
                if progress is not None:
                    progress(start + done, total)

            step_scores = self.step_scores(
                [e.input_ids for e in encoded],
                [e.step_positions for e in encoded],
                progress=chunk_progress,
            )
            out.extend(
                ScoredSolution(
                    step_scores=scores,
                    score=aggregate_steps(scores, self.aggregate),
                    truncated_steps=enc.truncated_steps,
                )
                for scores, enc in zip(step_scores, encoded, strict=True)
            )
        return out

    def step_scores(
        self,
        input_ids: Sequence[Sequence[int]],
        step_positions: Sequence[Sequence[int]],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[float]]:
        """P(positive) + P(neutral) at the given positions of pre-encoded sequences."""
        import torch

        total = len(input_ids)
        results: list[list[float]] = [[] for _ in range(total)]
        lengths = [len(ids) for ids in input_ids]
        # Longest first: the first batch is the largest, so an out-of-memory shows up at once.
        order = sorted(range(total), key=lambda i: -lengths[i])
        batches = plan_batches(
            order, lengths, token_budget=self.token_budget, pad_multiple=self.pad_multiple
        )
        done = 0
        with torch.inference_mode():
            for batch in batches:
                self._score_batch(batch, input_ids, step_positions, results)
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        return results

    def _score_batch(
        self,
        batch: list[int],
        input_ids: Sequence[Sequence[int]],
        step_positions: Sequence[Sequence[int]],
        results: list[list[float]],
    ) -> None:
        import torch

        rows = [r for r, i in enumerate(batch) for _ in step_positions[i]]
        cols = [p for i in batch for p in step_positions[i]]
        if not rows:
            return
        tensors = collate(
            [input_ids[i] for i in batch], pad_id=self.pad_id, pad_multiple=self.pad_multiple
        )
        try:
            if self.device.startswith("cuda"):
                tensors = {
                    k: v.pin_memory().to(self.device, non_blocking=True) for k, v in tensors.items()
                }
            logits = self.model(**tensors).logits
        except torch.cuda.OutOfMemoryError:
            # A budget too large for this GPU (or a neighbour's memory): halve and go on
            # rather than fail a pool-wide job.
            if len(batch) == 1:
                raise
            del tensors
            torch.cuda.empty_cache()
            half = len(batch) // 2
            self._score_batch(batch[:half], input_ids, step_positions, results)
            self._score_batch(batch[half:], input_ids, step_positions, results)
            return
        picked = logits[
            torch.as_tensor(rows, device=logits.device),
            torch.as_tensor(cols, device=logits.device),
        ]
        probs = picked.float().softmax(dim=-1)
        good = (probs[:, POSITIVE] + probs[:, NEUTRAL]).clamp(0.0, 1.0).cpu().tolist()
        offset = 0
        for i in batch:
            n = len(step_positions[i])
            results[i] = good[offset : offset + n]
            offset += n
