"""Generation throughput: new tokens per second from a randomly initialised Llama-architecture
decoder at Qwen2.5-0.5B's dimensions (24 layers, hidden 896, 14 heads, 2 KV heads, vocabulary
151,936; ~0.5B parameters), with a
word-level tokenizer of that size built here, through ``selector.ml.generation`` (vLLM when
installed and on a GPU, transformers otherwise). Random weights rarely emit EOS, so nearly
every sequence runs to ``--max-new-tokens``: the figure is decoding speed at that length.

    .venv/bin/python bench/generation_bench.py [--device cuda] [--prompts 64 --n 8]  # GPU-sized
        [--max-new-tokens 256] [--backend auto|transformers|vllm] [--shape 0.5b|tiny]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = {
    "0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151_936,
    },
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 1024,
    },
}


def write_model(path: Path, shape: str) -> int:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dims = SHAPES[shape]
    vocab = {"<eos>": 0, "<unk>": 1} | {f"w{i}": i for i in range(2, dims["vocab_size"])}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>"
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        **dims,
        max_position_embeddings=32_768,
        tie_word_embeddings=True,
        eos_token_id=0,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="auto", choices=["auto", "transformers", "vllm"])
    parser.add_argument("--shape", default="0.5b", choices=sorted(SHAPES))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--sequences-per-call", type=int, default=256)
    args = parser.parse_args()

    from selector.ml.devices import resolve_device
    from selector.ml.generation import Sampling, sampler_load, samples_generate

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        params = write_model(Path(tmp), args.shape)
        sampler = sampler_load(tmp, device=device, backend=args.backend)
        prompts = [
            " ".join(f"w{2 + (i * 7 + j) % 997}" for j in range(64)) for i in range(args.prompts)
        ]
        sampling = Sampling(args.n, 1.0, args.max_new_tokens, seed=0)
        warm = Sampling(1, 1.0, 8, seed=0)
        sampler.sample(prompts[:1], warm)  # CUDA context, kernels, allocator
        sampler.generated_tokens = 0
        started = time.perf_counter()
        sequences = sum(
            len(s)
            for _, s in samples_generate(
                sampler, prompts, sampling, sequences_per_call=args.sequences_per_call
            )
        )
        seconds = time.perf_counter() - started
        tokens = sampler.generated_tokens
        sampler.close()
    print(
        f"{args.shape} decoder ({params / 1e6:.0f}M parameters), {sampler.backend} on {device}: "
        f"{sequences} sequences x up to {args.max_new_tokens} new tokens, "
        f"{args.sequences_per_call} sequences per call"
    )
    print(f"generated {tokens} tokens in {seconds:.1f} s: {tokens / seconds:,.0f} tokens/s")


if __name__ == "__main__":
    main()
