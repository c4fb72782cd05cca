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


def obvious_examples(n: int, seed: int) -> list[Any]:
    """Training examples whose bad steps are obviously bad (they say so), rated phase-2
    style."""
    from selector.ml.training import TrainExample

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 60), rng.randint(1, 60)
        steps: list[str] = []
        ratings: list[int | None] = []
        for _ in range(rng.randint(2, 5)):
            if rng.random() < 0.3:
                steps.append(f"This step is WRONG ??? {a}")
                ratings.append(-1)
            else:
                steps.append(f"{a} + {b} = {a + b}.")
                ratings.append(rng.choice([1, 1, 0]))
        out.append(TrainExample(problem=f"What is {a} + {b}?", steps=steps, ratings=ratings))
    return out


def _train_tokenizer(*, bos: bool, extra_lines: tuple[str, ...] = ()) -> Any:
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
    tok.train_from_iterator([*synthetic_lines(), *extra_lines * 50], trainer=trainer)
    if bos:
        # Llama-style: a BOS in front of every text, which encode() must find and keep.
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token="<s>", eos_token="<|endoftext|>"
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _train_sentencepiece_tokenizer(*, extra_lines: tuple[str, ...] = ()) -> Any:
    """A SentencePiece-style BPE like Llama's and Mistral's: spaces become "▁" (Metaspace),
    a "▁" is put in front of every text tokenized on its own, newlines are their own
    tokens, a BOS starts each text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", behavior="isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator([*synthetic_lines(), *extra_lines * 50], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


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
    return fresh_prm(str(tiny_qwen2_base), tmp_path_factory.mktemp("qwen2-prm"))


@pytest.fixture(scope="session")
def minilm_prm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh PRM on the packaged all-MiniLM-L6-v2 (BERT encoder)."""
    from selector.ml.prm import default_base_model

    return fresh_prm(default_base_model(), tmp_path_factory.mktemp("minilm-prm"))


@pytest.fixture(scope="session")
def tiny_llama_prm(tiny_llama_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_prm(str(tiny_llama_base), tmp_path_factory.mktemp("llama-prm"))


# A minimal ChatML template, the shape of Qwen2.5's: system and user turns, then the assistant.
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_qwen_prm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised model in Qwen2.5-Math-PRM's layout: Qwen2 weights under
    ``model.``, a two-layer ``score`` head, ``<extra_0>`` as step separator, ChatML template,
    and the remote-code ``auto_map`` the real config carries (which must not be run)."""
    from safetensors.torch import save_file
    from transformers import Qwen2Config, Qwen2Model

    path = tmp_path_factory.mktemp("qwen-math-prm")
    torch.manual_seed(1)
    tokenizer = _train_tokenizer(bos=False)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<extra_0>", "<|im_start|>", "<|im_end|>"]}
    )
    tokenizer.chat_template = CHATML
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        architectures=["Qwen2ForProcessRewardModel"],
        auto_map={"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"},
    )
    base = Qwen2Model(config)
    head = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    tensors = {f"model.{k}": v.contiguous() for k, v in base.state_dict().items()}
    tensors |= {f"score.{k}": v.contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(path / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_shepherd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised causal LM in Math-Shepherd's layout (Mistral-style: BOS and a
    SentencePiece-style tokenizer that knows the step tag ``ки`` and ``+``/``-``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("math-shepherd")
    torch.manual_seed(2)
    # Frequent enough that BPE learns the tag and " -" as single tokens, as in the real one.
    tokenizer = _train_sentencepiece_tokenizer(extra_lines=("Step 1: 2 + 3 = 5. ки\n+ - + -",))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def qwen_prm_adapter(tiny_qwen_prm_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from selector.ml.adapters import QWEN_PRM, adapter_write

    out = tmp_path_factory.mktemp("qwen-prm-version")
    adapter_write(adapter=QWEN_PRM, model_path=tiny_qwen_prm_model, output_dir=out)
    return out


@pytest.fixture(scope="session")
def shepherd_adapter(tiny_shepherd_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from selector.ml.adapters import MATH_SHEPHERD, adapter_write

    out = tmp_path_factory.mktemp("shepherd-version")
    adapter_write(adapter=MATH_SHEPHERD, model_path=tiny_shepherd_model, output_dir=out)
    return out


# Every model family the selector supports, as a scorer checkpoint (fixture names).
FAMILIES = ["minilm_prm", "tiny_prm", "tiny_llama_prm", "qwen_prm_adapter", "shepherd_adapter"]


@pytest.fixture(scope="session")
def tiny_bert_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT with the packaged MiniLM's tokenizer: the default family, fast enough to
    train in a test."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from selector.ml.prm import default_base_model

    path = tmp_path_factory.mktemp("bert-base")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_base_model())
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_prm(tiny_bert_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fresh_prm(str(tiny_bert_base), tmp_path_factory.mktemp("bert-prm"))


def fresh_prm(base_model: str, root: Path) -> Path:
    """A fresh (untrained head) PRM on ``base_model`` under ``root``; read-only for tests."""
    from selector.ml.prm import prm_init

    out = root / "prm"
    prm_init(base_model=base_model, output_dir=out)
    return out


def small_digit_lm(
    tmp_path: Path, *, epochs: int, replace_rate: float = 0.15
) -> tuple[list[Any], Any, dict[str, Any]]:
    """A digit tokenizer and a 1-layer causal LM pretrained on 60 correct synthetic solutions,
    saved in ``tmp_path / "lm"``: (the texts, the tokenizer, the pretraining summary)."""
    from selector.ml.pretrain import digit_tokenizer_write, lm_pretrain
    from selector.simulation.pool import SYNTH_SMALL, synthetic_correct_solutions

    texts = synthetic_correct_solutions(problems=60, seed=0, params=SYNTH_SMALL)
    tokenizer = digit_tokenizer_write(tmp_path / "tok", [p + "\n" + "\n".join(s) for p, s in texts])
    summary = lm_pretrain(
        tokenizer=tokenizer,
        items=texts,
        output_dir=tmp_path / "lm",
        hidden_size=32,
        layers=1,
        heads=2,
        epochs=epochs,
        max_length=128,
        replace_rate=replace_rate,
    )
    return texts, tokenizer, summary
