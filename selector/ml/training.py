"""Fine-tuning a PRM on human step labels (a plain PyTorch loop; see
docs/decisions/0002-selector-training-loop.md for why not ``transformers.Trainer``)."""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selector.ml.batching import collate, plan_batches
from selector.ml.prm import (
    ID2LABEL,
    IGNORE_INDEX,
    Encoded,
    encode_many,
    load_prm,
    rating_to_class,
    save_pretrained_atomically,
)

WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
LENGTH_BUCKET = 16  # tokens; sequences within a bucket are shuffled together each epoch
# Short examples would otherwise pack hundreds to a batch and leave too few optimizer steps.
MAX_BATCH_ROWS = 64


@dataclass
class TrainExample:
    problem: str
    steps: list[str]
    ratings: list[int | None] = field(default_factory=list)  # -1/0/+1/None per step


def training_targets(ratings: Sequence[int | None]) -> list[int | None]:
    """Ratings up to and including the first negative; the steps after it get no target
    (phase-2 labelers stop there, and what follows an error is not judged on its own)."""
    out: list[int | None] = []
    seen_negative = False
    for rating in ratings:
        out.append(None if seen_negative else rating)
        if rating == -1:
            seen_negative = True
    return out


def split_by_problem(
    keys: Sequence[str], *, eval_fraction: float, seed: int
) -> tuple[set[str], set[str]]:
    """(train keys, eval keys). Each key's side depends only on (seed, key), so the held-out
    set stays frozen as new problems arrive and never leaks into training."""
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    train: set[str] = set()
    held_out: set[str] = set()
    for key in keys:
        digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
        position = int.from_bytes(digest[:8], "big") / 2**64
        (held_out if position < eval_fraction else train).add(key)
    return train, held_out


def _length_bucketed_batches(
    encoded: Sequence[Encoded], *, token_budget: int, rng: random.Random
) -> list[list[int]]:
    lengths = [len(e.input_ids) for e in encoded]
    order = list(range(len(encoded)))
    rng.shuffle(order)
    # Stable sort on a coarse length bucket: little padding, but batch membership still
    # changes from epoch to epoch.
    order.sort(key=lambda i: -(lengths[i] // LENGTH_BUCKET))
    batches = plan_batches(order, lengths, token_budget=token_budget, max_rows=MAX_BATCH_ROWS)
    rng.shuffle(batches)
    return batches


def _lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warmup then linear decay; never exactly zero, so no step is wasted."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(
    *,
    init_from: str | Path,
    examples: Sequence[TrainExample],
    output_dir: str | Path,
    epochs: int = 3,
    learning_rate: float = 5e-5,
    token_budget: int = 8192,
    max_length: int = 512,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune the PRM at ``init_from`` on ``examples`` and save it to ``output_dir``.

    Returns a JSON-ready summary. Nothing is written unless training finishes.
    ``progress(done, total)`` counts optimizer steps.
    """
    import torch

    from selector.ml.devices import resolve_device

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    for i, ex in enumerate(examples):
        if len(ex.ratings) != len(ex.steps):
            raise ValueError(f"example {i}: {len(ex.ratings)} ratings for {len(ex.steps)} steps")
        for j, rating in enumerate(ex.ratings):
            rating_to_class(rating, where=f"example {i} step {j}")

    started = time.perf_counter()
    resolved = resolve_device(device)
    torch.manual_seed(seed)  # the head's init on a fresh PRM, and dropout
    rng = random.Random(seed)

    # Weights stay float32 (the optimizer's master copy); CUDA runs the math in bf16 autocast.
    model, tokenizer = load_prm(init_from, device=resolved, dtype=torch.float32)
    positions = getattr(model.config, "max_position_embeddings", None) or max_length
    max_length = min(max_length, int(positions))
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    all_encoded = encode_many(
        tokenizer,
        items=[(ex.problem, ex.steps) for ex in examples],
        step_labels=[training_targets(ex.ratings) for ex in examples],
        max_length=max_length,
    )
    encoded = [e for e in all_encoded if any(lab != IGNORE_INDEX for lab in e.labels)]
    label_counts = dict.fromkeys(ID2LABEL.values(), 0)
    for e in encoded:
        for lab in e.labels:
            if lab != IGNORE_INDEX:
                label_counts[ID2LABEL[lab]] += 1
    labeled_steps = sum(label_counts.values())
    if not encoded:
        raise ValueError(f"none of the {len(examples)} examples has a rated step within max_length")

    epoch_plans = [
        _length_bucketed_batches(encoded, token_budget=token_budget, rng=rng) for _ in range(epochs)
    ]
    total_steps = sum(len(p) for p in epoch_plans)
    warmup = math.ceil(WARMUP_FRACTION * total_steps)

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            # Biases and norm weights are not regularised (standard BERT/AdamW practice).
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=learning_rate,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, warmup=warmup, total=total_steps)
    )
    on_cuda = resolved.startswith("cuda")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda)

    model.train()
    epoch_losses: list[float] = []
    step = 0
    for plan in epoch_plans:
        loss_sum, loss_count = 0.0, 0
        for batch in plan:
            tensors = collate(
                [encoded[i].input_ids for i in batch],
                pad_id=pad_id,
                labels=[encoded[i].labels for i in batch],
            )
            tensors = {k: v.to(resolved, non_blocking=on_cuda) for k, v in tensors.items()}
            labels = tensors.pop("labels")
            with autocast:
                logits = model(**tensors).logits
            # Loss in float32 over the labeled step positions only.
            loss = torch.nn.functional.cross_entropy(
                logits.float().view(-1, logits.shape[-1]),
                labels.view(-1),
                ignore_index=IGNORE_INDEX,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step()
            scheduler.step()
            n = int((labels != IGNORE_INDEX).sum())
            loss_sum += float(loss.detach()) * n
            loss_count += n
            step += 1
            if progress is not None:
                progress(step, total_steps)
        epoch_losses.append(loss_sum / max(1, loss_count))

    model.eval()
    save_pretrained_atomically(model, tokenizer, output_dir)
    return {
        "examples": len(encoded),
        "skipped_examples": len(examples) - len(encoded),
        "labeled_steps": labeled_steps,
        "label_counts": label_counts,
        "truncated_steps": sum(e.truncated_steps for e in all_encoded),
        "epoch_loss": epoch_losses,
        "optimizer_steps": total_steps,
        "seconds": round(time.perf_counter() - started, 3),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "token_budget": token_budget,
        "max_length": max_length,
        "seed": seed,
        "device": resolved,
        "init_from": str(init_from),
    }
