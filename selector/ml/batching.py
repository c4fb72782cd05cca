"""Token-budget batching shared by scoring and training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def padded_length(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def plan_batches(
    order: Sequence[int],
    lengths: Sequence[int],
    *,
    token_budget: int,
    pad_multiple: int = 1,
    max_rows: int | None = None,
) -> list[list[int]]:
    """Cut ``order`` (indices, longest first within each run) into consecutive batches whose
    padded size (rows x longest padded row) stays within ``token_budget``.

    A single sequence longer than the budget still gets a batch of its own: refusing it would
    make one long solution fail a whole pool.
    """
    if token_budget < 1:
        raise ValueError("token_budget must be positive")
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for idx in order:
        w = max(width, padded_length(max(lengths[idx], 1), pad_multiple))
        full = max_rows is not None and len(current) >= max_rows
        if current and (full or w * (len(current) + 1) > token_budget):
            batches.append(current)
            current, w = [], padded_length(max(lengths[idx], 1), pad_multiple)
        current.append(idx)
        width = w
    if current:
        batches.append(current)
    return batches


def collate(
    rows: Sequence[Sequence[int]],
    *,
    pad_id: int,
    pad_multiple: int = 1,
    labels: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Right-padded ``input_ids`` / ``attention_mask`` (and ``labels`` padded with -100).

    Right padding is correct for both encoders and causal decoders: real tokens never attend
    to padding, and with absolute or rotary positions every real token keeps its position.
    """
    import torch

    width = padded_length(max(len(r) for r in rows), pad_multiple)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    batch: dict[str, torch.Tensor] = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        lab = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, row in enumerate(labels):
            lab[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        batch["labels"] = lab
    return batch
