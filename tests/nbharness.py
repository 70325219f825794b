"""Run an assignment's cells in-process, with some answer cells replaced, and report which tests pass.

This is how the test suite checks exercise tests both ways without starting a kernel per variant:
the reference solution passes, a differently written correct answer passes, and each plausible
mistake loses the points of the test cell that should catch it.

It executes the cells of the *source* notebook (hidden tests included) in order, in a fresh namespace,
as nbgrader's autograder does in a kernel: a failing cell is recorded and execution goes on. Each cell's
outputs are kept as a kernel would send them (stdout and stderr streams, Python- and file-descriptor-level,
the value of a last bare expression as ``execute_result``, an ``error``), and every test cell is scored by
nbgrader's own :func:`nbgrader.utils.determine_grade`: an error **or any stderr** gives 0, a number as the
cell's value is partial credit. Warnings follow a fresh kernel's filters and are shown once per place, on
stderr unless the notebook's setup sends them elsewhere; a ``tqdm.auto`` bar is a widget in a kernel (no
stderr), so here it writes to stdout, while a plain ``tqdm`` bar writes to stderr as it does in a kernel.
Magics (lines starting with % or !) are not supported in graded notebooks and are skipped here.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import determine_grade

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("MPLBACKEND", "Agg")
_LOG = logging.getLogger("nbharness")


@dataclass
class CellResult:
    grade_id: str
    points: float
    score: float
    error: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.score >= self.points


@dataclass
class RunReport:
    tests: dict[str, CellResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # non-test cells that raised, by grade_id/index
    outputs: dict[str, list] = field(default_factory=dict)  # the outputs of every code cell, by grade_id/index

    @property
    def score(self) -> float:
        return sum(r.score for r in self.tests.values())

    @property
    def max_score(self) -> float:
        return sum(r.points for r in self.tests.values())

    def failed(self) -> list[str]:
        return [g for g, r in self.tests.items() if not r.passed]

    def lost_to_stderr(self) -> list[str]:
        """Test cells that lost their points only because something wrote to stderr."""
        return [g for g, r in self.tests.items() if not r.passed and not r.error and r.stderr]

    def summary(self) -> str:
        lines = [f"score {self.score}/{self.max_score}"]
        for g, r in self.tests.items():
            why = r.error or (f"stderr: {r.stderr.strip()[:300]}" if r.stderr and not r.passed else "")
            lines.append(f"  {'pass' if r.passed else 'FAIL'} {g} ({r.score}/{r.points})" + (f": {why}" if why else ""))
        for k, e in self.errors.items():
            lines.append(f"  error in {k}: {e}")
        return "\n".join(lines)


def source_notebook(assignment: str) -> nbformat.NotebookNode:
    """The instructor notebook of an assignment (the one .ipynb in source/<assignment>/)."""
    paths = sorted((ROOT / "source" / assignment).glob("*.ipynb"))
    if len(paths) != 1:
        raise FileNotFoundError(f"expected one notebook in source/{assignment}, found {len(paths)}")
    return nbformat.read(paths[0], as_version=4)


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _strip_magics(src: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines())


# The warning filters of a fresh IPython kernel: Python's defaults, plus DeprecationWarnings shown for __main__.
_KERNEL_FILTERS = [
    ("default", DeprecationWarning, "__main__"),
    ("ignore", DeprecationWarning, None),
    ("ignore", PendingDeprecationWarning, None),
    ("ignore", ImportWarning, None),
    ("ignore", ResourceWarning, None),
]


def _show_on_stderr(msg: warnings.WarningMessage) -> None:
    sys.stderr.write(warnings._formatwarnmsg(msg))  # what Python does without a recorder installed


@contextlib.contextmanager
def _fresh_kernel_warnings():
    """Warnings as a fresh kernel shows them (on stderr, once per place), whatever pytest has installed.

    PyTorch warns some things only once per process (TORCH_WARN_ONCE); every run here is a fresh kernel, so
    those warn every time (once per place, by the filters), which is at least as strict as a kernel.
    """
    import torch

    warn_always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, module in reversed(_KERNEL_FILTERS):
            warnings.filterwarnings(action, category=category, module=module or "")
        warnings.showwarning = warnings._showwarning_orig
        warnings._showwarnmsg_impl = _show_on_stderr
        try:
            yield
        finally:
            torch.set_warn_always(warn_always)


@contextlib.contextmanager
def _widget_progress_bars():
    """tqdm.auto draws a widget in a kernel, never on stderr: here it draws on stdout instead."""
    import tqdm.auto
    import tqdm.autonotebook
    import tqdm.std

    class WidgetLike(tqdm.std.tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("file", sys.stdout)
            super().__init__(*args, **kwargs)

    saved = tqdm.auto.tqdm, tqdm.autonotebook.tqdm
    tqdm.auto.tqdm = tqdm.autonotebook.tqdm = WidgetLike
    try:
        yield
    finally:
        tqdm.auto.tqdm, tqdm.autonotebook.tqdm = saved


@contextlib.contextmanager
def _capture_fd2():
    """Collect what C code writes to file descriptor 2 (a kernel sends that to the stderr stream too)."""
    box = {"text": ""}
    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box["text"] = tmp.read().decode(errors="replace")


def _run_cell(src: str, name: str, ns: dict) -> tuple[list, str, str]:
    """Execute one cell as IPython would; return its nbformat outputs, the error text and the stderr text."""
    try:
        tree = ast.parse(src, filename=name)
    except SyntaxError as exc:  # the cell fails, as in a kernel; the notebook goes on
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1]
        return [nbformat.v4.new_output("error", ename="SyntaxError", evalue=error.partition(": ")[2],
                                       traceback=[error])], error, ""
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not src.rstrip().endswith(";"):
        last = ast.Expression(tree.body.pop().value)
    out, err = io.StringIO(), io.StringIO()
    error = ""
    value = None
    with _capture_fd2() as fd2, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            exec(compile(tree, name, "exec"), ns)  # noqa: S102
            if last is not None:
                value = eval(compile(last, name, "eval"), ns)  # noqa: S307
        except BaseException as exc:  # noqa: BLE001 - SystemExit etc. fail the cell as in a kernel
            if isinstance(exc, KeyboardInterrupt):
                raise
            error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        sys.stdout.flush()
        sys.stderr.flush()
    stderr = err.getvalue() + fd2["text"]
    outputs = []
    if out.getvalue():
        outputs.append(nbformat.v4.new_output("stream", name="stdout", text=out.getvalue()))
    if stderr:
        outputs.append(nbformat.v4.new_output("stream", name="stderr", text=stderr))
    if value is not None and not error:
        outputs.append(nbformat.v4.new_output("execute_result", data={"text/plain": repr(value)}, execution_count=1))
    if error:
        name_, _, text = error.partition(": ")
        outputs.append(nbformat.v4.new_output("error", ename=name_, evalue=text, traceback=[error]))
    return outputs, error, stderr


def score_cell(cell: nbformat.NotebookNode, outputs: list) -> float:
    """The points nbgrader's autograder gives a test cell with these outputs (its own determine_grade)."""
    graded = nbformat.v4.new_code_cell(cell.source, metadata=cell.metadata, outputs=outputs)
    try:
        score, _ = determine_grade(graded, _LOG)
    except ValueError:  # e.g. a partial credit above the cell's points: the autograder stops on it
        return 0.0
    return float(score or 0.0)


