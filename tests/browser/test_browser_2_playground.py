"""Scenario 2: the LR playground notebook and its schedule explorer, in a real JupyterLab.

The learner runs every cell of ``notebooks/lr_playground.ipynb``; the schedule explorer
(``lrlab.widgets.schedule_explorer``) renders as live widgets -- sliders and the plotted curve -- and dragging
a slider redraws the curve. The check compares the pixels of the plot before and after the drag.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from browser_helpers import expect, open_notebook, output_errors, run_all_cells, wait_kernel_idle

pytestmark = pytest.mark.browser

PLAYGROUND = "notebooks/lr_playground.ipynb"
DRAG_PX = 45  # how far the slider handle is dragged to the right
# A slider that changes the curve's shape, not only its scale (the peak LR just relabels the y axis).
SHAPE_SLIDERS = ("warmup", "total", "decay", "step")
MIN_CHANGED = 0.003  # share of the plot's pixels that must change (a moved curve changes ~1-5 %)


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _settled_src(image, quiet_s: float = 0.8, timeout_s: float = 30) -> str:
    """The image's source once it has stopped changing for ``quiet_s`` (a drag sends several values)."""
    deadline = time.monotonic() + timeout_s
    src, since = image.get_attribute("src"), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = image.get_attribute("src")
        if now != src:
            src, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return src
    raise AssertionError(f"the plot kept redrawing for {timeout_s} s")


def _shape_slider(explorer):
    sliders = explorer.locator(".widget-slider")
    labels = [label.lower() for label in sliders.locator(".widget-label").all_inner_texts()]
    assert labels, "the explorer shows no slider"
    for word in SHAPE_SLIDERS:
        for index, label in enumerate(labels):
            if word in label:
                return sliders.nth(index)
    return sliders.first


def test_schedule_explorer_redraws_when_a_slider_moves(lab, page, screenshot):
    panel = open_notebook(page, lab, PLAYGROUND)
    run_all_cells(page)
    errors = output_errors(panel)
    assert not errors, f"{PLAYGROUND} raised while running all cells:\n" + "\n\n".join(errors)

    # The explorer: the first output with both a plotted image and sliders.
    explorer = (
        panel.locator(".jp-OutputArea-output")
        .filter(has=page.locator(".widget-image"))
        .filter(has=page.locator(".widget-slider"))
        .first
    )
    expect(explorer, "no output shows the schedule explorer (a plot with sliders)").to_be_visible()
    explorer.scroll_into_view_if_needed()
    image = explorer.locator(".widget-image").first
    expect(image).to_be_visible()
    width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert width > 0, "the explorer's plot is an empty image"
    screenshot("02_playground_explorer", explorer)

    src_before = _settled_src(image)
    before = _pixels(image.screenshot())
    slider = _shape_slider(explorer)
    readout = slider.locator(".widget-readout")
    value_before = readout.inner_text()
    box = slider.locator(".noUi-handle").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + DRAG_PX, y, steps=8)
    page.mouse.up()

    expect(readout, "dragging the slider did not change its value").not_to_have_text(value_before)
    expect(image, "the plot was not redrawn after the slider moved").not_to_have_attribute("src", src_before)
    _settled_src(image)
    wait_kernel_idle(page)
    after = _pixels(image.screenshot())
    screenshot("02_playground_after_drag", explorer)

    assert before.shape == after.shape, f"the plot changed size: {before.shape} -> {after.shape}"
    changed = float((np.abs(before - after).sum(axis=-1) > 30).mean())
    assert changed >= MIN_CHANGED, (
        f"moving the slider from {value_before} to {readout.inner_text()} changed only {changed:.2%} of the plot"
    )
