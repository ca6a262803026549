"""The shape of the code: no import cycles, a public contract apart from the engine,
plugins that use only the public contract, files and functions small enough to read."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdbench"
#: What plugin authors may import: the package itself and these modules. They import
#: nothing from the engine (the rest of the package).
PUBLIC = {"kdbench", "kdbench.api", "kdbench.budget", "kdbench.data", "kdbench.env", "kdbench.errors",
          "kdbench.fsutil", "kdbench.hookspecs", "kdbench.losses", "kdbench.outputs", "kdbench.taps",
          "kdbench.testing", "kdbench.student_zoo"}
#: Public modules that stand on the engine by design: the conformance kit runs real cells;
#: the student zoo trains a pair's pre-trained student body through the one loop.
PUBLIC_ON_ENGINE = {"kdbench.testing", "kdbench.student_zoo"}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, package: str = "kdbench") -> set[str]:
    """kdbench modules `path` imports at run time, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    here = _module(path) if path.is_relative_to(PACKAGE) else ""
    base = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join([*base.split(".")[: len(base.split(".")) - node.level + 1], *([mod] if mod else [])])
            if mod == package or mod.startswith(package + "."):
                subs = [f"{mod}.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").is_file()] \
                    if mod == package else []
                found.update(subs or [mod])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name == package or a.name.startswith(package + "."))
    return found - {here}


def _graph() -> dict[str, set[str]]:
    return {_module(f): imports_of(f) for f in sorted(PACKAGE.glob("*.py"))}


def find_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every import cycle, as 'a → b → a'."""
    cycles: list[str] = []
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(graph.get(node, set())):
            if nxt in stack:
                cycles.append(" → ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, stack + [nxt])
        done.add(node)

    for start in sorted(graph):
        visit(start, [start])
    return cycles


def test_no_import_cycle_in_kdbench():
    assert find_cycles(_graph()) == []


def test_the_cycle_check_sees_lazy_imports_and_cycles():
    assert "kdbench.scenarios" in imports_of(PACKAGE / "plan.py")  # imported inside plan()
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a → b → c → a"]


def test_the_public_contract_imports_nothing_from_the_engine():
    graph = _graph()
    leaks = {m: sorted(graph[m] - PUBLIC) for m in PUBLIC - PUBLIC_ON_ENGINE if graph[m] - PUBLIC}
    assert leaks == {}


def test_plugins_import_only_the_public_contract():
    leaks = {f.name: sorted(imports_of(f) - PUBLIC) for f in sorted((ROOT / "plugins").glob("*.py"))}
    assert {k: v for k, v in leaks.items() if v} == {}


def test_the_engine_names_no_built_in_method():
    names = ["student-only", "hinton", "fitnet", "ofa", "distilbert", "tinybert"]
    said = {f.name: [n for n in names if f'"{n}"' in f.read_text()] for f in PACKAGE.glob("*.py")}
    assert {k: v for k, v in said.items() if v} == {}


def test_runner_is_orchestration_only():
    assert len((PACKAGE / "runner.py").read_text().splitlines()) <= 300


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_no_function_over_60_lines(path):
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert long == []


def test_planning_a_run_imports_no_torch():
    code = ("import sys, kdbench.plan, kdbench.cli; "
            "sys.exit(sorted(m for m in ('torch', 'pandas') if m in sys.modules) != [])")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
