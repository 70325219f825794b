"""Run an assignment's cells in-process, with some answer cells replaced, and report which tests pass.

This is how the test suite checks exercise tests both ways without starting a kernel per variant:
the reference solution passes, a differently written correct answer passes, and each plausible
mistake loses the points of the test cell that should catch it.

It executes the cells of the *source* notebook (hidden tests included) in order, in a fresh namespace,
exactly as nbgrader's autograder does in a kernel: a failing cell is recorded and execution goes on.
Magics (lines starting with % or !) are not supported in graded notebooks and are skipped here.
"""

from __future__ import annotations

import contextlib
import io
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")


@dataclass
class CellResult:
    grade_id: str
    points: float
    passed: bool
    error: str = ""


@dataclass
class RunReport:
    tests: dict[str, CellResult] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # non-test cells that raised, by grade_id/index

    @property
    def score(self) -> float:
        return sum(r.points for r in self.tests.values() if r.passed)

    @property
    def max_score(self) -> float:
        return sum(r.points for r in self.tests.values())

    def failed(self) -> list[str]:
        return [g for g, r in self.tests.items() if not r.passed]

    def summary(self) -> str:
        lines = [f"score {self.score}/{self.max_score}"]
        for g, r in self.tests.items():
            lines.append(f"  {'pass' if r.passed else 'FAIL'} {g}" + (f": {r.error}" if r.error else ""))
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


def run_assignment(assignment: str, replace: dict[str, str] | None = None, params: dict | None = None,
                   stop_after: str | None = None) -> RunReport:
    """Execute the source notebook of ``assignment`` in-process.

    replace:    grade_id -> new source for that cell (a learner's answer variant).
    params:     values assigned after the parameters cell (as papermill would inject them).
    stop_after: a grade_id; execution stops after that cell (to test an early exercise quickly).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nb = source_notebook(assignment)
    replace = dict(replace or {})
    known = {_grade_id(c) for c in nb.cells}
    unknown = set(replace) - known
    if unknown:
        raise KeyError(f"no cell with grade_id {sorted(unknown)} in {assignment}")
    if stop_after is not None and stop_after not in known:
        raise KeyError(f"no cell with grade_id {stop_after!r} in {assignment}")
    ns: dict = {"__name__": "__main__"}
    report = RunReport()
    cwd = os.getcwd()
    os.chdir(ROOT / "source" / assignment)
    try:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            gid = _grade_id(cell)
            src = replace.get(gid, cell.source)
            meta = cell.get("metadata", {})
            if "parameters" in meta.get("tags", []) and params:
                src = src + "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())
            err = ""
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    exec(compile(_strip_magics(src), f"<cell {gid or i}>", "exec"), ns)  # noqa: S102
                except BaseException as exc:  # noqa: BLE001 - SystemExit etc. fail the cell as in a kernel
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    err = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            plt.close("all")
            nbg = meta.get("nbgrader", {})
            if nbg.get("grade") and cell.cell_type == "code":
                report.tests[gid] = CellResult(gid, float(nbg.get("points", 0)), not err, err)
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
