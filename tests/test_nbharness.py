"""The in-process harness scores test cells exactly as a kernel run graded by nbgrader does (errors and stderr)."""

import nbformat
import pytest
from nbclient import NotebookClient
from nbgrader.utils import determine_grade

from nbharness import ROOT, run_notebook

# (grade_id, source, points nbgrader gives it) - stderr of any kind, an error, a number as the cell's value
CELLS = [
    ("plain_print", 'print("the visible tests pass")', 2),
    ("print_to_stderr", 'print("progress", file=sys.stderr)', 0),
    ("warning", 'warnings.warn("careful", UserWarning)', 0),
    ("runtime_warning_from_numpy", "np.log(np.zeros(1))", 0),
    ("deprecation_warning_in_main", 'warnings.warn("old", DeprecationWarning)', 0),
    ("failed_check", 'raise AssertionError("expected 1, got 2")', 0),
    ("partial_credit", "1.5", 1.5),
    ("partial_credit_silenced", "1.5;", 2),
    ("text_value", '"done"', 2),
    # ipykernel forwards file descriptor 2 from a thread: give it time to land in this cell's output
    ("c_level_stderr", '_ = os.write(2, b"from C\\n")\ntime.sleep(1.0)', 0),
    ("plain_tqdm_bar", "from tqdm import tqdm\nfor _ in tqdm(range(3)):\n    pass", 0),
    ("tqdm_auto_bar", "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass", 2),
    ("warning_after_lrlab_setup", 'lrlab.setup(0, "cpu")\nwarnings.warn("careful again", UserWarning)', 2),
    ("own_work_keeps_stderr_off", 'checks.own_work(noisy, "noisy", ["lrlab.data"])()', 2),
    ("passed_but_wrote_to_stderr", 'sys.stderr.write("stray\\n")\nchecks.passed("thing")', 0),
]

SETUP = '''import os, sys, time, warnings
import numpy as np
import lrlab
from lrlab import checks

def noisy():
    print("to stderr", file=sys.stderr)
    warnings.warn("from the learner", RuntimeWarning)
    os.write(2, b"C level\\n")
'''


def _notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(SETUP, metadata={"nbgrader": {"grade_id": "setup", "grade": False}}))
    for gid, src, _ in CELLS:
        meta = {"nbgrader": {"grade_id": gid, "grade": True, "solution": False, "points": 2, "locked": True}}
        nb.cells.append(nbformat.v4.new_code_cell(src, metadata=meta))
    return nb


@pytest.mark.slow
def test_harness_scores_every_cell_as_nbgrader_does_after_a_real_kernel(tmp_path, monkeypatch):
    harness = run_notebook(_notebook(), tmp_path)
    kernel_nb = _notebook()
    # a kernel started from inside pytest leaves file descriptor 2 alone; a grading run does not
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    NotebookClient(kernel_nb, kernel_name="python3", allow_errors=True, timeout=120,
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    kernel = {c.metadata["nbgrader"]["grade_id"]: determine_grade(c)[0] for c in kernel_nb.cells
              if c.metadata["nbgrader"].get("grade")}
    expected = {gid: points for gid, _, points in CELLS}
    got = {gid: harness.tests[gid].score for gid in expected}
    assert kernel == expected, "the kernel run no longer gives what this test expects"
    assert got == kernel, harness.summary()
    noted = [c.metadata["nbgrader"]["grade_id"] for c in kernel_nb.cells
             if any("autograder scores a test cell with stderr output 0" in o.get("text", "") for o in c.outputs)]
    assert noted == ["passed_but_wrote_to_stderr"]  # in a kernel, the cell says why it lost its points
    assert sorted(harness.lost_to_stderr()) == sorted(
        gid for gid, _, points in CELLS if points == 0 and gid != "failed_check")
