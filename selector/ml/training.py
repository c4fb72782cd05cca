"""Fine-tuning a PRM on human step labels (a plain PyTorch loop; see
docs/decisions/0002-selector-training-loop.md for why not ``transformers.Trainer``)."""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from selector.ml.batching import collate, plan_batches
from selector.ml.prm import (
    ID2LABEL,
    IGNORE_INDEX,
    Window,
    encode_many,
    load_prm,
    rating_to_class,
    resolve_max_length,
    save_pretrained_atomically,
    step_token_id,
)

WARMUP_FRACTION = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
LENGTH_BUCKET = 16  # tokens; sequences within a bucket are shuffled together each epoch
# Short examples would otherwise pack hundreds to a batch and leave too few optimizer steps.
MAX_BATCH_ROWS = 64
MAX_REPORTED_ERRORS = 20  # the summary lists this many dropped-step errors, then counts


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


class TrainingOutOfMemory(RuntimeError):
    """The device ran out of memory; the message says which batch and what to change."""


def class_weights_balanced(counts: Sequence[int]) -> list[float]:
    """Per-class loss weights ``N / (present classes x count)``: each present class weighs as
    much in total, and the weights of all labeled steps still sum to N. Absent classes get 1."""
    total = sum(counts)
    present = sum(1 for c in counts if c > 0)
    return [total / (present * c) if c > 0 else 1.0 for c in counts]


