"""Scenario 1: JupyterLab opens on the course with the nbgrader extensions active.

What a learner (and an instructor) meets first: the course's folders in the file browser, the Nbgrader menu,
the formgrader listing the course's assignments, and the Validate button on an assignment notebook.
"""

from __future__ import annotations

import re

import pytest
from browser_helpers import (
    COURSE_FOLDERS,
    REPO,
    expect,
    file_browser_names,
    open_in_file_browser,
    wait_for_file_browser,
    wait_kernel_idle,
)

pytestmark = pytest.mark.browser

NBGRADER_MENU_ITEMS = {"Assignment List", "Course List", "Formgrader", "Create assignment"}


def _assignments() -> list[str]:
    source = REPO / "source"
    return sorted(d.name for d in source.iterdir() if d.is_dir() and any(d.glob("*.ipynb"))) if source.is_dir() else []


def _release_notebooks() -> list[str]:
    release = REPO / "release"
    found = sorted(release.glob("*/*.ipynb")) if release.is_dir() else []
    return [p.relative_to(REPO).as_posix() for p in found if ".ipynb_checkpoints" not in p.parts]


def test_lab_opens_on_the_course_with_nbgrader_active(lab, page, screenshot):
    page.goto(lab.lab_url())
    wait_for_file_browser(page, COURSE_FOLDERS)
    names = file_browser_names(page)
    missing = [name for name in COURSE_FOLDERS if name not in names]
    assert not missing, f"the file browser lacks the course folders {missing}; it shows {names}"
    screenshot("01_lab_course")

    menu_bar = page.locator(".lm-MenuBar-itemLabel")
    nbgrader_menu = menu_bar.filter(has_text=re.compile(r"^Nbgrader$"))
    expect(nbgrader_menu, "no Nbgrader menu: is nbgrader's labextension enabled?").to_have_count(1)
    nbgrader_menu.click()
    items = set(page.locator(".lm-Menu:visible .lm-Menu-itemLabel").all_inner_texts())
    assert NBGRADER_MENU_ITEMS <= items, f"the Nbgrader menu lacks {sorted(NBGRADER_MENU_ITEMS - items)}: {items}"
    screenshot("01_lab_nbgrader_menu")

    # The formgrader runs on the server with the course's own nbgrader_config.py (found in the working
    # directory) and lists the assignments of source/.
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Formgrader$")).click()
    table = page.frame_locator("#formgrader iframe").locator("#main-table")
    expect(table, "the formgrader did not show its assignment table").to_be_visible()
    expect(table, "the formgrader kept loading").not_to_contain_text("Loading, please wait")
    for assignment in _assignments():
        expect(table, f"the formgrader does not list source/{assignment}").to_contain_text(assignment)
    screenshot("01_lab_formgrader")

    # The "Create Assignment" panel of the nbgrader extension sits in the right sidebar.
    right_tabs = page.locator(".jp-SideBar.jp-mod-right .lm-TabBar-tabLabel")
    expect(right_tabs.filter(has_text="Create Assignment"), "no Create Assignment panel").to_be_visible()

    # A learner walks the file browser to an assignment notebook: its toolbar carries nbgrader's Validate.
    notebooks = _release_notebooks()
    assert notebooks, "the course has no release notebook (release/<nn_name>/*.ipynb)"
    for part in notebooks[0].split("/"):
        open_in_file_browser(page, part)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
    button = panel.locator(".jp-Toolbar .validate-button")
    expect(button, f"no Validate button on {notebooks[0]}").to_be_visible()
    expect(button).to_have_text("Validate")
    wait_kernel_idle(page)  # the notebook's kernel starts: the learner can run cells
    screenshot("01_lab_validate_button")
