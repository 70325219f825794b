"""Active content in submissions: one hostile case per way a learner could get a script in front of the instructor.

Every case adds cells (or side files) to a notebook that is otherwise graded as usual. The script each one
carries, :func:`payload`, does what a real attack did: it marks the page (``window.__lrlab_pwned``) and writes a
file into the course through the instructor's Jupyter API (``PUT /api/contents/pwned-<case>.txt``, with the
page's XSRF cookie). Grading must leave nothing of it that a browser would run, in ``autograded/`` (what the
formgrader renders and serves) and in ``feedback/``, while a written answer still reads.

``tests/test_grading_active.py`` grades the cases in the toy course of :mod:`hostile`;
``tests/browser/test_browser_6_formgrader.py`` opens one graded submission in the formgrader and its feedback
in Chromium.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import nbformat

#: A 1x1 PNG: a harmless attachment / image that must survive sanitizing.
PNG_1X1 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
#: Readable words a written answer carries next to its script; they must still be there after sanitizing.
ANSWER_WORDS = "We divide by the number of values"


def payload(name: str) -> str:
    """JavaScript that marks the page and writes ``pwned-<name>.txt`` into the course through the Jupyter API.

    Single quotes only, so it fits in a double-quoted HTML attribute."""
    return (
        f"window.__lrlab_pwned=(window.__lrlab_pwned||[]).concat(['{name}']);"
        f"fetch('/api/contents/pwned-{name}.txt',{{method:'PUT',credentials:'same-origin',"
        "headers:{'Content-Type':'application/json',"
        "'X-XSRFToken':((document.cookie.match(/_xsrf=([^;]+)/)||[])[1]||'')},"
        "body:JSON.stringify({type:'file',format:'text',content:'pwned'})})"
    )


def _code(source: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source)


def html_output(name: str) -> list:
    """A code cell whose outputs, made while grading, are HTML with script and JavaScript."""
    js = payload(name)
    html = f'<b>result</b><script>{js}</script><img src="x" onerror="{js}">'
    return [_code(
        "from IPython.display import HTML, Javascript, display\n"
        f"display(HTML({json.dumps(html)}))\n"
        f"display(Javascript({json.dumps(js)}))\n"
        f"display({{'text/html': {json.dumps(html)}, 'text/plain': 'result'}}, raw=True)"
    )]


def markdown(name: str) -> list:
    """A markdown cell with ``<script>``, ``<img onerror>``, an ``<iframe srcdoc>`` and ``javascript:`` links."""
    js = payload(name)
    return [nbformat.v4.new_markdown_cell(
        f"Notes\n\n<script>{js}</script>\n\n<img src=\"x\" onerror=\"{js}\">\n\n"
        f"<iframe srcdoc=\"<script>parent.eval(atob('{base64.b64encode(js.encode()).decode()}'))</script>\">"
        f"</iframe>\n\n[read me](javascript:{js.replace('(', '%28').replace(')', '%29')})\n\n"
        f"<a href=\"JaVaScRiPt&colon;{js}\">open</a>"
    )]


def svg(name: str) -> list:
    """A code cell that displays an SVG with script (an ``image/svg+xml`` output) and an HTML-embedded SVG."""
    js = payload(name)
    image = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js}"><script>{js}</script></svg>'
    return [_code(
        "from IPython.display import display\n"
        f"display({{'image/svg+xml': {json.dumps(image)}, 'text/plain': 'figure'}}, raw=True)\n"
        f"display({{'text/html': {json.dumps(image)}}}, raw=True)"
    )]


def written_answer(name: str) -> str:
    """The source of a written answer that carries script next to a readable answer."""
    js = payload(name)
    return (f"{ANSWER_WORDS}, so the *mean* does not grow with the list.\n\n"
            f"<script>{js}</script><img src=x onerror=\"{js}\"> <details open ontoggle=\"{js}\">more</details>")


def attachment(name: str) -> list:
    """A markdown cell with an SVG attachment that carries script, and a harmless PNG attachment."""
    js = payload(name)
    image = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js}"><script>{js}</script></svg>'
    cell = nbformat.v4.new_markdown_cell("Figures: ![dot](attachment:dot.png) and ![plot](attachment:plot.svg)")
    cell["attachments"] = {
        "dot.png": {"image/png": PNG_1X1},
        "plot.svg": {"image/svg+xml": base64.b64encode(image.encode()).decode()},
    }
    return [cell]


def side_files(name: str) -> dict[str, bytes]:
    """Files next to the notebook that a browser would run if the formgrader served them (and one data file)."""
    js = payload(name)
    return {
        "report.html": f"<html><body><script>{js}</script></body></html>".encode(),
        "figure.SVG": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js}"></svg>'.encode(),
        "helper.js": js.encode(),
        "extra/page.xhtml": f'<html xmlns="http://www.w3.org/1999/xhtml"><script>{js}</script></html>'.encode(),
        "data.csv": b"x,y\n1,2\n",
    }


#: Kept side files (passive types).
PASSIVE_FILES = ("data.csv",)

#: A grade id with terminal escape sequences (clear screen, set title, hyperlink, bidi override).
ESCAPE_ID = "x\x1b[2J\x1b]0;owned\x07\x1b]8;;http://evil\x07y\u202e"


def escape_cell() -> list:
    """A cell whose nbgrader metadata names a grade id made of terminal escape sequences (the report names it)."""
    cell = _code("pass")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": ESCAPE_ID, "locked": False, "points": 1,
                                 "schema_version": 3, "solution": False, "task": False}
    return [cell]


#: Strings a spreadsheet would run as formulas, at the start of a CSV cell.
FORMULAS = ("=HYPERLINK(\"http://evil\",\"x\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1+1")


@dataclass
class ActiveCase:
    """A hostile submission of one class: cells added at the end, a written answer, side files."""

    cells: Callable[[str], list] | None = None
    answer: bool = False
    files: bool = False
    escape: bool = False
    notes: list[str] = field(default_factory=list)


CASES: dict[str, ActiveCase] = {
    "html_output": ActiveCase(cells=html_output),
    "markdown_script": ActiveCase(cells=markdown),
    "svg_output": ActiveCase(cells=svg, files=True),
    "answer_script": ActiveCase(answer=True),
    "attachment": ActiveCase(cells=attachment),
    "escape_ids": ActiveCase(cells=lambda name: escape_cell()),
}


def written_answer_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The first manually graded markdown answer of ``nb``."""
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("grade") and meta.get("solution"):
            return cell
    raise KeyError("no written answer cell")


def make(nb: nbformat.NotebookNode, name: str, case: ActiveCase) -> nbformat.NotebookNode:
    """``nb`` (a filled-in submission) turned into the hostile submission ``name`` of class ``case``."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    if case.cells is not None:
        nb.cells += case.cells(name)
    if case.answer:
        written_answer_cell(nb).source = written_answer(name)
    return nb


def everything(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """One submission with every class at once (for the browser test)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for part in (html_output, markdown, svg, attachment):
        nb.cells += part(name)
    written_answer_cell(nb).source = written_answer(name)
    return nb
