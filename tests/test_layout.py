"""The package layout keeps data flowing one way: rules on which stage may import which (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "pbrsim"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every pbrsim module ``name`` imports, at the top or inside a function, resolved to a module name."""
    tree = ast.parse(path.read_text(), str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the submodule; the package itself only for names defined in it
            targets = [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] != "pbrsim":
                continue
            while t and t not in known:  # an attribute of a module: credit the module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def offences(graph, source_stage: str, allowed=None, forbidden=None) -> list[str]:
    out = []
    for mod, targets in graph.items():
        if stage(mod) != source_stage:
            continue
        for t in targets:
            s = stage(t)
            if s == source_stage:
                continue
            if (allowed is not None and s not in allowed) or (forbidden is not None and s in forbidden):
                out.append(f"{mod} imports {t}")
    return sorted(out)


def test_the_graph_sees_real_imports(graph):
    # the rules below are only as good as the parser: check it on imports known to exist
    assert "pbrsim.model.pathway" in graph["pbrsim.engine.run"]
    assert "pbrsim.scenario.schema" in graph["pbrsim.model.contract"]
    assert "pbrsim.report" in graph["pbrsim.cli.run"]  # a lazy import inside a function counts too


def test_scenario_imports_nothing_else_of_pbrsim(graph):
    assert offences(graph, "scenario", allowed=set()) == []


def test_model_imports_only_the_scenario(graph):
    assert offences(graph, "model", allowed={"scenario"}) == []


def test_engine_never_imports_later_stages(graph):
    assert offences(graph, "engine", forbidden={"analysis", "experiments", "stress", "library", "report", "cli"}) == []


def test_engine_never_imports_public_value(graph):
    assert offences(graph, "engine", forbidden={"value"}) == []


def test_public_value_uses_only_earlier_stages(graph):
    assert offences(graph, "value", allowed={"scenario", "model", "engine", "analysis"}) == []


def test_design_search_uses_only_earlier_stages(graph):
    # and the top-level API it runs designs through: pbrsim (the version), simulate.py, store.py
    allowed = {"scenario", "model", "engine", "analysis", "value", "experiments", "stress", "", "simulate", "store"}
    assert offences(graph, "design", allowed=allowed) == []


def test_nothing_before_the_design_search_imports_it(graph):
    earlier = {"scenario", "model", "engine", "analysis", "value", "experiments", "stress", "library"}
    bad = sorted(f"{m} imports {t}" for m, ts in graph.items() for t in ts if stage(t) == "design" and stage(m) in earlier)
    assert bad == []


def test_report_never_imports_the_cli(graph):
    assert offences(graph, "report", forbidden={"cli"}) == []


def test_only_main_imports_the_cli(graph):
    bad = sorted(f"{m} imports {t}" for m, ts in graph.items() for t in ts
                 if stage(t) == "cli" and stage(m) != "cli" and m != "pbrsim.__main__")
    assert bad == []


def test_no_import_circles(graph):
    """Depth-first search for a cycle among pbrsim modules (package __init__ files included)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {m: WHITE for m in graph}
    cycles = []

    def visit(m, path):
        colour[m] = GREY
        for t in sorted(graph[m]):
            if colour.get(t) == GREY:
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif colour.get(t) == WHITE:
                visit(t, path + [t])
        colour[m] = BLACK

    for m in sorted(graph):
        if colour[m] == WHITE:
            visit(m, [m])
    assert cycles == []


def test_at_most_five_modules_at_the_top():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 5, top


def test_nothing_imports_the_web_app_but_the_serve_command(graph):
    # the explorer sits beside cli/ at the end of the pipeline: it may use every stage, and only `pbrsim serve` starts it
    bad = sorted(f"{m} imports {t}" for m, ts in graph.items() for t in ts
                 if stage(t) == "web" and stage(m) != "web" and m != "pbrsim.cli.serve")
    assert bad == []
    assert "pbrsim.web.server" in graph["pbrsim.cli.serve"]


def test_the_web_app_never_imports_the_cli(graph):
    assert offences(graph, "web", forbidden={"cli"}) == []
