"""Feedback that shows learners their visible tests and never the hidden ones.

nbgrader's feedback is the autograded notebook rendered as HTML. Its ``ClearHiddenTests`` step
removes the hidden test *code*, but a failed hidden test still leaves behind its traceback, which
quotes the hidden lines around the failure and, in the error message, the expected value. And a
learner's own cell can print hidden test code after the fact (IPython keeps every executed cell in
``In``). :class:`HideHiddenTests` closes all three holes:

* in every test cell the hidden region is replaced by one comment line;
* an error raised by a **visible** line of a test cell keeps its message (the learner-facing
  "expected ..., got ..., hint ..." of :mod:`lrlab.checks`) but loses its traceback;
* an error raised by a **hidden** line, or one whose origin cannot be told, becomes a fixed
  sentence: a hidden test failed. Other output of such a cell is dropped too;
* any output anywhere in the notebook that quotes a line of hidden test code is replaced by a note.

It is configured in ``nbgrader_config.py`` as a ``GenerateFeedback`` preprocessor (after
``GetGrades``) and ``lrlab grade`` always adds it.

Imports: nbformat, nbgrader and traitlets; nothing of lrlab.
"""

from __future__ import annotations

import re

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer, Unicode

BEGIN = "BEGIN HIDDEN TESTS"
END = "END HIDDEN TESTS"
HIDDEN_MARKER = "# ... hidden tests (not shown in feedback) ..."
HIDDEN_FAILED = (
    "Your answer passes the visible tests but fails a hidden test. Hidden tests use inputs you have not "
    "seen: look for values or special cases that only fit the visible examples."
)
UNKNOWN_FAILED = "A test in this cell failed (the details are hidden because they may quote hidden tests)."
REDACTED = "[output removed from the feedback: it quoted hidden test code]\n"
#: Errors the grader itself writes into a notebook; they quote nothing of the tests.
GRADER_ERRORS = ("GraderStopped", "CellTimeoutError")

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


def hide_test_cell(cell: NotebookNode, begin: str = BEGIN, end: str = END) -> NotebookNode:
    """Apply the rules of this module to one code cell (modified in place and returned)."""
    source = cell.source
    regions = hidden_regions(source, begin, end)
    if not regions:
        return cell
    visible_failure_seen = False
    hidden_failure = False
    errors = []
    for output in cell.get("outputs", []):
        if output.get("output_type") != "error":
            continue
        if output.get("ename") in GRADER_ERRORS:
            errors.append(output)
            continue
        line = failing_line(output.get("traceback", []), cell.get("execution_count"))
        if line is not None and not any(first <= line <= last for first, last in regions):
            visible_failure_seen = True
            errors.append(_error(output.get("ename", "Error"), output.get("evalue", "")))
        elif line is not None:
            hidden_failure = True
            errors.append(_error("HiddenTestFailed", HIDDEN_FAILED))
        else:
            hidden_failure = True
            errors.append(_error("TestFailed", UNKNOWN_FAILED))
    if hidden_failure and not visible_failure_seen:
        cell.outputs = errors  # the cell's other output may come from hidden code
    else:
        kept = []
        errors_iter = iter(errors)
        for output in cell.get("outputs", []):
            kept.append(next(errors_iter) if output.get("output_type") == "error" else output)
        cell.outputs = kept
    cell.source = strip_hidden(source, begin, end)
    return cell


def hide_hidden_tests(nb: NotebookNode, begin: str = BEGIN, end: str = END, min_length: int = 12) -> NotebookNode:
    """Remove hidden tests, their tracebacks and any quote of them from a graded notebook (in place).

    ``min_length``: hidden lines shorter than this are not searched for in outputs (a line such as
    ``x = 1`` would match far too much)."""
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    quoted: list[str] = []
    for cell in nb.cells:
        if isinstance(cell.get("source"), str):
            quoted += hidden_lines(cell.source, begin, end, min_length)
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            if hidden_regions(cell.get("source", ""), begin, end):
                cell.source = strip_hidden(cell.source, begin, end)
            continue
        if _is_test_cell(cell) or hidden_regions(cell.source, begin, end):
            hide_test_cell(cell, begin, end)
        if quoted:
            outputs = []
            for output in cell.get("outputs", []):
                text = _output_text(output)
                if any(line in text for line in quoted):
                    outputs.append(nbformat.v4.new_output("stream", name="stdout", text=REDACTED))
                else:
                    outputs.append(output)
            cell.outputs = outputs
    return nb


class HideHiddenTests(NbGraderPreprocessor):
    """nbgrader feedback step: hidden tests, their tracebacks and expected values never reach learners.

    Use it in ``c.GenerateFeedback.preprocessors`` in place of nbgrader's ``ClearHiddenTests``.
    """

    begin_test_delimeter = Unicode(BEGIN, help="the line that opens a hidden test region").tag(config=True)
    end_test_delimeter = Unicode(END, help="the line that closes a hidden test region").tag(config=True)
    min_quote_length = Integer(12, help="shortest hidden line searched for in outputs").tag(config=True)

    def preprocess(self, nb, resources):
        hide_hidden_tests(nb, self.begin_test_delimeter, self.end_test_delimeter, self.min_quote_length)
        if "celltoolbar" in nb.metadata:
            del nb.metadata["celltoolbar"]
        return nb, resources