def run_assignment(assignment: str, replace: dict[str, str] | None = None, params: dict | None = None,
                   stop_after: str | None = None) -> RunReport:
    """Execute the source notebook of ``assignment`` in-process and score its test cells as nbgrader would.

    replace:    grade_id -> new source for that cell (a learner's answer variant).
    params:     values assigned after the parameters cell (as papermill would inject them).
    stop_after: a grade_id; execution stops after that cell (to test an early exercise quickly).
    """
    return run_notebook(source_notebook(assignment), ROOT / "source" / assignment, replace, params, stop_after)


def run_notebook(nb: nbformat.NotebookNode, workdir: Path, replace: dict[str, str] | None = None,
                 params: dict | None = None, stop_after: str | None = None) -> RunReport:
    """:func:`run_assignment` for any notebook, run in ``workdir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    replace = dict(replace or {})
    known = {_grade_id(c) for c in nb.cells}
    unknown = set(replace) - known
    if unknown:
        raise KeyError(f"no cell with grade_id {sorted(unknown)} in this notebook")
    if stop_after is not None and stop_after not in known:
        raise KeyError(f"no cell with grade_id {stop_after!r} in this notebook")
    ns: dict = {"__name__": "__main__"}
    report = RunReport()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with _fresh_kernel_warnings(), _widget_progress_bars():
            for i, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                gid = _grade_id(cell)
                src = replace.get(gid, cell.source)
                meta = cell.get("metadata", {})
                if "parameters" in meta.get("tags", []) and params:
                    src = src + "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
                outputs, err, stderr = _run_cell(_strip_magics(src), f"<cell {gid or i}>", ns)
                plt.close("all")
                report.outputs[gid or str(i)] = outputs
                nbg = meta.get("nbgrader", {})
                if nbg.get("grade"):
                    report.tests[gid] = CellResult(gid, float(nbg.get("points", 0)), score_cell(cell, outputs),
                                                   err, stderr)
                elif err:
                    report.errors[gid or str(i)] = err
                if stop_after is not None and gid == stop_after:
                    break
    finally:
        os.chdir(cwd)
    return report


def answer_source(assignment: str, grade_id: str) -> str:
    """The reference source of an answer cell (handy to build variants by small edits)."""
    for cell in source_notebook(assignment).cells:
        if _grade_id(cell) == grade_id:
            return cell.source
    raise KeyError(grade_id)


def assert_full_marks(report: RunReport, points: float | None = None) -> None:
    """Every test cell passed and no other cell raised (and, when given, the autograded total is ``points``)."""
    assert report.failed() == [], report.summary()
    assert not report.errors, report.summary()
    if points is not None:
        assert report.score == report.max_score == points, report.summary()


def assert_caught(report: RunReport, grade_id: str, mistake: str) -> None:
    """The mistake in answer ``grade_id`` made its test cell ``<grade_id>_tests`` fail and cost points."""
    assert f"{grade_id}_tests" in report.failed(), f"{mistake!r} was not caught:\n{report.summary()}"
    assert report.score < report.max_score


def assert_shortcut_caught(report: RunReport, grade_id: str, name: str) -> None:
    """A shortcut into lrlab in answer ``grade_id`` scored its test cell 0 and told the learner to write it."""
    result = report.tests[f"{grade_id}_tests"]
    assert result.score == 0, f"the shortcut in {grade_id} kept points:\n{report.summary()}"
    assert "ShortcutUsed" in result.error and f"write {name} without lrlab." in result.error, report.summary()


def assert_no_stderr(report: RunReport) -> None:
    """No test cell wrote to stderr (so none lost points to it)."""
    noisy = {g: r.stderr for g, r in report.tests.items() if r.stderr}
    assert not noisy, f"test cells wrote to stderr: {noisy}\n{report.summary()}"
