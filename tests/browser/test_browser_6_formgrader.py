"""Scenario 6: an instructor opens a hostile submission in nbgrader's formgrader, and its feedback page.

A submission that carries every kind of active content of ``tests/hostile/active.py`` (HTML and JavaScript
outputs, markdown with script, event handlers and ``javascript:`` links, SVG, an unsafe attachment, a written answer
with script, and side files of active types) is graded by ``lrlab grade`` in the toy course, next to an honest
one. Then the instructor's JupyterLab serves that course and Chromium opens, with the instructor's login:

- the formgrader's page of the submission (where the written answer is graded),
- each side file at the address where the formgrader serves the submission's files,
- the feedback page at the server's ``/files/`` address, as a top-level page.

No script of the submission may run: no page is marked (``window.__lrlab_pwned``), no request for a
``pwned-*`` file leaves the browser, and no such file lands in the course. The written answer still reads.
A control puts the unsanitized submission where the formgrader reads it and opens the page again: the same
checks must then see the script run, so the scenario cannot pass because its detector is blind.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import nbformat
import pytest
from browser_helpers import BUILD
from hostile import ASSIGNMENT, build_toy_course, reference_notebook
from hostile.active import ANSWER_WORDS, PASSIVE_FILES, everything, side_files

pytestmark = [pytest.mark.browser, pytest.mark.sandbox, pytest.mark.slow]

STUDENT = "mallory"
#: How long a page gets to run what it carries (onload handlers, image errors, fetches) before it is checked.
SETTLE_S = 2.0


@pytest.fixture(scope="module")
def course(tmp_path_factory, launch_server):
    """The toy course with an honest and a hostile submission, graded; an instructor's lab serving it."""
    from nbgrader.api import Gradebook

    from lrlab.course.grading import sandbox as sb
    from lrlab.course.grading.batch import grade

    base = tmp_path_factory.mktemp("formgrader")
    root = build_toy_course(base / "course", students=["honest", STUDENT])
    for student in ("honest", STUDENT):
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nb = reference_notebook(root)
        if student == STUDENT:
            nb = everything(nb, STUDENT)
            for name, data in side_files(STUDENT).items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
        nbformat.write(nb, str(folder / f"{ASSIGNMENT}.ipynb"))
    limits = sb.Limits(wall_s=60, cpu_s=60, memory_bytes=2 * sb.GiB)
    report = grade(ASSIGNMENT, root=root, jobs=2, limits=limits)
    scores = {r.student: r.score for r in report.results}
    assert scores[STUDENT] == scores["honest"], report.table()
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        submission_id = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, STUDENT).id
    server = launch_server(root, base / "home", BUILD / "jupyter-formgrader.log")
    return {"root": root, "server": server, "submission_id": submission_id}


class Watch:
    """A tab of the instructor's browser that records every request a submission's script could make."""

    def __init__(self, page):
        self.page = page
        self.requests: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("dialog", lambda dialog: dialog.dismiss())

    def open(self, url: str, referer: str | None = None) -> int | None:
        response = self.page.goto(url, wait_until="load", referer=referer)
        time.sleep(SETTLE_S)
        return response.status if response is not None else None

    def marks(self) -> list:
        """What the script of a submission left on the page and its frames (``window.__lrlab_pwned``)."""
        found = []
        for frame in self.page.frames:
            try:
                value = frame.evaluate("() => window.__lrlab_pwned || null")
            except Exception:  # a frame without script (sandboxed) cannot be evaluated, nor run a payload
                continue
            if value:
                found.append(value)
        return found

    def pwned_requests(self) -> list[str]:
        return [url for url in self.requests if "pwned" in url]


def _pwned_files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("pwned*"))


def _login(watch: Watch, server) -> None:
    """Log the tab in with the token (the server then sets its login and XSRF cookies, as for the instructor)."""
    watch.open(f"{server.url}formgrader?token={server.token}")


def test_no_script_of_a_submission_runs_in_the_formgrader_or_its_feedback(course, browser):
    server, root = course["server"], course["root"]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        watch = Watch(context.new_page())
        _login(watch, server)
        assert any(c["name"] == "_xsrf" for c in context.cookies()), "the server set no XSRF cookie"

        status = watch.open(f"{server.url}formgrader/submissions/{course['submission_id']}/")
        assert status == 200, f"the formgrader did not render the submission (HTTP {status}):\n{server.log_tail()}"
        text = watch.page.inner_text("body")
        assert ANSWER_WORDS in text, "the written answer no longer reads in the formgrader"
        watch.page.screenshot(path=str(BUILD / "06_formgrader_hostile.png"), full_page=True)
        seen = {"formgrader page": (watch.marks(), watch.pwned_requests())}

        for name in sorted(set(side_files(STUDENT)) - set(PASSIVE_FILES)):  # a data file is a download
            watch.open(f"{server.url}formgrader/submissions/{course['submission_id']}/{name}")
            seen[f"side file {name}"] = (watch.marks(), watch.pwned_requests())

        page = f"feedback/{STUDENT}/{ASSIGNMENT}/{ASSIGNMENT}.html"
        assert (root / page).is_file(), "no feedback page was generated"
        tab = Watch(context.new_page())  # a tab of its own, opened from a link in the lab (the server wants a referer)
        status = tab.open(f"{server.url}files/{page}", referer=f"{server.url}lab")
        assert status == 200, f"the feedback page was not served (HTTP {status}):\n{server.log_tail(5)}"
        assert ANSWER_WORDS in tab.page.inner_text("body"), "the written answer no longer reads in the feedback"
        seen["feedback page"] = (tab.marks(), tab.pwned_requests())

        ran = {where: what for where, what in seen.items() if what[0] or what[1]}
        assert not ran, f"a submission's script ran in the instructor's browser: {ran}"
        assert not _pwned_files(root), f"a submission's script wrote into the course: {_pwned_files(root)}"

        # Control: the same page made from the unsanitized submission runs the script, and the checks see it.
        graded = root / "autograded" / STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        kept = graded.with_suffix(".sanitized")
        shutil.copy2(graded, kept)
        try:
            shutil.copy2(root / "submitted" / STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", graded)
            watch.requests.clear()
            watch.open(f"{server.url}formgrader/submissions/{course['submission_id']}/")
            deadline = time.monotonic() + 10
            while not _pwned_files(root) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert watch.marks() and watch.pwned_requests(), "the control's script did not run: the checks are blind"
            assert _pwned_files(root), "the control's script wrote nothing: the file check is blind"
            # ... and the unsanitized page served where the feedback is (the server sandboxes /files/, scripts run)
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_filename(str(graded))
            control = root / Path(page).with_name("control.html")
            control.write_text(body, encoding="utf-8")
            tab = Watch(context.new_page())
            tab.open(f"{server.url}files/{Path(page).with_name('control.html')}", referer=f"{server.url}lab")
            assert tab.marks(), "the control's script did not run on the feedback address: the check is blind"
        finally:
            shutil.copy2(kept, graded)
            kept.unlink()
            for path in [*root.rglob("pwned*"), *root.rglob("control.html")]:
                path.unlink()
    finally:
        context.close()
