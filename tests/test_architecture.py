"""Imports flow one way: every cnnlab import, function-local ones included, points down the layers below.

A module may import from its own package and from any package of a lower layer, never from one of its own
layer or above; an import made inside a function (to keep `--help`, `compare` or the run listing free of
torch, matplotlib or an optional extra) says so in a comment on (or just above) one of its function's local imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "cnnlab"
LAYERS = [
    {"errors"},
    {"files", "extras"},
    {"data", "models"},
    {"runfolder"},
    {"device", "distributed"},
    {"runs"},
    {"figures"},
    {"training"},
    {"inspect", "export", "experiments"},
    {"report", "web"},
    {"cli"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None  # None: the top-level `cnnlab` (its version, its public API)


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported cnnlab module, line, inside a function) for every import outside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING") for n in ast.walk(block)}  # fmt: skip
    local = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(fn)}  # fmt: skip
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cnnlab":
            # `from cnnlab.data import cache` imports the module cnnlab.data.cache
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            ]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "cnnlab"]
        found += [(name, node.lineno, id(node) in local) for name in names]
    return found


MODULES = _modules()


def test_every_package_has_a_layer():
    packages = {_package(m) for m in _modules()} - {None}
    assert packages <= set(RANK), f"give these a layer in LAYERS: {sorted(packages - set(RANK))}"


def test_imports_point_down():
    wrong = []
    for module, path in sorted(MODULES.items()):
        source = _package(module)
        if source is not None:
            wrong += _upward(module, source, path)
    assert not wrong, "imports that run back up:\n" + "\n".join(wrong)


def _upward(module: str, source: str, path: Path) -> list[str]:
    wrong = []
    for target, line, _ in _imports(path):
        package = _package(target)
        if package is None or package == source:
            continue
        if RANK[package] >= RANK[source]:
            wrong.append(
                f"{module} line {line}: {target} ({package}, layer {RANK[package]} >= {source}'s {RANK[source]})"
            )
    return wrong


def test_no_import_cycle_between_modules():
    """Module-level imports (those that run when a module loads) form no cycle."""
    modules = _modules()
    graph = {m: {t for t, _, local in _imports(p) if not local and t in modules and t != m} for m, p in modules.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in graph[module]:
            assert state.get(target) != 1, "import cycle: " + " -> ".join([*path, module, target])
            if target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_function_local_imports_say_why():
    unexplained = []
    for module, path in sorted(MODULES.items()):
        unexplained += [f"{module}: {where}" for where in _unexplained(path)]
    assert not unexplained, "function-local cnnlab imports without a comment saying why: " + ", ".join(unexplained)


def _unexplained(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    tree = ast.parse(path.read_text())
    unexplained = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        local = sorted(n.lineno for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))
                       and any(a for a in _imports_of(n)))  # fmt: skip
        if local and not any("#" in lines[line - 1] or lines[line - 2].strip().startswith("#") for line in local):
            unexplained.append(f"{fn.name} (line {local[0]})")
    return unexplained


def _imports_of(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return [node.module] if node.module and node.module.split(".")[0] == "cnnlab" else []
    return [a.name for a in node.names if a.name.split(".")[0] == "cnnlab"]
