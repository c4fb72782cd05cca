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
