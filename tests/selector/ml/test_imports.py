"""The web process imports selector services, which import selector.ml lazily; even a direct
import of the ml modules must not pull in torch or transformers (seconds of start-up)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_importing_the_ml_modules_loads_neither_torch_nor_transformers():
    code = (
        "import sys\n"
        "import selector.ml, selector.ml.prm, selector.ml.scoring, selector.ml.training\n"
        "import selector.ml.metrics, selector.ml.devices, selector.ml.batching\n"
        "import selector.ml.adapters, selector.ml.generation\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
