"""The layers of docs/architecture.md, enforced: imports run down only, and never in a circle.

Every ``.py`` file of the project's packages is parsed (not imported), and every import in it
counts: at the top, inside a function (a lazy import is still an import), under
``TYPE_CHECKING``. Dotted names in strings (``INSTALLED_APPS``, URL ``include``s, the jobs
registry's task names and hook paths) are configuration, not imports, and are not read.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Bottom first. A module may import its own layer's app and the layers below it; an app in
# the same layer is sideways, and refused like an app above.
LAYERS: list[set[str]] = [{"stepwise"}, {"jobs"}, {"labeling"}, {"selector"}, {"demo"}]
APPS = set().union(*LAYERS)
LAYER_OF = {app: i for i, layer in enumerate(LAYERS) for app in layer}
# selector.ml is plain PyTorch + transformers: nothing of Django, nor of the project above it.
PURE = "selector.ml"
DJANGO_WORLD = {"django", "rest_framework", "celery", "drf_spectacular", "axes"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module (or name) it imports, absolute
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files(root: Path) -> Iterator[Path]:
    for app in sorted(APPS):
        yield from sorted((root / app).rglob("*.py"))
    if (root / "manage.py").exists():
        yield root / "manage.py"


def imports_of(path: Path, root: Path) -> Iterator[Import]:
    module = module_name(path, root)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", node.lineno)


def all_imports(root: Path) -> list[Import]:
    return [imp for path in project_files(root) for imp in imports_of(path, root)]


def layer_violations(imports: list[Import]) -> list[str]:
    found = []
    for imp in imports:
        source_app, target_app = imp.module.split(".")[0], imp.target.split(".")[0]
        if imp.module == PURE or imp.module.startswith(PURE + "."):
            pure_ok = imp.target.startswith(PURE + ".") or (
                target_app not in APPS and target_app not in DJANGO_WORLD
            )
            if not pure_ok:
                found.append(f"{imp.module}:{imp.line} imports {imp.target} ({PURE} is pure)")
            continue
        if source_app not in APPS or target_app not in APPS or source_app == target_app:
            continue
        if LAYER_OF[target_app] >= LAYER_OF[source_app]:
            way = "up" if LAYER_OF[target_app] > LAYER_OF[source_app] else "sideways"
            found.append(f"{imp.module}:{imp.line} imports {imp.target} ({way})")
    return found


def module_graph(imports: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """Module → the project modules it imports. ``from a.b import c`` points at ``a.b.c`` when
    that is a module, else at ``a.b``. The package ``__init__``s Python runs on the way are
    not edges: a package re-exporting its modules would otherwise be "in a circle" with
    every one of them that imports a sibling."""
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for imp in imports:
        parts = imp.target.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        if parts and (target := ".".join(parts)) != imp.module:
            graph[imp.module].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return found


def project_modules(root: Path) -> set[str]:
    return {module_name(path, root) for path in project_files(root)}


# --- The project itself ------------------------------------------------------------------------


def test_the_project_is_read_whole():
    modules = project_modules(ROOT)
    # Enough files from every layer that a path mistake cannot make the tests below vacuous.
    for app in APPS:
        assert sum(m == app or m.startswith(app + ".") for m in modules) >= 5, app
    assert {"selector.ml.metrics", "labeling.services.imports.pipeline", "demo.seed"} <= modules
    assert len(all_imports(ROOT)) > 500


def test_no_import_runs_up_or_sideways_a_layer():
    assert layer_violations(all_imports(ROOT)) == []


def test_no_modules_import_each_other_in_a_circle():
    imports = all_imports(ROOT)
    assert circles(module_graph(imports, project_modules(ROOT))) == []


# --- The checker, on a made-up project: it does catch what it must ------------------------------


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_catches_lazy_relative_upward_sideways_and_impure_imports(
    tmp_path, monkeypatch
):
    # A second app in the top layer, to have a sideways import to catch.
    monkeypatch.setattr(sys.modules[__name__], "APPS", APPS | {"dashboard"})
    monkeypatch.setitem(LAYER_OF, "dashboard", LAYER_OF["demo"])
    write(
        tmp_path,
        {
            "stepwise/__init__.py": "",
            "stepwise/run.py": "def banner():\n    from demo.logins import LOGINS\n",
            "jobs/__init__.py": "",
            "labeling/__init__.py": "",
            "labeling/queries.py": "from selector.models import SolutionScore\n",
            "labeling/services/__init__.py": "",
            "labeling/services/queue.py": "from ..queries import x\nfrom jobs import models\n",
            "selector/__init__.py": "",
            "selector/models.py": "from labeling.models import Solution\n",
            "selector/ml/__init__.py": "",
            "selector/ml/prm.py": "import torch\nfrom django.conf import settings\n",
            "selector/ml/metrics.py": "import numpy\nfrom selector.ml import prm\n",
            "demo/__init__.py": "",
            "dashboard/__init__.py": "",
            "dashboard/views.py": "from demo.seed import demo_seed\nfrom selector import models\n",
        },
    )
    found = layer_violations(all_imports(tmp_path))
    assert found == [
        "dashboard.views:1 imports demo.seed.demo_seed (sideways)",
        "labeling.queries:1 imports selector.models.SolutionScore (up)",
        "selector.ml.prm:2 imports django.conf.settings (selector.ml is pure)",
        "stepwise.run:2 imports demo.logins.LOGINS (up)",
    ]
    # The relative import resolved inside labeling: no complaint, but a real edge.
    graph = module_graph(all_imports(tmp_path), project_modules(tmp_path))
    assert "labeling.queries" in graph["labeling.services.queue"]


def test_the_checker_finds_circles_also_through_lazy_imports(tmp_path):
    write(
        tmp_path,
        {
            "labeling/__init__.py": "",
            "labeling/a.py": "from labeling.b import f\n",
            "labeling/b.py": "def f():\n    from labeling import c\n",
            "labeling/c.py": "import labeling.a\n",
            "labeling/d.py": "from labeling.a import g\n",
            # A package that re-exports its modules is no circle with them.
            "labeling/pkg/__init__.py": "from labeling.pkg.one import x\n",
            "labeling/pkg/one.py": "from labeling.pkg.two import y\n",
            "labeling/pkg/two.py": "",
        },
    )
    graph = module_graph(all_imports(tmp_path), project_modules(tmp_path))
    assert circles(graph) == [["labeling.a", "labeling.b", "labeling.c"]]
