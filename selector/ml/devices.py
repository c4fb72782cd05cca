"""Where the selector runs and in what precision."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(setting: str) -> str:
    """Turn a device setting ("auto", "cpu", "cuda", "cuda:1") into a concrete torch device.

    "auto" picks CUDA when a GPU is visible. Asking for CUDA on a machine without one is an
    error rather than a silent CPU fallback: a job configured for the GPU queue should fail
    loudly instead of taking hours on the CPU.
    """
    import torch

    value = (setting or "auto").strip().lower()
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return "cpu"
    if value == "cuda" or value.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {setting!r} requested but CUDA is not available")
        return value
    raise ValueError(f"unknown device {setting!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def inference_dtype(device: str) -> torch.dtype:
    """bf16 on CUDA (tensor cores, no loss scaling needed); float32 on CPU, where bf16 GEMMs
    are slower than fp32 on most server CPUs without AMX."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def attn_implementation(device: str) -> str:
    # PyTorch's scaled_dot_product_attention picks flash/memory-efficient kernels on CUDA and
    # is no slower than the eager path on CPU, so it is used everywhere the model supports it.
    return "sdpa"
