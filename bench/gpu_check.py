"""GPU check: scoring throughput, model-FLOPs utilisation and a training step, at real shapes.

Builds randomly initialised token-classification decoders (the selector's PRM head: three
classes per token) from ``transformers.Qwen2Config`` with the shapes of Qwen2.5-0.5B and
Qwen2.5-1.5B. No weights and no download: FLOPs and memory do not depend on the values. For
each model it prints one line of ``key=value`` fields:

    gpu_check model=qwen2.5-0.5b device=cuda dtype=bfloat16 params=… score_tokens_per_s=…
      score_tflops=… score_mfu=… train_step_s=… train_tokens_per_s=… train_tflops=…
      train_mfu=… train_peak_mem_mb=…

FLOPs per token follow the usual dense-transformer count: forward 2·N + 4·L·d·T (N the
non-embedding parameters including the head, L layers, d = heads x head size, T the
sequence length, attention counted as if not causal); a training step is 3 times the forward.
MFU divides the achieved rate by the device's peak dense bf16 rate (a table of common
accelerators, or ``--peak-tflops``); ``n/a`` where neither gives one (a CPU). Scoring runs
under ``torch.inference_mode`` in bf16 on CUDA (fp32 on CPU); the training step is forward,
backward and an AdamW update with fp32 weights and bf16 autocast on CUDA. Goal: scoring
MFU >= 40% in bf16.

    .venv/bin/python bench/gpu_check.py                  # both real shapes, on CUDA if present
    .venv/bin/python bench/gpu_check.py --tiny           # a tiny shape on CPU (the test suite)
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from dataclasses import dataclass
from typing import Any

NUM_LABELS = 3  # selector.ml.prm.ID2LABEL: negative, neutral, positive


@dataclass(frozen=True)
class Shape:
    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int = 151_936


# The published configs of Qwen/Qwen2.5-0.5B and Qwen/Qwen2.5-1.5B (config.json).
SHAPES = {
    "qwen2.5-0.5b": Shape("qwen2.5-0.5b", 896, 4864, 24, 14, 2),
    "qwen2.5-1.5b": Shape("qwen2.5-1.5b", 1536, 8960, 28, 12, 2),
    "tiny": Shape("tiny", 64, 128, 2, 4, 2, vocab_size=1000),
}

# Peak dense bf16 TFLOP/s (no sparsity) by a substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {
    "H200": 989.0,  # GH200 too
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # SXM ("H100 80GB HBM3")
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}


def peak_tflops(device: str, override: float | None) -> float | None:
    if override:
        return override
    if device != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16_TFLOPS.items():  # the more specific key first
        if key in name:
            return value
    return None


def build(shape: Shape, *, device: str, dtype: Any) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    config = Qwen2Config(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=32_768,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        id2label={i: str(i) for i in range(NUM_LABELS)},
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model: Any = Qwen2ForTokenClassification(config)
    return model.to(device=device, dtype=dtype)


def non_embedding_params(model: Any) -> int:
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def forward_flops_per_token(model: Any, shape: Shape, seq_len: int) -> float:
    d_attn = shape.num_attention_heads * (shape.hidden_size // shape.num_attention_heads)
    return 2.0 * non_embedding_params(model) + 4.0 * shape.num_hidden_layers * d_attn * seq_len


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (KiB)


def timed(fn: Any, *, device: str, warmup: int, steps: int) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        fn()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def release(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def score_seconds(shape: Shape, args: argparse.Namespace, device: str, ids: Any) -> float:
    """Seconds per scoring forward (softmax over the three classes included)."""
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = build(shape, device=device, dtype=dtype).eval()
    if args.compile:
        # Fuses the elementwise kernels (norms, rotary, SiLU x up, residuals) that eager mode
        # runs one by one; the warm-up calls pay for the compilation.
        model = torch.compile(model)
    mask = torch.ones_like(ids)

    def score() -> None:
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask).logits.float().softmax(-1)

    return timed(score, device=device, warmup=args.warmup, steps=args.steps)


def train_seconds(
    shape: Shape, args: argparse.Namespace, device: str, ids: Any, labels: Any
) -> tuple[float, float]:
    """(seconds per training step, peak memory in MB during the steps)."""
    import torch

    model = build(shape, device=device, dtype=torch.float32).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    mask = torch.ones_like(ids)

    def train_step() -> None:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = timed(train_step, device=device, warmup=args.warmup, steps=args.steps)
    return seconds, peak_memory_mb(device)


def check(shape: Shape, args: argparse.Namespace, device: str) -> dict[str, Any]:
    import torch

    peak = peak_tflops(device, args.peak_tflops)
    tokens = args.batch * args.seq_len
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, shape.vocab_size, (args.batch, args.seq_len), generator=generator)
    labels = torch.randint(0, NUM_LABELS, (args.batch, args.seq_len), generator=generator)
    ids, labels = ids.to(device), labels.to(device)
    counted = build(shape, device="meta", dtype=torch.float32)  # shapes only, no memory
    flops_token = forward_flops_per_token(counted, shape, args.seq_len)
    params = sum(p.numel() for p in counted.parameters())
    del counted

    release(device)
    score_s = score_seconds(shape, args, device, ids)
    release(device)  # the scoring model is gone with its function's frame
    train_s, train_peak = train_seconds(shape, args, device, ids, labels)
    release(device)
    score_tflops = flops_token * tokens / score_s / 1e12
    train_tflops = 3 * flops_token * tokens / train_s / 1e12
    return {
        "model": shape.name,
        "device": device if device != "cuda" else f"cuda:{torch.cuda.get_device_name()}",
        "dtype": "bfloat16" if device == "cuda" else "float32",
        "params": params,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "score_tokens_per_s": round(tokens / score_s),
        "score_tflops": f"{score_tflops:.6g}",
        "score_mfu": f"{score_tflops / peak:.1%}" if peak else "n/a",
        "score_compiled": bool(args.compile),
        "train_step_s": round(train_s, 4),
        "train_tokens_per_s": round(tokens / train_s),
        "train_tflops": f"{train_tflops:.6g}",
        "train_mfu": f"{train_tflops / peak:.1%}" if peak else "n/a",
        "train_peak_mem_mb": round(train_peak),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny shape on CPU, in seconds")
    parser.add_argument("--model", choices=sorted(SHAPES), action="append")
    parser.add_argument("--device", default=None, help="cuda if available, else cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak")
    parser.add_argument("--compile", action="store_true", help="torch.compile the scoring model")
    args = parser.parse_args()

    import torch

    if args.tiny:
        models, device = args.model or ["tiny"], args.device or "cpu"
        defaults = {"batch": 2, "seq_len": 32, "steps": 2, "warmup": 1}
    else:
        models = args.model or ["qwen2.5-0.5b", "qwen2.5-1.5b"]
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        defaults = {"batch": 16, "seq_len": 1024, "steps": 10, "warmup": 3}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    for name in models:
        result = check(SHAPES[name], args, device)
        fields = (f"{key}={str(value).replace(' ', '_')}" for key, value in result.items())
        print("gpu_check " + " ".join(fields), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
