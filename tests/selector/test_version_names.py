"""Short human names for versions (display only) and plot legends that follow promotion."""

from selector import plots
from selector.models import version_short_name


def test_default_timestamp_names_get_short_names_and_chosen_names_stay():
    assert version_short_name("v-20261203-101112-123456", 3) == "v3 · 2026-12-03"
    assert version_short_name("base-20261130-090000-000001", 1) == "base v1 · 2026-11-30"
    assert version_short_name("my-prm", 7) == "my-prm"
    assert version_short_name("v-20261203-101112-123456", None) == "v-20261203-101112-123456"


def test_the_compared_version_is_called_active_only_while_it_is():
    old = "v-20261201-101112-123456"
    metrics = {"version": "v-20261203-101112-123456", "compared_with": {"version": old}}
    metrics["compared_with"]["version_id"] = 2
    assert plots._compared_label(metrics, "v-20261201-101112-123456") == "v2 · 2026-12-01 (active)"
    # After the challenger's promotion the old version is no longer active.
    assert plots._compared_label(metrics, "v-20261203-101112-123456") == "v2 · 2026-12-01"
    assert plots._compared_label(metrics, None) == "v2 · 2026-12-01"
