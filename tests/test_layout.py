"""The import rules of docs/architecture.md: the core stays free of controller, cluster and
torch code; the controller stays pure; the trainer and the core share only the contract, which
depends on nothing but pydantic."""

from __future__ import annotations

import ast
import sys
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


def test_trainer_imports_nothing_of_ours_but_the_contract() -> None:
    found = imported_roots(ROOT / "trainer-image" / "stagescreen_trainer")
    assert {"stagescreen", "stagescreen_operator"} & found.keys() == set()
    assert "stagescreen_contract" in found


def test_the_contract_imports_only_the_standard_library_and_pydantic() -> None:
    """Both images install it: it must not pull in the core, the trainer or their stacks."""
    found = imported_roots(ROOT / "contract" / "stagescreen_contract")
    ours = {"stagescreen_contract", "__future__"}
    outside = set(found) - ours - set(sys.stdlib_module_names) - {"pydantic"}
    assert outside == set(), {name: found[name] for name in outside}


def test_the_controller_is_pure() -> None:
    """decide() gets everything it knows from its arguments: no store, clock, process or API."""
    tree = ast.parse((ROOT / "operator" / "stagescreen_operator" / "controller.py").read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    impure = {"time", "datetime", "subprocess", "kopf", "kubernetes", "boto3", "stagescreen.store"}
    assert {m for m in modules if m in impure or m.split(".")[0] in impure} == set()


def test_the_local_executor_knows_nothing_of_kubernetes() -> None:
    found = imported_roots(ROOT / "operator" / "stagescreen_operator" / "local")
    assert {"kopf", "kubernetes"} & found.keys() == set()


def test_planning_analysis_and_reports_do_not_import_a_storage_backend() -> None:
    """Key layout lives in stagescreen.keys; only stagescreen.store imports boto3."""
    import subprocess
    import sys

    modules = (
        "stages, outcome, status, report, figures, formatting, outcome_sections, publish, power, "
        "synthetic, effects, spec, keys"
    )
    code = (
        f"import sys; from stagescreen import {modules}; "
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
