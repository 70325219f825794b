"""Feedback that shows learners their visible tests and never the hidden ones, in any form.

nbgrader's feedback is the autograded notebook rendered as HTML. Its ``ClearHiddenTests`` step
removes the hidden test *code*, but a failed hidden test still leaves behind its traceback, which
quotes the hidden lines around the failure and, in the error message, the expected value. Worse, the
learner's code runs inside the hidden tests (they call it with hidden inputs) and in every later cell
(where ``In``/``_ih`` hold the hidden test code): whatever it prints there, plainly or encoded
(base64, hex, rot13, reversed, split over lines, on stderr, as a display, in an error message), would
reach the feedback. Searching outputs for quotes cannot catch an encoding, so the rule is about
*when* an output was produced, not what it says:

* outputs of every cell that ran **before** the first cell with a hidden region are kept (nothing
  hidden had run yet); of the rest, only verdicts remain:
* in a test cell, an error raised by a **visible** line keeps its message (the learner-facing
  "expected ..., got ..., hint ..." of :mod:`lrlab.checks`, capped at :data:`MESSAGE_CHARS`
  characters) but loses its traceback; an error raised by a **hidden** line becomes a fixed sentence
  (a hidden test failed); an error whose origin cannot be told becomes another fixed sentence; the
  grader's own errors (``GraderStopped``, ``CellTimeoutError``) stay; every other output (streams,
  displays, results) is dropped, with one fixed note saying so;
* in any other cell from the first hidden region on, an error keeps only its type when that is a
  built-in exception (else a fixed sentence), and every other output is dropped with the same note;
* in every cell the hidden regions are replaced by one comment line, and any output that still
  quotes a line of hidden test code is replaced by a note (a second line of defence).

What a learner can still learn: one bit per test cell (pass/fail) and, through the message of a
failed visible check after a hidden test ran, up to :data:`MESSAGE_CHARS` characters of text their
own code chose (the check quotes the value it got). The origin of an error is read from the
kernel's traceback, which code that tampers with IPython's exception display could forge; the
grader's tamper checks, or executing the visible and hidden parts as separate requests (see
:func:`split_hidden`), close that.

What the kernel reports about an error or a cell after hidden tests ran is normalized too: an
error's type is kept only when it is a built-in exception or :mod:`lrlab.checks`' ``CheckFailure``
(else ``Error``), the grader's own errors get fixed sentences (a learner can raise an exception of
the same name), and execution counts are renumbered (code can set the kernel's counter).

Before any of this, the notebook is sanitized (:func:`~lrlab.course.grading.content.sanitize_notebook`):
no active content of a submission reaches the feedback page, even from a notebook graded by plain
``nbgrader autograde``.

It is configured in ``nbgrader_config.py`` as a ``GenerateFeedback`` preprocessor (after
``GetGrades``) and ``lrlab grade`` always adds it.

Imports: :mod:`~lrlab.course.grading.content`, nbformat, nbgrader and traitlets.
"""

from __future__ import annotations

import builtins
import re

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode

from lrlab.course.grading.content import numbered_ids, sanitize_notebook

BEGIN = "BEGIN HIDDEN TESTS"
END = "END HIDDEN TESTS"
HIDDEN_MARKER = "# ... hidden tests (not shown in feedback) ..."
HIDDEN_FAILED = (
    "Your answer passes the visible tests but fails a hidden test. Hidden tests use inputs you have not "
    "seen: look for values or special cases that only fit the visible examples."
)
UNKNOWN_FAILED = "A test in this cell failed (the details are hidden because they may quote hidden tests)."
REDACTED = "[output removed from the feedback: it quoted hidden test code]\n"
DROPPED = ("[other output of this cell is not shown in the feedback: it was produced after hidden tests "
           "started to run]\n")
ERROR_HIDDEN = "This cell raised an error (its details are not shown: hidden tests had run before it)."
#: How much of a visible check's message the feedback keeps.
MESSAGE_CHARS = 600
#: Errors the grader itself writes into a notebook; they quote nothing of the tests.
GRADER_ERRORS = ("GraderStopped", "CellTimeoutError", "GraderGuard")
#: What the feedback says for a grader error once hidden tests ran (the kernel could forge its text).
GRADER_SENTENCES = {
    "GraderStopped": "The grader stopped this notebook at or before this cell (a limit of the grader was hit).",
    "CellTimeoutError": "This cell ran past the per-cell time limit and was interrupted.",
    "GraderGuard": ("The grader did not credit this cell: its tests did not run as written "
                    "(the grade report says why)."),
}
#: Error types kept by name besides the built-in exceptions (the learner-facing checks of lrlab).
KNOWN_ERRORS = frozenset({"CheckFailure"})

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_FRAME = re.compile(r"Cell In\s*\[(\d+)\],\s*line (\d+)")


