"""What a learner does in JupyterLab, as Playwright steps: open a notebook, type into a cell, run it, read it.

Selectors are JupyterLab 4's own CSS classes (``jp-...``), ipywidgets 8's (``widget-...``) and nbgrader's
(``validate-button``), so a change in one of those versions shows up here first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:  # the browser fixture then skips (or fails) every test with a plain reason
    Locator = Page = expect = None

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "build" / "browser"

#: Folders the learner must see in the file browser when JupyterLab opens on the course.
COURSE_FOLDERS = ("notebooks", "release", "source")

#: Durations measured during the run (seconds); printed at the end and saved to build/browser/timings.json.
TIMINGS: dict[str, float] = {}

#: A prompt like "[7]:" (executed) as opposed to "[ ]:" (never run) or "[*]:" (running or queued).
_DONE_PROMPT = re.compile(r"\[\d+\]")


def record_timing(name: str, seconds: float) -> None:
    """Remember a measured duration under ``name`` (by convention ending in ``_s``)."""
    TIMINGS[name] = round(float(seconds), 2)


def wait_for_file_browser(page: Page, names: Iterable[str], timeout_s: float = 60) -> None:
    """Wait until the file browser lists every one of ``names``."""
    listing = page.locator("#filebrowser .jp-DirListing-content")
    for name in names:
        item = listing.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$"))
        expect(item.first).to_be_visible(timeout=timeout_s * 1000)


def file_browser_names(page: Page) -> list[str]:
    """The names the file browser shows, top to bottom."""
    return [t.strip() for t in page.locator("#filebrowser .jp-DirListing-itemText").all_inner_texts()]


def open_in_file_browser(page: Page, name: str) -> None:
    """Double-click ``name`` in the file browser's current folder (enters a folder, opens a file)."""
    item = page.locator("#filebrowser .jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText", has_text=re.compile(rf"^{re.escape(name)}$"))
    )
    item.first.dblclick()


def open_notebook(page: Page, lab, path: str, timeout_s: float = 90) -> Locator:
    """Open ``path`` (relative to the course) in a fresh JupyterLab; wait for its kernel to be idle.

    Returns the notebook panel's locator.
    """
    page.goto(lab.lab_url(path))
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
    expect(panel.locator(".jp-Cell").first).to_be_visible(timeout=timeout_s * 1000)
    wait_kernel_idle(page, timeout_s=timeout_s)
    return panel


def wait_kernel_idle(page: Page, timeout_s: float = 90) -> None:
    """Wait until the notebook's kernel says it is idle (started and not busy)."""
    # The status bar reads "Python 3 (ipykernel) | Idle" once the kernel has started and is not busy.
    status = page.locator(".jp-StatusBar-Widget").get_by_text(re.compile(r"\| Idle$"))
    expect(status.first).to_be_visible(timeout=timeout_s * 1000)
    indicator = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator").first
    expect(indicator).to_have_attribute("data-status", "idle", timeout=timeout_s * 1000)


def cells(panel: Locator) -> Locator:
    return panel.locator(".jp-Notebook .jp-Cell")


def code_cell_containing(panel: Locator, text: str) -> Locator:
    """The first code cell whose source contains ``text``, pinned by position (so editing keeps it)."""
    code_cells = panel.locator(".jp-Notebook .jp-CodeCell")
    sources = code_cells.evaluate_all(
        "cells => cells.map(c => (c.querySelector('.jp-InputArea .cm-content') || {}).innerText || '')"
    )
    for index, source in enumerate(sources):
        if text in source:
            cell = code_cells.nth(index)
            cell.scroll_into_view_if_needed()
            return cell
    raise AssertionError(f"no code cell contains {text!r}; the notebook has {len(sources)} code cells")


def cell_source(cell: Locator) -> str:
    return cell.locator(".jp-InputArea .cm-content").inner_text()


