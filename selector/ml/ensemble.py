"""An ensemble of step heads over one PRM backbone, and the uncertainty it measures (no Django).

A PRM's own head (``classifier`` or ``score``) is head 0. A version trained with
``ensemble_heads=K`` carries K - 1 more linear heads of the same shape, saved beside the model
as ``STEP_HEADS_FILE``. They read exactly what the PRM's head reads (a forward hook captures its
input), so scoring costs the backbone's pass plus K - 1 tiny matrix products at the step-end
positions. Each extra head starts from its own seed and learns from its own bootstrap draw of the
labeled solutions. They learn from the backbone's features *detached*: the backbone and head 0
are trained exactly as without an ensemble (the same seed gives the same weights), so adding
heads changes what the PRM knows about its uncertainty, not what it learns. Training them with
the backbone (as ActPRM does) was tried and measured worse (decision 0017).

Per step, with ``p_k`` each head's P(good) and ``H`` the binary entropy in bits:

* ``p = mean_k p_k``, the step score every rule reads;
* ``aleatoric = mean_k H(p_k)``: how unsure the heads are, each on its own;
* ``epistemic = H(p) - aleatoric``: how much they disagree (the mutual information between the
  prediction and the choice of head). It is zero when every head says the same, and grows with
  their spread;
* their sum is ``H(p)``, the step's total uncertainty.

A solution's uncertainty is the largest step uncertainty up to and including its first
predicted error (the first step with ``p < 0.5``): a labeler stops there, so what comes after
would buy no label. See docs/decisions/0017-uncertainty-rule.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

STEP_HEADS_FILE = "step_heads.safetensors"
FORMAT = "stepwise-step-heads"
ERROR_THRESHOLD = 0.5  # a step with p below this is a predicted error
_HEAD_NAMES = ("classifier", "score")  # BERT-style and decoder-style token heads
_EPS = 1e-6


class StepHeads(torch.nn.Module):
    """``extra`` linear heads (in_features -> num_labels), applied as one batched product."""

    def __init__(self, extra: int, in_features: int, num_labels: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(extra, num_labels, in_features))
        self.bias = torch.nn.Parameter(torch.zeros(extra, num_labels))

    @property
    def extra(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(positions, in_features) -> logits (extra, positions, num_labels)."""
        x = features.to(self.weight.dtype)
        return torch.einsum("nd,ecd->enc", x, self.weight) + self.bias[:, None, :]


def head_module(model: Any) -> torch.nn.Module:
    """The PRM's own step head: the outermost module named ``classifier`` or ``score`` (a LoRA
    wrapper around it included)."""
    for name in _HEAD_NAMES:
        found = [(n, m) for n, m in model.named_modules() if n.split(".")[-1] == name]
        if found:
            return min(found, key=lambda item: item[0].count("."))[1]
    raise ValueError(f"{type(model).__name__} has no step head named one of {_HEAD_NAMES}")


class HeadInput:
    """Keeps the last input of the PRM's head (what the extra heads read) while open."""

    def __init__(self, model: Any) -> None:
        self.value: torch.Tensor | None = None
        self._handle = head_module(model).register_forward_hook(self._hook)

    def _hook(self, _module: Any, args: tuple[Any, ...], _output: Any) -> None:
        self.value = args[0]

    def close(self) -> None:
        self._handle.remove()


def step_heads_init(model: Any, extra: int, *, seed: int) -> StepHeads:
    """``extra`` fresh heads shaped like the PRM's head, each from its own seed; the global RNG
    is left as it was. A model may define ``init_step_head(linear)`` (the surprise PRM starts
    the weights of its surprise inputs at zero); otherwise weights ~ N(0, initializer_range)."""
    if extra < 1:
        raise ValueError(f"extra heads must be at least 1, got {extra}")
    num_labels, in_features = (int(d) for d in head_module(model).weight.shape)  # type: ignore[union-attr]
    heads = StepHeads(extra, in_features, num_labels)
    std = float(getattr(model.config, "initializer_range", 0.02))
    init = getattr(model, "init_step_head", None)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for k in range(extra):
            torch.manual_seed(seed * 7919 + 101 * (k + 1))
            linear = torch.nn.Linear(in_features, num_labels)
            if init is not None:
                init(linear)
            else:
                linear.weight.normal_(0.0, std)
                linear.bias.zero_()
            heads.weight[k] = linear.weight
            heads.bias[k] = linear.bias
    return heads


