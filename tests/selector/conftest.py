"""A tiny PRM base model (built from a config, no download) so ML paths run in seconds on CPU."""

from pathlib import Path

import pytest


def tiny_bert_dir(root: Path) -> Path:
    """A 2-layer, 32-wide BERT with the packaged MiniLM's tokenizer, saved as a local HF dir."""
    from selector.ml.prm import tiny_bert_write

    return tiny_bert_write(root / "tiny-bert", hidden_size=32)


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bert_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture
def selector_settings(settings, tiny_base_model: Path, tmp_path: Path):
    """Point the selector at the tiny model and a per-test checkpoint directory."""
    settings.SELECTOR_BASE_MODEL = str(tiny_base_model)
    settings.SELECTOR_CHECKPOINT_DIR = tmp_path / "selectors"
    settings.SELECTOR_DEVICE = "cpu"
    settings.SELECTOR_MAX_LENGTH = 128
    settings.SELECTOR_TOKEN_BUDGET = 4096
    return settings


@pytest.fixture
def ml_staff(db):
    """A staff user in the ML-staff group (the selector loop, read-only labeling data)."""
    from selector.services import selector_permissions_grant
    from tests.factories import UserFactory

    user = UserFactory(username="ml", is_staff=True)
    user.groups.add(selector_permissions_grant())
    return user


@pytest.fixture
def staff_client(client, ml_staff):
    client.force_login(ml_staff)
    return client


def tiny_generator_write(path: Path) -> Path:
    """A randomly initialised 2-layer Llama-style decoder with a 50-token BPE tokenizer trained
    here on PRM800K-shaped sums, "\\n\\n# Answer\\n\\n" one of its tokens: random samples reach
    an answer often enough (about a third of 48-token samples) to exercise the whole path.
    (Not Qwen2: transformers 5 loads any qwen2 directory with its own byte-level tokenizer
    class, which would ignore this one's.)"""
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = []
    for _ in range(300):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        corpus.append(f"We add {a} and {b}.\n\nSo the sum is {a + b}.\n\n# Answer\n\n{a + b}")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.decoder = decoders.Fuse()
    bpe.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=48, special_tokens=["<eos>", "<unk>"])
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<eos>", unk_token="<unk>", pad_token="<eos>"
    )
    tokenizer.add_tokens(["\n\n# Answer\n\n"])
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_generator_write(tmp_path_factory.mktemp("models") / "tiny-generator")


@pytest.fixture
def eval_set_ready(db):
    """A frozen evaluation set just big enough to evaluate against (the labels it names are
    never read by tests that only start jobs)."""
    from selector.models import EvalSet
    from selector.services.eval_set import EVAL_SET_MIN_LABELS, EVAL_SET_MIN_PROBLEMS

    return EvalSet.objects.create(
        label_ids=list(range(1, EVAL_SET_MIN_LABELS + 1)),
        problems=EVAL_SET_MIN_PROBLEMS,
        fraction=0.1,
        seed=0,
    )
