# The replay trains a tiny model: the selector tests' settings and base model serve it too.
from tests.selector.conftest import selector_settings, tiny_base_model  # noqa: F401