def bootstrap_weights(extra: int, examples: int, *, seed: int) -> torch.Tensor:
    """(extra, examples) counts ~ Poisson(1): each extra head's bootstrap draw of the labeled
    solutions, from a generator of its own (the global RNG, hence dropout, is untouched)."""
    generator = torch.Generator().manual_seed(seed * 7919 + 17)
    return torch.poisson(torch.ones(extra, examples), generator=generator)


def step_heads_loss(
    heads: StepHeads,
    features: torch.Tensor,
    labels: torch.Tensor,
    row_weights: torch.Tensor,
    *,
    ignore_index: int,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Summed cross-entropy of every extra head at the labeled positions of one batch.

    ``features`` (rows, length, in_features) is the PRM head's input, read detached; ``labels``
    (rows, length); ``row_weights`` (extra, rows) each head's bootstrap count for each row's
    solution."""
    labeled = labels != ignore_index
    rows = labeled.nonzero()[:, 0]
    x = features[labeled].detach().float()
    logits = heads(x)  # (extra, positions, classes)
    target = labels[labeled].repeat(heads.extra)
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target, weight=class_weight, reduction="none"
    ).view(heads.extra, -1)
    return (loss * row_weights[:, rows].to(loss.device)).sum()


def step_heads_save(heads: StepHeads, directory: str | Path) -> None:
    from safetensors.torch import save_file

    tensors = {"weight": heads.weight.detach().float().cpu(), "bias": heads.bias.detach().cpu()}
    save_file(
        {k: v.float().contiguous() for k, v in tensors.items()},
        str(Path(directory) / STEP_HEADS_FILE),
        metadata={"format": FORMAT, "extra": str(heads.extra)},
    )


def step_heads_load(directory: str | Path) -> StepHeads | None:
    """The extra heads saved with a checkpoint, or None for a PRM without an ensemble."""
    from safetensors import safe_open

    path = Path(directory) / STEP_HEADS_FILE
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("format") != FORMAT:
            raise ValueError(f"{path} is not a file of step heads written by Stepwise")
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    heads = StepHeads(*(int(d) for d in (weight.shape[0], weight.shape[2], weight.shape[1])))
    with torch.no_grad():
        heads.weight.copy_(weight)
        heads.bias.copy_(bias)
    return heads.eval()


def binary_entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) in bits; 0 at p = 0 or 1 (to within float precision), 1 at p = 0.5."""
    q = p.double().clamp(_EPS, 1.0 - _EPS)
    return -(q * torch.log2(q) + (1.0 - q) * torch.log2(1.0 - q))


def ensemble_stats(good: torch.Tensor) -> torch.Tensor:
    """(heads, positions) P(good) -> (positions, 3): [p, epistemic, aleatoric] per position."""
    p = good.double().mean(dim=0)
    aleatoric = binary_entropy(good).mean(dim=0)
    epistemic = (binary_entropy(p) - aleatoric).clamp(min=0.0)
    return torch.stack([p, epistemic, aleatoric], dim=-1).float()


def solution_uncertainty(
    step_scores: Sequence[float], epistemic: Sequence[float], aleatoric: Sequence[float]
) -> float:
    """The largest step uncertainty (epistemic + aleatoric) up to and including the first step
    predicted wrong; 0.0 for a solution without a scored step."""
    worst = 0.0
    for p, e, a in zip(step_scores, epistemic, aleatoric, strict=True):
        worst = max(worst, e + a)
        if p < ERROR_THRESHOLD:
            break
    return float(min(1.0, max(0.0, worst))) if math.isfinite(worst) else 1.0
