"""Grading phase 3, scoring (lrlab.course.grading.scoring): nbgrader's Autograde with execution replayed from the
box, the reading of a graded notebook (limits hit, hidden tests failed), and the gradebook writes around it."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from hostile import ASSIGNMENT, MEAN_TESTS, SQUARE_TESTS, build_toy_course

from lrlab.course.grading import gradebook, sandbox, scoring
from lrlab.course.grading.executor import Job


def _test_cell(grade_id: str, source: str, outputs: list, count: int = 5):
    cell = nbformat.v4.new_code_cell(source, execution_count=count, outputs=outputs)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": 1,
                                 "solution": False, "schema_version": 3, "task": False}
    return cell


def _error(ename: str, evalue: str = "", line: int | None = None, count: int = 5):
    traceback = ["---", f"Cell In[{count}], line {line}"] if line else ["---"]
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[*traceback, f"{ename}: {evalue}"])


def test_diagnose_names_limits_and_hidden_test_failures():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# text"),
        _test_cell("square_tests", SQUARE_TESTS, [_error("AssertionError", "HIDDEN-SQUARE", line=4)]),
        _test_cell("mean_tests", MEAN_TESTS, [_error("AssertionError", "mean([1, 2, 3]) should be 2", line=1)]),
        nbformat.v4.new_code_cell("while True: pass", outputs=[_error("CellTimeoutError", "timed out")]),
        nbformat.v4.new_code_cell("x = bytearray(2**40)", outputs=[_error("MemoryError")]),
        _test_cell("stopped", SQUARE_TESTS, [_error("GraderStopped", "not run", line=4)]),
    ]
    reasons, hidden = scoring.diagnose(nb, sandbox.Limits(memory_bytes=2 * sandbox.GiB))
    assert hidden == ["square_tests"]  # the visible failure of mean_tests and the stopped cell are not hidden ones
    assert reasons == ["cell 4 ran past the per-cell time limit and was interrupted",
                       "cell 5 ran out of memory (the sandbox allows 2 GB per process)"]


def test_diagnose_of_a_clean_notebook_is_empty():
    nb = nbformat.v4.new_notebook()
    nb.cells = [_test_cell("square_tests", SQUARE_TESTS, [nbformat.v4.new_output("stream", name="stdout",
                                                                                   text="ok")])]
    assert scoring.diagnose(nb, sandbox.Limits()) == ([], [])


def test_replay_hands_back_the_run_from_the_box_when_the_notebook_matches(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(1)")]
    executed = nbformat.v4.new_notebook()
    executed.cells = [nbformat.v4.new_code_cell("print(1)", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="1\n")])]
    job = Job("s1", ASSIGNMENT, nb, tmp_path, tmp_path / "r", executed=executed, started=True)
    replay = type("Replay", (scoring.ReplayExecute,), {"jobs": {job.key: job}, "rerun": []})
    resources = {"nbgrader": {"student": "s1", "notebook": ASSIGNMENT, "assignment": ASSIGNMENT}}
    out, _ = replay().preprocess(nbformat.from_dict(nb), resources)
    assert out.cells[0].outputs[0].text == "1\n" and out is not executed  # a copy
    assert replay.rerun == []


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return build_toy_course(tmp_path_factory.mktemp("toy"), students=["nobody"])


def test_autograde_config_swaps_nbgraders_execute_for_the_replay(course, tmp_path):
    from nbgrader.preprocessors import Execute

    config = gradebook.load_config(course)
    replay = type("Replay", (scoring.ReplayExecute,), {"jobs": {}, "rerun": []})
    cfg = scoring._autograde_config(config, ASSIGNMENT, "s1", tmp_path, replay)
    steps = cfg.Autograde.autograde_preprocessors
    assert replay in steps and not any(isinstance(s, type) and issubclass(s, Execute) for s in steps)
    assert cfg.Autograde.sanitize_preprocessors[0].__name__ == "RepairGradeMetadata"
    assert cfg.CourseDirectory.student_id == "s1" and cfg.CourseDirectory.submitted_directory == str(tmp_path)


def test_a_submission_without_notebooks_scores_zero_in_the_gradebook(course):
    db_url = gradebook.coursedir(gradebook.load_config(course)).db_url
    assert gradebook.gradebook_score(db_url, ASSIGNMENT, "nobody") == (0.0, 6.0, False)  # no submission yet
    gradebook.zero_submission(db_url, ASSIGNMENT, "nobody")
    assert gradebook.gradebook_score(db_url, ASSIGNMENT, "nobody") == (0.0, 6.0, False)
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb:
        grades = {g.name: g.auto_score for nb in gb.find_submission(ASSIGNMENT, "nobody").notebooks
                  for g in nb.grades}
    assert grades and set(grades.values()) == {0}
