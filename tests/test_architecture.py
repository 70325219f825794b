"""The package's two layers: the learner library ``lrlab`` and the tooling ``lrlab.course``, one-way imports.

The import graph is read from the source (ast), imports inside functions included, so a cycle hidden by a
late import is still a cycle. The start-up checks run ``lrlab --help`` and each ``lrlab COMMAND --help`` in a
fresh interpreter and look at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "utils" / "lrlab"
TOOLING = "lrlab.course"
#: Top-level packages the command line must not import to print its help: each takes seconds.
HEAVY = ("jupyter_client", "jupyter_core", "jupyter_server", "jupyterlab", "nbgrader", "nbformat", "nbclient",
         "nbconvert", "papermill", "zmq", "traitlets", "torch", "IPython", "ipykernel", "numpy", "matplotlib")


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports anywhere in its source (module level, functions, classes)."""
    modules = module_names()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = name.split(".") if is_package else name.split(".")[:-1]
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def is_tooling(module: str) -> bool:
    return module == TOOLING or module.startswith(TOOLING + ".") or module == "lrlab.__main__"


def test_the_graph_reader_sees_imports_inside_functions_and_relative_imports(tmp_path):
    graph = import_graph()
    assert "lrlab.course.grading.batch" in graph["lrlab.course.cli"]  # imported inside _cmd_grade only
    assert "lrlab.course.grading.sandbox" in graph["lrlab.course.grading.kernel"]  # `from pkg import module`
    assert "lrlab.device" in graph["lrlab"]  # the lazy __getattr__ of the package
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert found == [], "import cycles (imports inside functions counted): " + "; ".join(
        " <-> ".join(c) for c in found)


def test_the_tooling_is_in_no_import_cycle():
    found = [c for c in cycles(import_graph()) if any(is_tooling(m) for m in c)]
    assert found == [], found


def test_no_learner_module_imports_the_tooling():
    graph = import_graph()
    wrong = {m: sorted(t for t in targets if is_tooling(t)) for m, targets in graph.items() if not is_tooling(m)}
    assert {m: t for m, t in wrong.items() if t} == {}
    assert any(t.startswith("lrlab.") and not is_tooling(t) for t in graph["lrlab.course.run"])  # tooling -> library


def test_every_module_opens_with_a_docstring_saying_what_it_may_import():
    for name, path in module_names().items():
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
        assert doc, f"{name} has no module docstring"
        if is_tooling(name) and name != "lrlab.__main__":
            assert "Imports:" in doc or "imports" in doc.lower(), f"{name}'s docstring does not say what it imports"


_PROBE = """
import json, runpy, sys
sys.argv = ["lrlab", *json.loads(sys.argv[1])]
try:
    runpy.run_module("lrlab", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
else:
    code = None
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _commands() -> list[str]:
    from lrlab.course.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sorted(sub.choices)


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in _commands())], ids=" ".join)
def test_help_imports_no_jupyter_nbgrader_or_torch(args):
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    heavy = sorted({m.split(".")[0] for m in result["modules"] if m.split(".")[0] in HEAVY})
    assert heavy == [], f"lrlab {' '.join(args)} imports {heavy}"
    assert "usage: lrlab" in proc.stdout
