import pytest
from django.core.management import CommandError, call_command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arms", "uniform,bogus"], "unknown arm"),
        (["--seeds", "0"], "seeds and rounds must be at least 1"),
        (["--pool", "/nonexistent.jsonl"], "no such file"),
        (["--labels-per-round", "0"], "--labels-per-round must be at least 1"),
        (["--held-out-fraction", "1"], "--held-out-fraction must be between 0 and 1"),
        (["--ensemble-heads", "0"], "--ensemble-heads must be within 1..64"),
        (["--arms", "uniform,mixed", "--ensemble-heads", "1"], "mixed rank by the spread"),
    ],
)
def test_bad_options_fail_before_anything_runs(tmp_path, args, message):
    out = tmp_path / "out"
    with pytest.raises(CommandError, match=message):
        call_command("simulate_active_learning", "--preset", "test", "--out", str(out), *args)
    assert not (out / "report.json").exists()


def test_out_is_required():
    with pytest.raises(CommandError, match="--out"):
        call_command("simulate_active_learning", "--preset", "test")
