"""Scenario 3: a learner works an exercise of a release notebook.

The learner runs the notebook's first cells, types a correct answer into an exercise cell, runs it and the
test cell below and sees the pass line of ``lrlab.checks.passed``; then types a plausible wrong answer and
sees the learner-facing message of ``lrlab.checks``: what was expected, what came back, and a hint.
"""

from __future__ import annotations

import ast
import re
import shutil

import nbformat
import pytest
from browser_helpers import (
    REPO,
    cell_by_grade_id,
    code_cell_at,
    code_index,
    open_notebook,
    output_text,
    run_cell,
    set_cell_source,
    solution_of,
)

pytestmark = pytest.mark.browser

ASSIGNMENT = "00_pytorch_warmup"
EXERCISE = "center_columns"


def _mistake(solution: str) -> str:
    """The classic slip of the exercise: the mean of each row (dim=1) instead of each column (dim=0)."""
    wrong = solution.replace("dim=0", "dim=1")
    assert wrong != solution, f"the reference answer of {EXERCISE} no longer reduces with dim=0:\n{solution}"
    return wrong


def _hints(tests_source: str) -> list[str]:
    """The general hints (``hint="..."``) and those naming a recognised mistake (``mistakes=[(value, "...")]``)
    of a test cell, each string whole (implicitly concatenated literals joined)."""
    found = []
    for node in ast.walk(ast.parse(tests_source)):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "hint" and isinstance(keyword.value, ast.Constant):
                found.append(keyword.value.value)
            elif keyword.arg == "mistakes" and isinstance(keyword.value, (ast.List, ast.Tuple)):
                found += [pair.elts[-1].value for pair in keyword.value.elts
                          if isinstance(pair, ast.Tuple) and isinstance(pair.elts[-1], ast.Constant)]
    return [hint for hint in found if isinstance(hint, str)]


def test_learner_sees_the_pass_line_then_the_hint(lab, page, screenshot):
    relative = f"release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
    shutil.copy2(REPO / relative, lab.root / relative)  # a fresh release notebook, as handed out
    release = nbformat.read(REPO / relative, as_version=4)
    source = nbformat.read(REPO / f"source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", as_version=4)
    answer_at, tests_at = code_index(release, EXERCISE), code_index(release, f"{EXERCISE}_tests")
    tests_source = cell_by_grade_id(release, f"{EXERCISE}_tests").source
    what = re.search(r"checks\.passed\(\s*[\"'](.+?)[\"']\s*\)", tests_source)
    assert what, f"the test cell of {EXERCISE} does not end with checks.passed(...)"
    hints = _hints(tests_source)
    assert hints, f"the visible tests of {EXERCISE} give no hint="

    panel = open_notebook(page, lab, relative)
    for index in range(answer_at):  # the parameters and setup cells above the exercise
        run_cell(code_cell_at(panel, index))

    answer, tests = code_cell_at(panel, answer_at), code_cell_at(panel, tests_at)
    set_cell_source(answer, solution_of(source, EXERCISE))
    run_cell(answer)
    run_cell(tests)
    text = output_text(tests)
    pass_line = f"\u2714 {what.group(1)}: the visible tests pass."
    assert pass_line in text, f"no pass line; the test cell shows:\n{text}"
    assert "Error" not in text, f"a correct answer raised in the test cell:\n{text}"
    screenshot("03_exercise_pass", tests)

    set_cell_source(answer, _mistake(solution_of(source, EXERCISE)))
    run_cell(answer)
    run_cell(tests)
    text = output_text(tests)
    assert "CheckFailure" in text, f"the wrong answer did not fail a check; the test cell shows:\n{text}"
    shows_values = re.search(r"\n\s*expected: .*\n\s*got: ", text, re.DOTALL)
    assert shows_values, f"the failure does not show what was expected and what came back:\n{text}"
    shown = [hint for hint in hints if f"Hint: {hint}" in text]
    assert shown, f"none of the test cell's hints is shown; the test cell shows:\n{text}"
    assert "the visible tests pass" not in text, f"a wrong answer printed the pass line:\n{text}"
    screenshot("03_exercise_hint", tests)
