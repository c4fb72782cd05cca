"""Tiny models built on the spot (no downloads): a byte-level BPE tokenizer trained on
synthetic math lines, small Qwen2 and Llama decoders from configs, and PRMs made from them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def synthetic_lines(n: int = 400, seed: int = 0) -> Iterator[str]:
    rng = random.Random(seed)
    words = ["Let", "so", "then", "hence", "we", "get", "the", "answer", "is", "x", "y", "solve"]
    for _ in range(n):
        a, b = rng.randint(0, 99), rng.randint(1, 99)
        yield rng.choice(
            [
                f"What is {a} + {b}?",
                f"{a} + {b} = {a + b}.",
                f"{a} \\times {b} = {a * b}",
                f"\\frac{{{a}}}{{{b}}} simplifies.",
                f"# Answer\n\n{a + b}",
                " ".join(rng.choices(words, k=6)) + f" {a}.",
                f"This step is WRONG ??? {a}",
            ]
        )


def _train_tokenizer(*, bos: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<s>"] if bos else ["<|endoftext|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(synthetic_lines(), trainer=trainer)
    if bos:
        # Llama-style: a BOS in front of every text, which encode() must find and keep.
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="<|endoftext|>"
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _save_decoder(path: Path, *, kind: str) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tokenizer = _train_tokenizer(bos=kind == "llama")
    common: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if kind == "qwen2":
        model: Any = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=True))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common, bos_token_id=tokenizer.bos_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen2_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_decoder(tmp_path_factory.mktemp("qwen2-base"), kind="qwen2")


@pytest.fixture(scope="session")
def tiny_llama_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save_decoder(tmp_path_factory.mktemp("llama-base"), kind="llama")


@pytest.fixture(scope="session")
def tiny_prm(tiny_qwen2_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh (untrained head) PRM on the tiny Qwen2; read-only for tests."""
    from selector.ml.prm import prm_init

    out = tmp_path_factory.mktemp("qwen2-prm") / "prm"
    prm_init(base_model=str(tiny_qwen2_base), output_dir=out)
    return out


@pytest.fixture(scope="session")
def minilm_prm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh PRM on the packaged all-MiniLM-L6-v2 (BERT encoder)."""
    from selector.ml.prm import default_base_model, prm_init

    out = tmp_path_factory.mktemp("minilm-prm") / "prm"
    prm_init(base_model=default_base_model(), output_dir=out)
    return out
