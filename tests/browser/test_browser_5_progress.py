"""Scenario 5: a training cell shows a live progress bar.

``lrlab.training.fit`` draws a ``tqdm.auto`` bar for runs longer than a few hundred steps, which in JupyterLab
is an ipywidgets progress bar. The learner opens the seed-trace demo, trains longer than the default recipe
(more epochs, the natural first experiment) and must see the bar appear and fill up while the cell runs -- not
only a final line at the end -- and the cell must finish without an error.
"""

from __future__ import annotations

import re
import time

import pytest
from browser_helpers import (
    cell_source,
    code_cell_containing,
    open_notebook,
    output_errors,
    output_text,
    prompt_text,
    run_cell,
    set_cell_source,
)

pytestmark = pytest.mark.browser

NOTEBOOK = "notebooks/02_seed_trace_demo.ipynb"
TRAINING_CALL = "run_recipe(SEED"  # the demo's training cell: one run of the default recipe
EPOCHS = 400  # 400 epochs of 25 steps: far past fit's threshold for a bar, long enough (10-20 s) that the bar is
#                seen at several widths even when a loaded machine answers the page slowly
DONE_PROMPT = re.compile(r"\[\d+\]")


def _bar_percent(bar) -> float | None:
    """How full the progress bar is drawn (0-100), or None while it is not on screen."""
    fill = bar.locator(".progress-bar").first
    try:
        style = (fill.get_attribute("style", timeout=500) or "") if fill.count() else ""
    except Exception:  # the bar went away between two looks (tqdm closes it when the run ends)
        return None
    match = re.search(r"width:\s*([\d.]+)%", style)
    return float(match.group(1)) if match else None


def test_training_cell_shows_a_live_progress_bar(lab, page, screenshot):
    panel = open_notebook(page, lab, NOTEBOOK)
    training = code_cell_containing(panel, TRAINING_CALL)
    cells = panel.locator(".jp-Notebook .jp-CodeCell")
    position = training.evaluate("(cell) => [...cell.parentElement.querySelectorAll('.jp-CodeCell')].indexOf(cell)")
    for index in range(position):  # everything the training cell needs
        run_cell(cells.nth(index), timeout_s=90)
    errors = output_errors(panel)
    assert not errors, f"{NOTEBOOK} raised before its training cell:\n" + "\n\n".join(errors)

    source = cell_source(training)
    assert "epochs=" not in source, f"the training cell sets epochs already; adapt this scenario:\n{source}"
    set_cell_source(training, source.replace(TRAINING_CALL, f"{TRAINING_CALL}, epochs={EPOCHS}", 1))
    page.keyboard.press("Shift+Enter")

    # Watch the bar while the cell runs: it must appear, then fill up (tqdm may close it at the end).
    bar = training.locator(".jp-OutputArea-output .widget-hprogress").first
    seen: list[float] = []
    done = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = DONE_PROMPT.search(prompt_text(training))
        percent = _bar_percent(bar)
        if percent is not None and (not seen or percent != seen[-1]):
            seen.append(percent)
            if len([p for p in seen if 0 < p < 100]) == 2:  # after two looks: a screenshot takes a while
                screenshot("05_progress_bar_running", training)
        if done:
            break
        time.sleep(0.1)
    assert done, "the training cell did not finish within 120 s"
    assert seen, f"the training cell showed no progress-bar widget; it shows:\n{output_text(training)}"

    moving = [p for p in seen if 0 < p < 100]
    assert len(moving) >= 2 and moving[-1] > moving[0], (
        f"the progress bar did not fill up while the cell ran; widths seen: {seen}"
    )
    errors = output_errors(panel)
    assert not errors, "the training cell raised:\n" + "\n\n".join(errors)
    screenshot("05_progress_bar_done", training)
    assert output_text(training).strip(), "the training cell shows nothing once it has finished"
