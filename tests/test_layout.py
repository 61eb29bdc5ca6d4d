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
    impure = {
        "time",
        "datetime",
        "subprocess",
        "kopf",
        "kubernetes",
        "boto3",
        "stagescreen.storage.store",
    }
    assert {m for m in modules if m in impure or m.split(".")[0] in impure} == set()


def test_the_local_executor_knows_nothing_of_kubernetes() -> None:
    found = imported_roots(ROOT / "operator" / "stagescreen_operator" / "local")
    assert {"kopf", "kubernetes"} & found.keys() == set()


def test_planning_analysis_and_reports_do_not_import_a_storage_backend() -> None:
    """Key layout lives in storage.keys; only storage.store imports boto3."""
    import subprocess
    import sys

    modules = (
        "planning.ids, planning.plans, planning.ranking, planning.planner, planning.cost, kinds, "
        "outcomes.analyse, outcomes.model, outcomes.manifest, outcomes.status, reports.report, "
        "reports.figures, reports.formatting, reports.sections, storage.publish, "
        "statistics.power, statistics.synthetic, statistics.coding, statistics.families, "
        "statistics.pooled, statistics.means, study.spec, storage.keys"
    )
    code = (
        f"import sys; import {', '.join('stagescreen.' + m for m in modules.split(', '))}; "
        "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


PACKAGES = {
    "stagescreen": ROOT / "analysis" / "stagescreen",
    "stagescreen_operator": ROOT / "operator" / "stagescreen_operator",
    "stagescreen_trainer": ROOT / "trainer-image" / "stagescreen_trainer",
    "stagescreen_contract": ROOT / "contract" / "stagescreen_contract",
}


def module_graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each one imports, wherever the import is written.

    An import inside a function counts: a lazy import is how a circle hides. Importing a
    submodule names the submodule, not the package around it.
    """
    modules: dict[str, Path] = {}
    for name, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [name, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in node.names:
                    targets.add(
                        f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    )
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circle() -> None:
    assert import_circles(module_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_circles(graph) == [["a", "b", "c"]]


def test_the_spec_model_imports_only_the_designs_the_bounds_and_kubernetes_rules() -> None:
    """The cross-section checks run in study.parse, so the model sits under nothing of ours
    but the designs it builds, the bounds on its sizes and Kubernetes' rules for its names
    and quantities (the last two import nothing of ours)."""
    graph = module_graph()
    assert graph["stagescreen.study.spec"] == {
        "stagescreen.design",
        "stagescreen.study.bounds",
        "stagescreen.study.kube_rules",
    }
    assert graph["stagescreen.study.bounds"] == set()
    assert graph["stagescreen.study.kube_rules"] == set()


DISPATCHERS = {
    "stagescreen.planning.planner",
    "stagescreen.planning.cost",
    "stagescreen.study.checks",
    "stagescreen.study.crd",
    "stagescreen.statistics.power",
    "stagescreen.outcomes.analyse",
    "stagescreen.outcomes.status",
    "stagescreen.reports.sections",
    "stagescreen.reports.report",
}


def test_only_the_dispatchers_ask_the_kinds() -> None:
    """Everything else a kind needs sits below it; a new caller of the kinds is a new
    dispatcher, named here and in docs/architecture.md."""
    graph = module_graph()
    askers = {
        module
        for module, targets in graph.items()
        if not module.startswith("stagescreen.kinds")
        and any(target.startswith("stagescreen.kinds") for target in targets)
    }
    assert askers == DISPATCHERS
