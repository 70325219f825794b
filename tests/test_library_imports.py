"""The learner library's import structure, read from the source with ast (imports inside functions count).

* no library module imports the course tooling (``lrlab.course`` and the grading modules);
* the library's imports form no cycle;
* every library module's docstring says which lrlab modules it may import, and it imports no others.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "utils" / "lrlab"
TOOLING = {"course", "grading", "sandbox", "feedback", "__main__"}
LIBRARY = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in TOOLING)


def _lrlab_imports(stem: str) -> set[str]:
    """Every lrlab module ``stem`` imports, at any depth of the file (``lrlab.x.y`` counts as ``x``)."""
    tree = ast.parse((PACKAGE / f"{stem}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lrlab":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("lrlab."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add((node.module or "").split(".")[0] or next(a.name for a in node.names))
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("lrlab.")}
    return found


def _declared(stem: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((PACKAGE / f"{stem}.py").read_text())) or ""
    lines = [line for line in doc.splitlines() if line.startswith("imports:")]
    if not lines:
        assert "imports nothing from lrlab" in doc, f"lrlab.{stem}: the docstring does not say what it imports"
        return set()
    text = re.sub(r"\([^)]*\)", "", lines[0][len("imports:"):]).strip().rstrip(".")
    if text.startswith("nothing"):
        return set()
    return {name.strip() for name in text.split(",")}


def test_the_library_is_found():
    assert {"data", "training", "leakage", "args", "tables", "matryoshka"} <= set(LIBRARY)


@pytest.mark.parametrize("stem", LIBRARY)
def test_no_library_module_imports_the_tooling(stem):
    assert not _lrlab_imports(stem) & TOOLING, f"lrlab.{stem} imports course tooling"


@pytest.mark.parametrize("stem", LIBRARY)
def test_each_module_imports_only_what_its_docstring_says(stem):
    actual, declared = _lrlab_imports(stem), _declared(stem)
    assert declared <= set(LIBRARY), f"lrlab.{stem} declares unknown modules {declared - set(LIBRARY)}"
    assert actual <= declared, f"lrlab.{stem} imports {sorted(actual - declared)} without saying so"


def test_the_library_has_no_import_cycle():
    graph = {stem: _lrlab_imports(stem) & set(LIBRARY) for stem in LIBRARY}
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for stem in LIBRARY:
        if stem not in state:
            visit(stem, [stem])
    # the seam of the old data <-> training cycle: the pipeline does not train
    assert "training" not in graph["data"] and "models" not in graph["data"]
