"""The in-process harness that the variant tests use scores a variant exactly as ``lrlab grade`` does.

A sample of variants of ``04_convergence`` (other idioms, a mistake, a shortcut into lrlab, honest warnings and
stderr, an answer that raises, a syntax error) is written as learners' submissions and graded by ``lrlab grade``
(sandboxed kernels, nbgrader's autograder); each test cell must get the score that ``run_assignment`` gives the
same variant. So no variant test can pass in the suite and fail in grading.
"""

from __future__ import annotations

import copy

import nbformat
import pytest
import test_assignment_04 as A04

from lrlab.course.grading.batch import grade

from coursecopy import copy_course
from nbharness import run_assignment, source_notebook

pytestmark = [pytest.mark.slow, pytest.mark.sandbox]

ASSIGNMENT = A04.A
VARIANTS = {
    "idioms": A04.CORRECT_B,
    "mistake": {"paired_interval": A04.MISTAKES["paired: normal quantile 1.96 instead of t"][1],
                "step_lrs": A04.MISTAKES["last partial batch dropped"][1]},
    "shortcut": {"paired_interval": A04.SHORTCUTS["paired_interval"],
                 "oscillation": A04.SHORTCUTS_1_TO_6["oscillation"]},
    "stderr": {"smooth_losses": '''
import sys

def smooth_losses(losses, beta=0.9):
    print("smoothing", file=sys.stderr)
    out, a = [], 0.0
    for n, x in enumerate(losses, 1):
        a = beta * a + (1 - beta) * float(x)
        out.append(a / (1 - beta ** n))
    return out
''', "mc_budget": 'import warnings\nwarnings.warn("unsure", UserWarning)\nANSWER_BUDGET = "B"'},
    "raises": {"classify_run": "def classify_run(*args, **kwargs):\n    return undefined_name",
               "plateau_start": "def plateau_start(values, patience=3, rel_tol=0.01):\n    return (\n"},
}


def _submission(replace: dict[str, str]) -> nbformat.NotebookNode:
    nb = copy.deepcopy(source_notebook(ASSIGNMENT))
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in replace:
            cell.source = replace[gid]
    return nb


def test_the_harness_scores_variants_as_lrlab_grade_does(tmp_path):
    root = copy_course(tmp_path / "course", [ASSIGNMENT])
    for student, replace in VARIANTS.items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(_submission(replace), str(folder / f"{ASSIGNMENT}.ipynb"))
    report = grade(ASSIGNMENT, root=root, jobs=2, feedback=False)
    assert all(r.status == "graded" for r in report.results), report.summary()

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        graded = {(sub.student.id, g.name): g.auto_score for sub in gb.assignment_submissions(ASSIGNMENT)
                  for nb in sub.notebooks for g in nb.grades if g.cell_type == "code"}
    for student, replace in VARIANTS.items():
        harness = run_assignment(ASSIGNMENT, replace=replace)
        ours = {gid: r.score for gid, r in harness.tests.items()}
        theirs = {gid: graded[(student, gid)] for gid in ours}
        assert ours == theirs, f"{student}: harness {ours} vs lrlab grade {theirs}\n{harness.summary()}"
    # the sample is not blind: it has full marks, lost points and zeros
    scores = {s: sum(graded[(s, g)] for g in ours) for s in VARIANTS}
    assert scores["idioms"] == scores["stderr"] == A04.POINTS
    assert scores["mistake"] < A04.POINTS and scores["shortcut"] < A04.POINTS and scores["raises"] < A04.POINTS