def set_cell_source(cell: Locator, text: str) -> None:
    """Replace the cell's code the way a learner pastes an answer: click, select all, insert."""
    editor = cell.locator(".jp-InputArea .cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page = cell.page
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.press("Delete")
    # insert_text is one input event, like a paste: the editor's auto-indent does not re-indent the code.
    page.keyboard.insert_text(text)


def prompt_text(cell: Locator) -> str:
    return cell.locator(".jp-InputPrompt").first.inner_text().strip()


def run_cell(cell: Locator, timeout_s: float = 60) -> None:
    """Run one cell with Shift+Enter and wait until its prompt shows a new execution count."""
    before = prompt_text(cell)
    cell.locator(".jp-InputArea .cm-content").click()
    cell.page.keyboard.press("Shift+Enter")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = prompt_text(cell)
        if _DONE_PROMPT.search(now) and now != before:
            return
        time.sleep(0.1)
    raise AssertionError(f"the cell did not finish within {timeout_s} s (prompt {prompt_text(cell)!r})")


def output_text(cell: Locator) -> str:
    """All the text the cell's output area shows (streams, results and errors)."""
    outputs = cell.locator(".jp-OutputArea-output")
    return "\n".join(outputs.all_inner_texts())


_ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception|Failure)\b.*:", re.MULTILINE)


def output_errors(panel: Locator) -> list[str]:
    """Texts of the error outputs (tracebacks) anywhere in the notebook; warnings are not errors."""
    stderr = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    return [text for text in stderr.all_inner_texts() if _ERROR_TEXT.search(text)]


def run_all_cells(page: Page, timeout_s: float = 120) -> None:
    """Run > Run All Cells from the menu bar, then wait until no cell is running or queued."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    wait_all_done(page, timeout_s=timeout_s)


def wait_all_done(page: Page, timeout_s: float = 120) -> None:
    """Wait until no code cell of the open notebook is running or queued ("[*]")."""
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
    prompts = panel.locator(".jp-CodeCell .jp-InputPrompt")
    deadline = time.monotonic() + timeout_s
    time.sleep(0.3)  # let the queued cells show their "[*]"
    while time.monotonic() < deadline:
        texts = prompts.all_inner_texts()
        if texts and not any("*" in t for t in texts):
            wait_kernel_idle(page, timeout_s=max(1.0, deadline - time.monotonic()))
            return
        time.sleep(0.2)
    raise AssertionError(f"cells still running after {timeout_s} s")


# ------------------------------------------------------------------------------- nbgrader notebooks


def code_cell_at(panel: Locator, index: int) -> Locator:
    """The ``index``-th code cell (0-based, counting code cells only, as in the .ipynb file)."""
    cell = panel.locator(".jp-Notebook .jp-CodeCell").nth(index)
    cell.scroll_into_view_if_needed()
    return cell


def code_index(notebook, grade_id: str) -> int:
    """Position of the nbgrader cell ``grade_id`` among the notebook's code cells."""
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for index, cell in enumerate(code_cells):
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return index
    raise AssertionError(f"the notebook has no code cell with grade_id {grade_id!r}")


def cell_by_grade_id(notebook, grade_id: str):
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise AssertionError(f"the notebook has no cell with grade_id {grade_id!r}")


def solution_of(source_notebook, grade_id: str) -> str:
    """The instructor's answer for ``grade_id``: the source cell without the solution markers."""
    source = cell_by_grade_id(source_notebook, grade_id).source
    markers = ("### BEGIN SOLUTION", "### END SOLUTION")
    return "\n".join(line for line in source.splitlines() if line.strip() not in markers)


def answer_cells(notebook, kinds: tuple[str, ...] = ("code",)) -> list[str]:
    """grade_ids of the cells the learner answers in (nbgrader ``solution`` cells), in notebook order.

    ``kinds`` are cell types: "code" for autograded answers, "markdown" for written answers.
    """
    return [
        c.metadata["nbgrader"]["grade_id"]
        for c in notebook.cells
        if c.cell_type in kinds and c.metadata.get("nbgrader", {}).get("solution")
    ]
