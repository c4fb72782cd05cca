"""Batched PRM inference over many candidate solutions.

Throughput comes from: tokenizing every distinct text once (``encode_many``), sorting by
length and packing batches up to a token budget (little padding), ``inference_mode``, bf16 +
SDPA on CUDA, and reading out only the step-end positions. A solution longer than the window
is scored in several windows (``prm.encode_many``); the windows are batched like solutions.

What the model outputs at a step-end position and how that becomes P(good step) is a
``Readout``: the native 3-class head here, imported PRMs' heads in ``selector.ml.adapters``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selector.ml.batching import collate, plan_batches
from selector.ml.prm import NEUTRAL, POSITIVE, Layout, encode_many, load_prm, resolve_max_length

AGGREGATES = ("product", "min")
CHUNK_SOLUTIONS = 8192
CPU_BATCH_TOKENS = 2048


@dataclass
class ScoredSolution:
    step_scores: list[float]  # P(positive) + P(neutral) at each scored (leading) step
    score: float  # product (or min) of step_scores; 1.0 when no step was kept
    truncated_steps: int  # trailing steps no window could hold, not scored
    # With an ensemble of step heads (``selector.ml.ensemble``), per scored step: the spread
    # between the heads (epistemic) and their mean entropy (aleatoric), in bits, and the
    # solution's uncertainty (the largest step uncertainty up to its first predicted error).
    # None for a PRM without an ensemble (an imported one).
    epistemic: list[float] | None = None
    aleatoric: list[float] | None = None
    uncertainty: float | None = None


class Readout:
    """The native PRM: a 3-class token-classification head; P(good) = P(positive) + P(neutral)."""

    def good_probability(self, model: Any, tensors: dict[str, Any], rows: Any, cols: Any) -> Any:
        logits = model(**tensors).logits
        probs = logits[rows, cols].float().softmax(dim=-1)
        return (probs[:, POSITIVE] + probs[:, NEUTRAL]).clamp(0.0, 1.0)


class EnsembleReadout(Readout):
    """The native head plus an ensemble's extra heads (``selector.ml.ensemble``): per step
    position [p, epistemic, aleatoric] instead of a single P(good)."""

    uncertain = True

    def __init__(self, model: Any, heads: Any) -> None:
        from selector.ml.ensemble import HeadInput

        self.heads = heads
        self.head_input = HeadInput(model)

    def good_probability(self, model: Any, tensors: dict[str, Any], rows: Any, cols: Any) -> Any:
        import torch

        from selector.ml.ensemble import ensemble_stats

        logits = model(**tensors).logits[rows, cols]
        features = self.head_input.value
        assert features is not None, "the PRM's head did not run"
        every = torch.cat([logits[None].float(), self.heads(features[rows, cols]).float()])
        probs = every.softmax(dim=-1)
        good = (probs[..., POSITIVE] + probs[..., NEUTRAL]).clamp(0.0, 1.0)
        return ensemble_stats(good)


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
        max_length: int | None = None,
        layout: Layout | None = None,
        readout: Readout | None = None,
    ) -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}: expected one of {AGGREGATES}")
        if token_budget < 1:
            raise ValueError("token_budget must be positive")
        self.layout = layout
        self.readout = readout or Readout()
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
        # Each family's own window unless overridden; never past the position table.
        self.max_length = resolve_max_length(model.config, max_length)
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
        max_length: int | None = None,
    ) -> Scorer:
        """A PRM saved by ``prm_init``/``train``, or one imported by ``adapters.adapter_write``."""
        from selector.ml import adapters
        from selector.ml.devices import inference_dtype, resolve_device
        from selector.ml.ensemble import step_heads_load

        resolved = resolve_device(device)
        dtype = inference_dtype(resolved)
        layout: Layout | None = None
        readout: Readout | None = None
        if adapters.is_adapter_dir(path):
            model, tokenizer, layout, readout = adapters.adapter_load(
                path, device=resolved, dtype=dtype
            )
        else:
            model, tokenizer = load_prm(path, device=resolved, dtype=dtype)
            heads = step_heads_load(path)
            if heads is not None:
                readout = EnsembleReadout(model, heads.to(device=resolved, dtype=dtype))
        return cls(
            model,
            tokenizer,
            device=resolved,
            aggregate=aggregate,
            token_budget=token_budget,
            max_length=max_length,
            layout=layout,
            readout=readout,
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
            encoded = encode_many(
                self.tokenizer, items=chunk, max_length=self.max_length, layout=self.layout
            )
            windows = [(i, w) for i, e in enumerate(encoded) for w in e.windows]

            # Progress counts solutions; within a chunk it moves with the windows done.
            def chunk_progress(
                done: int, _: int, start: int = start, size: int = len(chunk), n: int = len(windows)
            ) -> None:
                if progress is not None:
                    progress(start + size * done // max(1, n), total)

            window_outputs = self.step_outputs(
                [w.input_ids for _, w in windows],
                [w.step_positions for _, w in windows],
                progress=chunk_progress,
            )
            per_solution: list[list[Any]] = [[] for _ in chunk]
            # Windows come in step order within a solution, so concatenation is step order.
            for (i, _), outputs in zip(windows, window_outputs, strict=True):
                per_solution[i].extend(outputs)
            out.extend(
                self._scored(outputs, enc.truncated_steps)
                for outputs, enc in zip(per_solution, encoded, strict=True)
            )
            if progress is not None:
                progress(start + len(chunk), total)
        return out

    def _scored(self, outputs: list[Any], truncated_steps: int) -> ScoredSolution:
        if not getattr(self.readout, "uncertain", False):
            return ScoredSolution(
                step_scores=outputs,
                score=aggregate_steps(outputs, self.aggregate),
                truncated_steps=truncated_steps,
            )
        from selector.ml.ensemble import solution_uncertainty

        p, epistemic, aleatoric = ([row[k] for row in outputs] for k in range(3))
        return ScoredSolution(
            step_scores=p,
            score=aggregate_steps(p, self.aggregate),
            truncated_steps=truncated_steps,
            epistemic=epistemic,
            aleatoric=aleatoric,
            uncertainty=solution_uncertainty(p, epistemic, aleatoric),
        )

    def step_outputs(
        self,
        input_ids: Sequence[Sequence[int]],
        step_positions: Sequence[Sequence[int]],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[list[Any]]:
        """Per sequence, at the given positions of pre-encoded sequences: P(positive) +
        P(neutral), or [p, epistemic, aleatoric] when the readout is an ensemble's."""
        import torch

        total = len(input_ids)
        results: list[list[Any]] = [[] for _ in range(total)]
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
        results: list[list[Any]],
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
            device = tensors["input_ids"].device
            good = self.readout.good_probability(
                self.model,
                tensors,
                torch.as_tensor(rows, device=device),
                torch.as_tensor(cols, device=device),
            )
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
        good = good.cpu().tolist()
        offset = 0
        for i in batch:
            n = len(step_positions[i])
            results[i] = good[offset : offset + n]
            offset += n
