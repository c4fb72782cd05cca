"""bench/gpu_check.py runs end to end on CPU at a tiny shape and prints every field."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FIELDS = (
    "model",
    "device",
    "dtype",
    "params",
    "score_tokens_per_s",
    "score_tflops",
    "score_mfu",
    "train_step_s",
    "train_tokens_per_s",
    "train_tflops",
    "train_mfu",
    "train_peak_mem_mb",
)


def test_gpu_check_tiny_prints_throughput_mfu_and_training_step_fields():
    # A CPU has no known peak: --peak-tflops gives one, so the MFU fields are computed too.
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--tiny", "--peak-tflops", "0.01"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("gpu_check ")]
    assert len(lines) == 1
    fields = dict(item.split("=", 1) for item in lines[0].split()[1:])
    assert set(FIELDS) <= set(fields)
    assert (fields["model"], fields["device"], fields["dtype"]) == ("tiny", "cpu", "float32")
    assert int(fields["params"]) > 0
    assert int(fields["score_tokens_per_s"]) > 0 and int(fields["train_tokens_per_s"]) > 0
    assert float(fields["train_step_s"]) > 0 and int(fields["train_peak_mem_mb"]) > 0
    for kind in ("score", "train"):
        tflops, mfu = float(fields[f"{kind}_tflops"]), fields[f"{kind}_mfu"]
        assert tflops > 0 and mfu.endswith("%")
        assert abs(float(mfu.rstrip("%")) - 100 * tflops / 0.01) <= 0.05 + 1e-3 * 100 * tflops
