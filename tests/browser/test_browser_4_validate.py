"""Scenario 4: the nbgrader Validate button on a notebook with one unfinished exercise.

The learner has answered every exercise of a release notebook but one and presses Validate in the notebook's
toolbar. nbgrader's dialog must say that validation found a failure, show which test cell failed, and show
why (the ``NotImplementedError`` the unfinished exercise still raises) -- and report no other cell.
"""

from __future__ import annotations

import nbformat
import pytest
from browser_helpers import (
    REPO,
    answer_cells,
    cell_by_grade_id,
    expect,
    open_notebook,
    solution_of,
)

pytestmark = pytest.mark.browser

ASSIGNMENT = "00_pytorch_warmup"


def _all_but_one(release, source) -> tuple[object, str]:
    """The release notebook with every answer (code and written) taken from the source but one function."""
    answers = answer_cells(release, kinds=("code", "markdown"))
    functions = [g for g in answer_cells(release) if cell_by_grade_id(release, g).source.lstrip().startswith("def ")]
    assert functions, f"{ASSIGNMENT} has no exercise that defines a function"
    unfinished = functions[-1]
    learner = nbformat.from_dict(release)
    for grade_id in answers:
        if grade_id != unfinished:
            cell_by_grade_id(learner, grade_id).source = solution_of(source, grade_id)
    return learner, unfinished


def test_validate_reports_the_one_unfinished_exercise(lab, page, screenshot):
    relative = f"release/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
    release = nbformat.read(REPO / relative, as_version=4)
    source = nbformat.read(REPO / f"source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", as_version=4)
    learner, unfinished = _all_but_one(release, source)
    nbformat.write(learner, lab.root / relative)

    panel = open_notebook(page, lab, relative)
    button = panel.locator(".jp-Toolbar .validate-button")
    expect(button, f"no Validate button on {relative}").to_have_text("Validate")
    button.click()

    dialog = page.locator(".jp-Dialog")
    # nbgrader saves the notebook, then runs all of it in a fresh kernel
    expect(dialog, "Validate did not answer with a dialog").to_be_visible(timeout=90_000)
    expect(dialog.locator(".jp-Dialog-header")).to_have_text("Validation Results")
    message = dialog.locator("#validation-message")
    expect(message).to_contain_class("validation-failed")
    text = message.inner_text()
    message.evaluate("body => { body.scrollTop = body.scrollHeight; }")  # down to the error, as a learner scrolls
    screenshot("04_validate_failed")

    failed_cells = message.get_by_text("The following cell failed:")
    assert failed_cells.count() == 1, f"expected one failed cell (the {unfinished} tests), got:\n{text}"
    first_test_line = cell_by_grade_id(release, f"{unfinished}_tests").source.splitlines()[0]
    assert first_test_line in text, f"the dialog does not show the test cell of {unfinished}:\n{text}"
    assert "NotImplementedError" in text, f"the dialog does not say the exercise is not implemented:\n{text}"

    dialog.get_by_role("button", name="Ok").click()
    expect(dialog).to_be_hidden()
    expect(button).to_have_text("Validate")  # ready to validate again
