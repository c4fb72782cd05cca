"""scripts/ensure-chromium: what `make test` and CI run before the browser tests."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ensure-chromium"
INSTALL = "apt-get update -qq && apt-get install -y -qq chromium chromium-driver"


def run(chromium: Path, *, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [str(SCRIPT)]
    if as_nobody:
        # A non-root user, as on a developer's machine: the script must not try apt.
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    env = {**os.environ, "STEPWISE_CHROMIUM": str(chromium)}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_an_installed_chromium_passes_silently(tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    result = run(fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_a_missing_chromium_without_root_fails_with_the_command_to_run(tmp_path: Path) -> None:
    missing = tmp_path / "no-such" / "chromium"
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: cannot drop to a plain user")
        tmp_path.chmod(0o755)  # the unprivileged user must be able to look inside
        result = run(missing, as_nobody=True)
    else:
        result = run(missing)
    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert INSTALL in result.stderr


def test_make_test_and_ci_use_the_same_step() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "\tscripts/ensure-chromium\n" in makefile
    test_python = next(line for line in makefile.splitlines() if line.startswith("test-python:"))
    assert "chromium" in test_python.split(":", 1)[1].split()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "scripts/ensure-chromium" in ci
    assert "apt-get install" not in ci  # one copy of the install step, in the script
