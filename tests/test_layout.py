"""The import rules of DESIGN.md: the core stays free of controller, cluster and torch code."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {
    "kopf",
    "kubernetes",
    "subprocess",
    "torch",
    "stagescreen_operator",
    "stagescreen_trainer",
}


def imported_roots(package: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_core_imports_no_controller_cluster_or_torch() -> None:
    found = imported_roots(ROOT / "analysis" / "stagescreen")
    assert {name: found[name] for name in FORBIDDEN_IN_CORE & found.keys()} == {}


def test_trainer_imports_nothing_of_ours() -> None:
    found = imported_roots(ROOT / "trainer-image" / "stagescreen_trainer")
    assert {"stagescreen", "stagescreen_operator"} & found.keys() == set()
