"""The package's shape, as docs/architecture.md draws it: imports flow one way between
relabscope's subpackages, imports inside functions are only the documented lazy ones, and
reading a run (the dashboard, notebooks, the CLI's --help) never loads torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "relabscope"

#: docs/architecture.md's layers, bottom first: a module may import (at module level) only
#: from a lower layer. Type-only imports (``if TYPE_CHECKING:``) are exempt: a method's
#: ``cfg`` is a TrainConfig although the config is built from the methods' settings.
LAYERS = [
    {"errors", "lazy", "deprecation"},
    {"diskspace"},
    {"atomic", "settings"},
    {"runlog", "models"},
    {"data", "methods"},
    {"config"},
    {"rundir"},
    {"training"},
    {"integrations"},
    {"analysis"},
    {"plot", "sweep", "examples", "demo"},
    {"report", "dashboard"},
    {"cli"},
    {"__main__"},
]
LAYER = {name: i for i, layer in enumerate(LAYERS) for name in layer}

#: The only imports allowed inside functions, and why each is deferred. Keys are the
#: imported module (a prefix matches its submodules).
LAZY = {
    "sklearn": "scikit-learn takes about a second to import and only noise detection and t-SNE need it",
    "umap": "umap-learn takes seconds to import (numba) and only UMAP maps need it",
    "captum": "only Grad-CAM needs captum",
    "timm": "an optional extra ([timm]): imported only when a timm backbone is asked for",
    "relabscope.analysis.gradcam": "Grad-CAM and images need torch; reading a log must not load it",
    "relabscope.runlog.writer": "the writer needs torch; reading a log must not load it",
    "relabscope.sweep.grid": "training a grid needs torch; reading a sweep must not load it",
    "relabscope.methods.base": "the Method classes need torch; the method registry must not load it",
    "relabscope.methods.center_loss": "as relabscope.methods.base",
    "relabscope.data.base": "the data classes need torch; the data-set registry must not load it",
}
#: The CLI loads each command's stack when that command runs: `relabscope train` needs
#: neither dash nor plotly, `relabscope serve` no torch, `--version` none of them.
CLI_LAZY = {"relabscope.training", "relabscope.analysis.summary", "relabscope.sweep", "relabscope.report",
            "relabscope.dashboard", "relabscope.demo"}
#: modules whose imports inside functions are the package facade's lazy exports
FACADES = {"__init__.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _node(module: str) -> str | None:
    """The subpackage or top-level module of ``relabscope.x.y`` (``x``); None for the package
    facade itself and the names it defines (``relabscope.__version__``)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "relabscope":
        return None
    return parts[1] if (ROOT / parts[1]).is_dir() or (ROOT / f"{parts[1]}.py").is_file() else None


def _module_level_imports(tree: ast.Module) -> list[str]:
    found = []
    for stmt in tree.body:
        if isinstance(stmt, ast.If) and "TYPE_CHECKING" in ast.unparse(stmt.test):
            continue
        for s in ast.walk(stmt) if isinstance(stmt, (ast.If, ast.Try)) else [stmt]:
            if isinstance(s, ast.ImportFrom) and s.module:
                found += [f"{s.module}.{a.name}" if s.module == "relabscope" else s.module for a in s.names]
            elif isinstance(s, ast.Import):
                found += [a.name for a in s.names]
    return found


def _function_imports(tree: ast.Module) -> list[tuple[int, str]]:
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for s in ast.walk(fn):
                if isinstance(s, ast.ImportFrom) and s.module:
                    found.append((s.lineno, s.module))
                elif isinstance(s, ast.Import):
                    found += [(s.lineno, a.name) for a in s.names]
    return found


SOURCES = sorted(ROOT.rglob("*.py"))


def test_every_subpackage_has_a_layer() -> None:
    nodes = {_node(_module_name(p)) or "__init__" for p in SOURCES} - {"__init__"}
    assert nodes <= set(LAYER), f"add {sorted(nodes - set(LAYER))} to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_flow_down_the_layers(path: Path) -> None:
    me = _node(_module_name(path))
    if me is None:  # the package facade: lazy re-exports only
        return
    upward = [m for m in _module_level_imports(ast.parse(path.read_text()))
              if (n := _node(m)) is not None and n != me and LAYER[n] >= LAYER[me]]
    assert not upward, f"{path.relative_to(ROOT)} ({me}, layer {LAYER[me]}) imports upward or sideways: {upward}"


def test_no_cycles_between_subpackages() -> None:
    """The graph itself, not only the layer numbers: a cycle fails even if LAYERS were edited to hide it."""
    edges: dict[str, set[str]] = {}
    for path in SOURCES:
        me = _node(_module_name(path))
        if me is None:
            continue
        for m in _module_level_imports(ast.parse(path.read_text())):
            n = _node(m)
            if n is not None and n != me:
                edges.setdefault(me, set()).add(n)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(n for n in edges if reaches(n, n, {n}))
    assert not cycles, f"import cycles through {cycles}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_inside_functions_are_only_the_documented_lazy_ones(path: Path) -> None:
    if path.name in FACADES and _node(_module_name(path)) is None:
        return
    me = _module_name(path)
    allowed = set(LAZY) | (CLI_LAZY if me == "relabscope.cli" else set())
    undocumented = [(line, m) for line, m in _function_imports(ast.parse(path.read_text()))
                    if not any(m == key or m.startswith(key + ".") for key in allowed)
                    and not (path.name in FACADES and m.startswith(me))]
    assert not undocumented, (f"{path.relative_to(ROOT)}: imports inside functions {undocumented}; import them at "
                              "module level, or add the module to LAZY with the reason it is deferred")


@pytest.mark.parametrize("module", ["relabscope.config", "relabscope.cli", "relabscope.analysis.run",
                                    "relabscope.sweep", "relabscope.report", "relabscope.dashboard"])
def test_the_read_side_does_not_load_torch(module: str) -> None:
    """Reading logs, the dashboard and `relabscope --help` stay free of torch's ~1.5 s and 250 MB."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing {module} loads torch"


FACADE_PACKAGES = ["relabscope", "relabscope.integrations", "relabscope.models", "relabscope.methods",
                   "relabscope.data", "relabscope.runlog", "relabscope.sweep", "relabscope.training"]


def test_every_facade_is_spelled_one_way() -> None:
    """A package that exports names lazily does it through ``relabscope.lazy`` (which the
    next tests read), never with a ``__getattr__`` of its own."""
    own = [str(p.relative_to(ROOT)) for p in SOURCES if p.name == "__init__.py"
           and any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in ast.parse(p.read_text()).body)]
    assert not own, f"module __getattr__ written by hand in {own}: use relabscope.lazy.lazy_exports"


@pytest.mark.parametrize("package", FACADE_PACKAGES)
def test_a_facade_imports_none_of_its_exports_until_asked(package: str) -> None:
    code = (f"import sys, importlib; importlib.import_module({package!r}); from relabscope.lazy import FACADES; "
            f"exports = FACADES[{package!r}]; print(sorted(set(exports.values()) & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"importing {package} imports {out.stdout.strip()}"


def test_every_facade_export_resolves() -> None:
    import importlib

    from relabscope.lazy import FACADES

    for package in FACADE_PACKAGES:
        importlib.import_module(package)
    assert set(FACADES) == set(FACADE_PACKAGES)
    for package, exports in FACADES.items():
        module = importlib.import_module(package)
        for name in exports:
            assert getattr(module, name) is not None, f"{package}.{name}"
            assert name in dir(module)
