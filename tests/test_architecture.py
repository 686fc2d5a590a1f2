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
