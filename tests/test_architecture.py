"""DESIGN.md's one-way streets, checked on the source: a new import cannot quietly break them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parent.parent / "src" / "plugstream"

# part -> the plugstream parts it may import (besides itself and the package root)
ALLOWED: dict[str, set[str]] = {
    "ocpp": set(),
    "net": set(),
    "pki": set(),
    "station": {"ocpp", "net", "pki"},
    "cloud": {"ocpp", "pki"},
    "netcheck": {"net", "pki"},
    # the lab runs the station and the cloud only as processes (`plugstream ...`)
    "lab": {"net", "netcheck", "pki"},
}


def _imports(path: Path) -> set[str]:
    """The plugstream parts a module imports (``plugstream.X...`` → ``X``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "plugstream" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_a_part_imports_only_what_design_allows(part: str) -> None:
    wrong = {
        str(path.relative_to(SRC)): sorted(
            (_imports(path) - ALLOWED[part] - {part}) & (set(ALLOWED) | {"cli", "demo"})
        )
        for path in (SRC / part).rglob("*.py")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_station_and_cloud_meet_only_on_the_wire() -> None:
    assert "cloud" not in ALLOWED["station"] and "station" not in ALLOWED["cloud"]
    for path in (SRC / "station").rglob("*.py"):
        assert "cloud" not in _imports(path), path
    for path in (SRC / "cloud").rglob("*.py"):
        assert "station" not in _imports(path), path


# --- the module graph inside one part ---------------------------------------------


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in SRC.rglob("*.py")}


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = _package_of(module, path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(module: str, path: Path) -> set[str]:
    """Every plugstream module this one imports, wherever the import stands: at the
    top, in a function, or under ``TYPE_CHECKING`` (a cycle there is a cycle too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def _cycles(part: str) -> list[list[str]]:
    """Strongly connected components (Tarjan) of more than one module, or a module
    importing itself, among the modules of ``part``."""
    graph = {
        m: {t for t in _targets(m, p) if _part(t) == part}
        for m, p in MODULES.items()
        if _part(m) == part
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


PARTS = sorted({_part(m) for m in MODULES if m.count(".") >= 2})


@pytest.mark.parametrize("part", PARTS)
def test_no_import_cycle_between_the_modules_of_a_part(part: str) -> None:
    assert _cycles(part) == []


def _private_uses(module: str, path: Path) -> list[str]:
    """``from x import _name`` and ``x._name`` on an imported module ``x``: another
    module's private names, which it may change without telling anyone."""
    tree = ast.parse(path.read_text(), str(path))
    uses: list[str] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _absolute(module, path, node)
            if not base.startswith("plugstream"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    aliases[alias.asname or alias.name] = sub
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    uses.append(f"{base}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("plugstream") and alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            uses.append(f"{aliases[node.value.id]}.{node.attr}")
    return sorted(set(uses))


def test_no_module_imports_the_private_names_of_another() -> None:
    found = {m: _private_uses(m, p) for m, p in MODULES.items()}
    assert {m: uses for m, uses in found.items() if uses} == {}
