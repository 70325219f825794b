"""Grading phase 4, reports (lrlab.course.grading.reports): the per-student table, the summary, the grades CSV,
and the feedback configuration that always removes hidden tests."""

from __future__ import annotations

import csv

import pytest
from hostile import ASSIGNMENT, build_toy_course

from lrlab.course.grading import gradebook, reports
from lrlab.course.grading.feedback import HideHiddenTests


def _report(**kw) -> reports.GradeReport:
    results = [
        reports.StudentResult("ann", "graded", score=5, max_score=6, needs_manual=True),
        reports.StudentResult("bob", "problems", score=2, max_score=6,
                              reasons=["cell 'square' ran past the per-cell time limit and was interrupted",
                                       "test cell 'square_tests' was deleted; restored from the source and run"]),
        reports.StudentResult("cem", "graded", score=3, max_score=6, hidden_failures=["square_tests"]),
        reports.StudentResult("dan", "missing", reasons=["no submission found"]),
        reports.StudentResult("eve", "error", reasons=["nbgrader could not grade it: boom"]),
    ]
    return reports.GradeReport(ASSIGNMENT, results, notes=["skipped notes.txt: not a notebook"], seconds=12.3, **kw)


def test_table_has_one_row_per_student_with_its_first_reason():
    lines = _report().table().splitlines()
    assert lines[0].split() == ["student", "score", "status", "reasons"] and set(lines[1]) <= {"-", " "}
    rows = {line.split()[0]: line for line in lines[2:]}
    assert list(rows) == ["ann", "bob", "cem", "dan", "eve"]
    assert "5/6 +manual" in rows["ann"]
    assert rows["bob"].endswith("ran past the per-cell time limit and was interrupted (+1 more)")
    assert rows["cem"].endswith("hidden tests fail in 'square_tests'")
    assert "missing" in rows["dan"] and rows["dan"].endswith("no submission found")


def test_summary_counts_means_and_lists_every_problem():
    text = _report().summary()
    assert f"{ASSIGNMENT}: 5 students (2 graded, 1 graded with problems, 1 missing, 1 not gradable)" in text
    assert "mean score of graded submissions: 3.33 / 6" in text  # ann 5, bob 2, cem 3
    assert "sandboxed, 12.3 s" in text
    assert "  bob: test cell 'square_tests' was deleted; restored from the source and run" in text
    assert "  cem: square_tests" in text and "note: skipped notes.txt: not a notebook" in text
    assert "NOT sandboxed (--unsafe)" in _report(sandboxed=False).summary()
    assert _report().by_student()["eve"].status == "error"


def test_write_csv_has_a_row_per_student(tmp_path):
    report = _report()
    path = reports.write_csv(report, tmp_path / "grades" / "toy.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["student_id"] for r in rows] == ["ann", "bob", "cem", "dan", "eve"]
    assert rows[0] == {"student_id": "ann", "assignment": ASSIGNMENT, "score": "5", "max_score": "6",
                       "needs_manual_grade": "True", "status": "graded", "reasons": "", "hidden_test_failures": ""}
    assert rows[1]["reasons"] == "; ".join(report.results[1].reasons)
    assert rows[2]["hidden_test_failures"] == "square_tests"


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return gradebook.load_config(build_toy_course(tmp_path_factory.mktemp("toy")))


def test_feedback_config_always_hides_hidden_tests(config):
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades

    config.GenerateFeedback.preprocessors = ["nbgrader.preprocessors.ClearHiddenTests",
                                             "nbgrader.preprocessors.GetGrades"]
    steps = reports.feedback_config(config, ASSIGNMENT, "ann").GenerateFeedback.preprocessors
    assert steps == [GetGrades, HideHiddenTests]
    assert ClearHiddenTests not in steps
    config.GenerateFeedback.preprocessors = []
    steps = reports.feedback_config(config, ASSIGNMENT, "ann").GenerateFeedback.preprocessors
    assert HideHiddenTests in steps and steps.index(HideHiddenTests) == steps.index(GetGrades) + 1


def test_the_grading_package_exports_its_main_names_on_first_use():
    import lrlab.course.grading as grading
    from lrlab.course.grading import batch

    assert grading.GradeReport is reports.GradeReport and grading.StudentResult is reports.StudentResult
    assert grading.grade is batch.grade and grading.default_jobs() >= 1
    with pytest.raises(AttributeError, match="no attribute 'generate_feedback'"):
        grading.generate_feedback  # noqa: B018