def hidden_regions(source: str, begin: str = BEGIN, end: str = END) -> list[tuple[int, int]]:
    """1-based, inclusive line ranges of the hidden regions of ``source`` (delimiter lines included).

    An unterminated region runs to the end of the source (nbgrader refuses such a cell when it
    releases an assignment, so it only matters as a fail-safe here).
    """
    if not isinstance(source, str):
        raise ValueError(f"source must be a str, got {type(source).__name__}")
    regions, start = [], None
    lines = source.split("\n")
    for number, line in enumerate(lines, start=1):
        if begin in line and start is None:
            start = number
        elif end in line and start is not None:
            regions.append((start, number))
            start = None
    if start is not None:
        regions.append((start, len(lines)))
    return regions


def strip_hidden(source: str, begin: str = BEGIN, end: str = END, marker: str = HIDDEN_MARKER) -> str:
    """``source`` with each hidden region replaced by the ``marker`` line (same indentation)."""
    regions = hidden_regions(source, begin, end)
    lines = source.split("\n")
    out: list[str] = []
    number = 1
    for first, last in regions:
        out += lines[number - 1:first - 1]
        indent = re.match(r"\s*", lines[first - 1]).group(0)
        out.append(indent + marker)
        number = last + 1
    out += lines[number - 1:]
    return "\n".join(out)


def hidden_lines(source: str, begin: str = BEGIN, end: str = END, min_length: int = 12) -> list[str]:
    """The hidden lines of ``source`` long enough to recognize when an output quotes them."""
    lines = source.split("\n")
    out = []
    for first, last in hidden_regions(source, begin, end):
        for line in lines[first:last - 1]:
            text = line.strip()
            if len(text) >= min_length and begin not in text and end not in text:
                out.append(text)
    return out


def failing_line(traceback: list[str], execution_count: int | None) -> int | None:
    """The line of the cell run as ``In[execution_count]`` where an IPython traceback starts, or None.

    IPython heads each frame of a notebook cell with ``Cell In[N], line L``; the first frame of the
    cell that failed is the statement of that cell that raised (later frames are functions it called).
    """
    if execution_count is None:
        return None
    for entry in traceback:
        for m in _FRAME.finditer(_ANSI.sub("", str(entry))):
            if int(m.group(1)) == int(execution_count):
                return int(m.group(2))
    return None


def _output_text(output: NotebookNode) -> str:
    parts = []
    if "text" in output:
        parts.append(str(output["text"]))
    for value in output.get("data", {}).values():
        parts.append(value if isinstance(value, str) else str(value))
    if output.get("output_type") == "error":
        parts += [str(output.get("ename", "")), str(output.get("evalue", ""))]
        parts += [_ANSI.sub("", str(line)) for line in output.get("traceback", [])]
    return "\n".join(parts)


