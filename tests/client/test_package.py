"""The client is its own package: it declares httpx alone, and imports nothing else outside
the standard library but tqdm (optional, for the bar) and itself."""

from __future__ import annotations

import ast
import sys
import tomllib

from tests.conftest import ROOT

CLIENT = ROOT / "client"
ALLOWED = {"httpx", "tqdm", "stepwise_client"}


def test_the_client_declares_only_httpx_and_tqdm_as_an_extra() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == ["httpx>=0.27"]
    assert project["optional-dependencies"] == {"progress": ["tqdm>=4.60"]}


def test_the_client_imports_only_the_standard_library_httpx_and_tqdm() -> None:
    found: set[str] = set()
    for path in CLIENT.rglob("*.py"):
        if "build" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    outside = found - set(sys.stdlib_module_names) - ALLOWED
    assert outside == set()
    assert {"httpx", "stepwise_client"} <= found