def _length_bucketed_batches(
    encoded: Sequence[Window], *, token_budget: int, rng: random.Random
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


def _rated_steps_dropped(
    examples: Sequence[TrainExample], targets: Sequence[Sequence[int | None]], encoded: Any
) -> tuple[int, list[str]]:
    """Rated steps that no window holds (a step longer than the window), with one error line
    per example: a rated step is never lost without saying so."""
    dropped = 0
    errors: list[str] = []
    for i, (ex, enc) in enumerate(zip(examples, encoded, strict=True)):
        kept = len(ex.steps) - enc.truncated_steps
        lost = [j for j in range(kept, len(ex.steps)) if targets[i][j] is not None]
        if lost:
            dropped += len(lost)
            errors.append(
                f"example {i}: {len(lost)} rated step(s) from step {lost[0]} dropped: step "
                f"{kept} does not fit the window with the problem"
            )
    return dropped, errors


def _checkpointing(model: Any, *, on: bool) -> None:
    # transformers 5 renamed gradient to activation checkpointing; older ones have only the
    # first name. Non-reentrant checkpointing also works when the embeddings are frozen (LoRA).
    prefix = "activation" if hasattr(model, "activation_checkpointing_enable") else "gradient"
    if on:
        getattr(model, f"{prefix}_checkpointing_enable")(
            **{f"{prefix}_checkpointing_kwargs": {"use_reentrant": False}}
        )
    else:
        getattr(model, f"{prefix}_checkpointing_disable")()


def _apply_lora(model: Any, rank: int, *, step_id: int) -> Any:
    """LoRA on every linear layer, the heads trained in full, and the step token's input
    embedding row trained on its own: ``prm_init`` gave it random values, and every score is
    read at its position. A pad token ``prm_init`` may have added stays frozen: padding is on
    the right and masked, so no scored position ever sees it."""
    try:
        import peft
    except ImportError as exc:
        raise RuntimeError(
            "lora_rank > 0 needs the optional 'peft' package: pip install 'stepwise[lora]'"
        ) from exc
    config = peft.LoraConfig(
        task_type=peft.TaskType.TOKEN_CLS,  # keeps the classification head fully trainable
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules="all-linear",
        # The heads (BERT-style "classifier", decoder-style "score") are trained in full.
        exclude_modules=["classifier", "score"],
        # A list targets the input embedding whatever its name. merge_and_unload writes the
        # trained row back into the embedding matrix. A token-classification model has no LM
        # head, so a base's tie_word_embeddings leaves nothing tied to the row.
        trainable_token_indices=[step_id],
    )
    return peft.get_peft_model(model, config)


def _n_labeled(rows: Sequence[Window], batch: Sequence[int]) -> int:
    return sum(lab != IGNORE_INDEX for i in batch for lab in rows[i].labels)


def _backward_group(
    model: Any,
    rows: Sequence[Window],
    group: Sequence[list[int]],
    *,
    pad_id: int,
    device: str,
    autocast: Any,
    weight: Any = None,
    ensemble: _Ensemble | None = None,
) -> Iterator[tuple[list[int], tuple[float, int]]]:
    """Backpropagate the micro-batches of one optimizer step, yielding per micro-batch its
    (summed loss, labeled steps). Each loss is divided by the whole group's labeled count, so
    the gradients add up to those of one batch holding the group's rows, however it is split."""
    import torch

    group_labels = sum(_n_labeled(rows, b) for b in group)
    for batch in group:
        tensors = collate(
            [rows[i].input_ids for i in batch],
            pad_id=pad_id,
            labels=[rows[i].labels for i in batch],
        )
        on_cuda = device.startswith("cuda")
        tensors = {k: v.to(device, non_blocking=on_cuda) for k, v in tensors.items()}
        labels = tensors.pop("labels")
        with autocast:
            logits = model(**tensors).logits
        # Loss in float32 over the labeled step positions only.
        loss = torch.nn.functional.cross_entropy(
            logits.float().view(-1, logits.shape[-1]),
            labels.view(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
            weight=weight,
        )
        if ensemble is not None:
            loss_heads = ensemble.loss(labels, batch, class_weight=weight)
            ((loss + loss_heads) / group_labels).backward()
        else:
            (loss / group_labels).backward()
        yield batch, (float(loss.detach()), _n_labeled(rows, batch))


class _Ensemble:
    """The extra step heads during training (``selector.ml.ensemble``): each learns from the
    PRM head's detached input with its own bootstrap weight per row."""

    def __init__(self, model: Any, heads: Any, row_weights: Any) -> None:
        from selector.ml.ensemble import HeadInput

        self.heads = heads
        self.row_weights = row_weights  # (extra, rows)
        self.head_input = HeadInput(model)

    def loss(self, labels: Any, batch: Sequence[int], *, class_weight: Any) -> Any:
        from selector.ml.ensemble import step_heads_loss

        features = self.head_input.value
        assert features is not None, "the PRM's head did not run"
        return step_heads_loss(
            self.heads,
            features,
            labels,
            self.row_weights[:, list(batch)],
            ignore_index=IGNORE_INDEX,
            class_weight=class_weight,
        )


def train(
    *,
    init_from: str | Path,
    examples: Sequence[TrainExample],
    output_dir: str | Path,
    epochs: int = 3,
    learning_rate: float = 5e-5,
    token_budget: int = 8192,
    max_length: int | None = None,
    seed: int = 0,
    device: str = "auto",
    grad_accumulation: int = 1,
    gradient_checkpointing: bool = False,
    bf16: bool | None = None,
    lora_rank: int = 0,
    class_balance: bool = False,
    ensemble_heads: int = 5,
    progress: Callable[[int, int], None] | None = None,
    check: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune the PRM at ``init_from`` on ``examples`` and save it to ``output_dir``.

    Returns a JSON-ready summary. Nothing is written unless training finishes.
    ``progress(done, total)`` counts optimizer steps; ``check()`` is called before the first
    and after every micro-batch, and stops the training by raising (a cancelled job).

    For models of a billion parameters and more: ``grad_accumulation`` micro-batches per
    optimizer step (the loss is averaged over all their labeled steps, so k micro-batches equal
    one batch of their union), ``gradient_checkpointing`` (recompute activations in the
    backward pass), ``bf16`` autocast (default: on CUDA only; weights stay float32) and
    ``lora_rank`` > 0 for LoRA adapters on every linear layer, plus the step token's embedding
    row (needs ``peft``; merged into the weights before saving, so the checkpoint loads like any
    other). ``class_balance`` weights each class's loss by the inverse of its share of the
    labeled steps (mean weight 1), so the few negative steps are not drowned out.
    ``ensemble_heads`` > 1 trains that many step heads in all (``selector.ml.ensemble``: the
    PRM's own and K - 1 more, each on its own bootstrap draw of the examples), whose spread
    scoring reports as uncertainty; the backbone and the PRM's own head learn as with 1.
    """
    import torch

    from selector.ml.adapters import is_adapter_dir
    from selector.ml.devices import resolve_device

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if grad_accumulation < 1:
        raise ValueError(f"grad_accumulation must be at least 1, got {grad_accumulation}")
    if not 1 <= ensemble_heads <= 64:
        raise ValueError(f"ensemble_heads must be within 1..64, got {ensemble_heads}")
    if lora_rank < 0:
        raise ValueError(f"lora_rank must be 0 (off) or positive, got {lora_rank}")
    for i, ex in enumerate(examples):
        if len(ex.ratings) != len(ex.steps):
            raise ValueError(f"example {i}: {len(ex.ratings)} ratings for {len(ex.steps)} steps")
        for j, rating in enumerate(ex.ratings):
            rating_to_class(rating, where=f"example {i} step {j}")
    if is_adapter_dir(init_from):
        raise ValueError(
            f"{init_from} is an imported PRM scored through an adapter; fine-tuning one is not "
            "supported: train from a base model or a version trained here"
        )

    started = time.perf_counter()
    resolved = resolve_device(device)
    torch.manual_seed(seed)  # the head's init on a fresh PRM, and dropout
    rng = random.Random(seed)

    # Weights stay float32 (the optimizer's master copy); bf16 runs the math in autocast.
    model, tokenizer = load_prm(init_from, device=resolved, dtype=torch.float32)
    max_length = resolve_max_length(model.config, max_length)
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)

    targets = [training_targets(ex.ratings) for ex in examples]
    all_encoded = encode_many(
        tokenizer,
        items=[(ex.problem, ex.steps) for ex in examples],
        step_labels=targets,
        max_length=max_length,
    )
    dropped_rated, errors = _rated_steps_dropped(examples, targets, all_encoded)
    rows: list[Window] = []
    row_example: list[int] = []  # the example each row comes from (its bootstrap unit)
    used_examples = 0
    for i, enc in enumerate(all_encoded):
        labeled = [w for w in enc.windows if any(lab != IGNORE_INDEX for lab in w.labels)]
        rows.extend(labeled)
        row_example.extend([i] * len(labeled))
        used_examples += bool(labeled)
    label_counts = dict.fromkeys(ID2LABEL.values(), 0)
    for w in rows:
        for lab in w.labels:
            if lab != IGNORE_INDEX:
                label_counts[ID2LABEL[lab]] += 1
    labeled_steps = sum(label_counts.values())
    if not rows:
        raise ValueError(
            f"none of the {len(examples)} examples has a rated step within max_length"
            + (f" ({errors[0]})" if errors else "")
        )

    weight = None
    if class_balance:
        balanced = class_weights_balanced([label_counts[ID2LABEL[c]] for c in sorted(ID2LABEL)])
        weight = torch.tensor(balanced, dtype=torch.float32, device=resolved)

    # Each epoch's batches are planned when the epoch starts, never all up front: the plan of
    # one epoch is as long as the data, and a thousand of them held at once grow without bound
    # before the first progress or cancel check. Consecutive micro-batches of an epoch share
    # one optimizer step.
    def epoch_groups() -> list[list[list[int]]]:
        plan = _length_bucketed_batches(rows, token_budget=token_budget, rng=rng)
        return [plan[k : k + grad_accumulation] for k in range(0, len(plan), grad_accumulation)]

    groups = epoch_groups()
    # The schedule's length: epochs x this epoch's steps. Another epoch may pack a batch more or
    # less; the figure is corrected as the epochs come (the decay then ends a little early or
    # late, never below zero).
    schedule = {"total": epochs * len(groups)}
    warmup = math.ceil(WARMUP_FRACTION * schedule["total"])

    ensemble = None
    if ensemble_heads > 1:
        from selector.ml.ensemble import bootstrap_weights, step_heads_init, step_heads_load

        kept = step_heads_load(init_from)  # a warm start goes on with its heads
        heads = (
            kept
            if kept is not None and kept.extra == ensemble_heads - 1
            else step_heads_init(model, ensemble_heads - 1, seed=seed)
        )
        draws = bootstrap_weights(ensemble_heads - 1, len(examples), seed=seed)
    if lora_rank:
        model = _apply_lora(model, lora_rank, step_id=step_token_id(tokenizer))
    if ensemble_heads > 1:
        # Hooked after LoRA: it wraps the head, and the wrapper is what runs.
        ensemble = _Ensemble(model, heads.to(resolved).train(), draws[:, row_example].to(resolved))
    if gradient_checkpointing:
        _checkpointing(model, on=True)

    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            # Biases and norm weights are not regularised (standard BERT/AdamW practice).
            (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    trainable = sum(p.numel() for p in decay + no_decay)
    groups_of_params = [
        {"params": decay, "weight_decay": WEIGHT_DECAY},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if ensemble is not None:
        # Groups of their own: AdamW updates each parameter alone, so the PRM's own weights
        # move exactly as without the extra heads.
        groups_of_params += [
            {"params": [ensemble.heads.weight], "weight_decay": WEIGHT_DECAY},
            {"params": [ensemble.heads.bias], "weight_decay": 0.0},
        ]
    optimizer = torch.optim.AdamW(groups_of_params, lr=learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _lr_factor(s, warmup=warmup, total=schedule["total"])
    )
    on_cuda = resolved.startswith("cuda")
    use_bf16 = on_cuda if bf16 is None else bf16
    autocast = torch.autocast(resolved.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16)

    model.train()
    epoch_losses: list[float] = []
    step = 0
    batch: list[int] = []
    if check is not None:
        check()
    try:
        for epoch in range(epochs):
            if epoch:
                groups = epoch_groups()
                schedule["total"] = step + (epochs - epoch) * len(groups)
            loss_sum, loss_count = 0.0, 0
            for group in groups:
                optimizer.zero_grad(set_to_none=True)
                for micro, (group_loss, group_count) in _backward_group(
                    model,
                    rows,
                    group,
                    pad_id=pad_id,
                    device=resolved,
                    autocast=autocast,
                    weight=weight,
                    ensemble=ensemble,
                ):
                    batch = micro  # named in an out-of-memory error
                    loss_sum += group_loss
                    loss_count += group_count
                    if check is not None:
                        # However many micro-batches make one optimizer step, a cancel is
                        # noticed within one of them.
                        check()
                torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
                if ensemble is not None:
                    torch.nn.utils.clip_grad_norm_(ensemble.heads.parameters(), MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
                step += 1
                if progress is not None:
                    progress(step, schedule["total"])
            epoch_losses.append(loss_sum / max(1, loss_count))
    except torch.cuda.OutOfMemoryError as exc:
        width = max((len(rows[i].input_ids) for i in batch), default=0)
        raise TrainingOutOfMemory(
            f"out of {resolved} memory at optimizer step {step + 1} of {schedule['total']}, "
            f"on a batch of {len(batch)} rows x {width} tokens (token_budget={token_budget}). "
            "Lower the training token budget (raise grad_accumulation to keep the effective "
            "batch), turn on gradient checkpointing, or train LoRA adapters (lora_rank)."
        ) from exc

    if gradient_checkpointing:
        _checkpointing(model, on=False)
    if lora_rank:
        model = model.merge_and_unload()
    model.eval()
    extra_heads = None
    if ensemble is not None:
        from selector.ml.ensemble import step_heads_save

        ensemble.head_input.close()
        extra_heads = ensemble.heads.eval()
    save_pretrained_atomically(
        model,
        tokenizer,
        output_dir,
        extra=None if extra_heads is None else partial(step_heads_save, extra_heads),
    )
    return {
        "examples": used_examples,
        "skipped_examples": len(examples) - used_examples,
        "windows": len(rows),
        "labeled_steps": labeled_steps,
        "label_counts": label_counts,
        "truncated_steps": sum(e.truncated_steps for e in all_encoded),
        "dropped_rated_steps": dropped_rated,
        "errors": errors[:MAX_REPORTED_ERRORS],
        "epoch_loss": epoch_losses,
        "optimizer_steps": step,
        "seconds": round(time.perf_counter() - started, 3),
        "epochs": epochs,
        "learning_rate": learning_rate,
        "token_budget": token_budget,
        "max_length": max_length,
        "grad_accumulation": grad_accumulation,
        "gradient_checkpointing": gradient_checkpointing,
        "bf16": use_bf16,
        "lora_rank": lora_rank,
        "class_balance": class_balance,
        "trainable_params": trainable,
        "ensemble_heads": ensemble_heads,
        "ensemble_params": 0
        if ensemble is None
        else ensemble.heads.weight.numel() + ensemble.heads.bias.numel(),
        "seed": seed,
        "device": resolved,
        "init_from": str(init_from),
    }