def _error(ename: str, evalue: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def _is_test_cell(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _cap(text: str) -> str:
    text = str(text)
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + " [...]"


def _dropped_note() -> NotebookNode:
    return nbformat.v4.new_output("stream", name="stdout", text=DROPPED)


def hide_test_cell(cell: NotebookNode, begin: str = BEGIN, end: str = END) -> NotebookNode:
    """Keep only the verdict of a test cell (modified in place and returned).

    Errors are kept as described in the module docstring; every other output is replaced by one
    note. Hidden regions in the source become one comment line. A cell without hidden regions is
    treated the same way when it ran after hidden tests (call :func:`hide_hidden_tests` for that)."""
    source = cell.source
    regions = hidden_regions(source, begin, end)
    kept: list[NotebookNode] = []
    dropped = False
    for output in cell.get("outputs", []):
        if output.get("output_type") != "error":
            dropped = True
            continue
        if output.get("ename") in GRADER_ERRORS:
            kept.append(_grader_error(output.get("ename")))
            continue
        line = failing_line(output.get("traceback", []), cell.get("execution_count"))
        if line is not None and not any(first <= line <= last for first, last in regions):
            kept.append(_error(error_name(output.get("ename")), _cap(output.get("evalue", ""))))
        elif line is not None:
            kept.append(_error("HiddenTestFailed", HIDDEN_FAILED))
        else:
            kept.append(_error("TestFailed", UNKNOWN_FAILED))
    cell.outputs = ([_dropped_note()] if dropped else []) + kept
    if regions:
        cell.source = strip_hidden(source, begin, end)
    return cell


def hide_after_hidden(cell: NotebookNode) -> NotebookNode:
    """Keep only a fixed trace of a non-test code cell that ran after hidden tests (in place)."""
    kept: list[NotebookNode] = []
    dropped = False
    for output in cell.get("outputs", []):
        if output.get("output_type") != "error":
            dropped = True
        elif output.get("ename") in GRADER_ERRORS:
            kept.append(_grader_error(output.get("ename")))
        elif output.get("ename") in _BUILTIN_ERRORS:
            kept.append(_error(output.get("ename"), ERROR_HIDDEN))
        else:
            kept.append(_error("Error", ERROR_HIDDEN))
    cell.outputs = ([_dropped_note()] if dropped else []) + kept
    return cell


_BUILTIN_ERRORS = frozenset(name for name, value in vars(builtins).items()
                            if isinstance(value, type) and issubclass(value, BaseException))


def error_name(ename) -> str:
    """The type of an error as the feedback shows it: a built-in exception or :data:`KNOWN_ERRORS` by name,
    anything else (a class the learner's code could name to carry text) as ``Error``."""
    return ename if isinstance(ename, str) and (ename in _BUILTIN_ERRORS or ename in KNOWN_ERRORS) else "Error"


def _grader_error(ename: str) -> NotebookNode:
    return _error(ename, GRADER_SENTENCES[ename])


def renumber(nb: NotebookNode) -> NotebookNode:
    """Execution counts (of cells and results) renumbered 1, 2, ... in cell order (in place): code can set the
    kernel's counter to any number, so a count could carry what the code saw. Unexecuted cells stay None."""
    count = 0
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        if cell.get("execution_count") is None:
            number = None
        else:
            count += 1
            number = count
        cell.execution_count = number
        for output in cell.get("outputs", []):
            if output.get("output_type") == "execute_result":
                output["execution_count"] = number
    return nb


def split_hidden(source: str, begin: str = BEGIN, end: str = END) -> list[tuple[str, bool]]:
    """A test cell's source cut into consecutive parts ``(code, hidden)``, in order.

    For a grader that executes each part as its own request: then the outputs of a hidden part are
    known to be hidden (the kernel cannot forge which request produced them) and the feedback can
    keep only that part's verdict. Joined with newlines, the parts give back ``source``. Each part
    keeps the lines of the original cell (delimiter lines go with the hidden part), so a part may
    not compile alone only if the instructor split a statement across a delimiter.
    """
    lines = source.split("\n")
    parts: list[tuple[str, bool]] = []
    number = 1
    for first, last in hidden_regions(source, begin, end):
        if first > number:
            parts.append(("\n".join(lines[number - 1:first - 1]), False))
        parts.append(("\n".join(lines[first - 1:last]), True))
        number = last + 1
    if number <= len(lines):
        parts.append(("\n".join(lines[number - 1:]), False))
    return parts


def hide_hidden_tests(nb: NotebookNode, begin: str = BEGIN, end: str = END, min_length: int = 12) -> NotebookNode:
    """Apply the rules of this module to a graded notebook (in place): hidden code, its tracebacks,
    and every output produced once a hidden test had started to run are removed.

    ``min_length``: hidden lines shorter than this are not searched for in outputs (a line such as
    ``x = 1`` would match far too much)."""
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    quoted: list[str] = []
    for cell in nb.cells:
        if isinstance(cell.get("source"), str):
            quoted += hidden_lines(cell.source, begin, end, min_length)
    hidden_ran = False
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            if hidden_regions(cell.get("source", ""), begin, end):
                cell.source = strip_hidden(cell.source, begin, end)
            continue
        has_hidden = bool(hidden_regions(cell.source, begin, end))
        hidden_ran = hidden_ran or has_hidden
        if _is_test_cell(cell) or has_hidden:
            if hidden_ran:
                hide_test_cell(cell, begin, end)
            else:  # a test cell before any hidden test: only its tracebacks go
                _strip_tracebacks(cell)
        elif hidden_ran:
            hide_after_hidden(cell)
        if quoted:
            outputs = []
            for output in cell.get("outputs", []):
                text = _output_text(output)
                if any(line in text for line in quoted):
                    outputs.append(nbformat.v4.new_output("stream", name="stdout", text=REDACTED))
                else:
                    outputs.append(output)
            cell.outputs = outputs
    return renumber(nb)


def _strip_tracebacks(cell: NotebookNode) -> None:
    cell.outputs = [_error(o.get("ename", "Error"), _cap(o.get("evalue", "")))
                    if o.get("output_type") == "error" and o.get("ename") not in GRADER_ERRORS else o
                    for o in cell.get("outputs", [])]


class HideHiddenTests(NbGraderPreprocessor):
    """nbgrader feedback step: hidden tests, their tracebacks and expected values never reach learners.

    Use it in ``c.GenerateFeedback.preprocessors`` in place of nbgrader's ``ClearHiddenTests``. It sanitizes
    the notebook first (no active content reaches the page).
    """

    begin_test_delimeter = Unicode(BEGIN, help="the line that opens a hidden test region").tag(config=True)
    end_test_delimeter = Unicode(END, help="the line that closes a hidden test region").tag(config=True)
    min_quote_length = Integer(12, help="shortest hidden line searched for in outputs").tag(config=True)

    def preprocess(self, nb, resources):
        sanitize_notebook(nb, new_id=numbered_ids())
        hide_hidden_tests(nb, self.begin_test_delimeter, self.end_test_delimeter, self.min_quote_length)
        if "celltoolbar" in nb.metadata:
            del nb.metadata["celltoolbar"]
        return nb, resources
