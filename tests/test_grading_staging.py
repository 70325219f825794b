"""Grading phase 0, staging (lrlab.course.grading.staging): submissions copied into nbgrader's layout without
trusting them; and the gradebook helpers it relies on (lrlab.course.grading.gradebook)."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import nbformat
import pytest
from hostile import ASSIGNMENT, build_toy_course, reference_notebook, release_notebook

from lrlab.course.errors import CourseError, GradingError
from lrlab.course.grading import gradebook, staging


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    return build_toy_course(tmp_path_factory.mktemp("toy"), students=["alice", "carol"])


@pytest.fixture(scope="module")
def config(course):
    return gradebook.load_config(course)


def _write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def test_errors_are_one_family():
    assert issubclass(GradingError, CourseError)
    from lrlab.course.errors import SandboxUnavailable

    assert issubclass(SandboxUnavailable, CourseError)


def test_load_config_and_the_gradebook(course, config, tmp_path):
    assert gradebook.coursedir(config).root == str(course)
    folders = gradebook.coursedir(config)
    assert gradebook.notebook_names(folders.db_url, ASSIGNMENT) == [ASSIGNMENT]
    assert gradebook.notebook_names(folders.db_url, "no_such_assignment") == []
    assert gradebook.ensure_in_gradebook(config, ASSIGNMENT) == [ASSIGNMENT]
    assert gradebook.source_notebook(config, ASSIGNMENT, ASSIGNMENT) == course / "source" / ASSIGNMENT / "toy.ipynb"
    with pytest.raises(GradingError, match="neither in the gradebook nor in"):
        gradebook.ensure_in_gradebook(config, "99_nothing")
    with pytest.raises(GradingError, match="has no nbgrader_config.py"):
        gradebook.load_config(tmp_path)


def test_gradebook_cells_know_points_flags_and_sources(config):
    from nbgrader.api import Gradebook

    with Gradebook(gradebook.coursedir(config).db_url) as gb:
        cells = gradebook.gradebook_cells(gb, ASSIGNMENT, ASSIGNMENT)
    assert cells["square_tests"]["grade"] and cells["square_tests"]["points"] == 2.0
    assert cells["square_tests"]["locked"] and "HIDDEN-SQUARE" in cells["square_tests"]["source"]
    assert cells["square"]["solution"] and not cells["square"]["grade"]
    assert cells["explain"]["grade"] and cells["explain"]["solution"] and cells["explain"]["points"] == 1.0


def test_stage_submissions_in_nbgrader_layout_and_flat_files(course, config, tmp_path):
    source = tmp_path / "in"
    _write(reference_notebook(course), source / "alice" / ASSIGNMENT / "toy.ipynb")
    (source / "alice" / ASSIGNMENT / "data.csv").write_text("1,2")
    os.symlink("/etc/passwd", source / "alice" / ASSIGNMENT / "passwd")
    (source / "dave" / ASSIGNMENT).mkdir(parents=True)
    (source / "dave" / ASSIGNMENT / "toy.ipynb").write_text("{ not json")
    (source / "bad id!" / ASSIGNMENT).mkdir(parents=True)
    _write(release_notebook(course), source / f"bob_{ASSIGNMENT}.ipynb")
    (source / "notes.txt").write_text("hello")
    _write(release_notebook(course), source / "erin_other.ipynb")
    staged_root, subs, notes = staging.stage_submissions(config, ASSIGNMENT, [ASSIGNMENT], source, tmp_path / "st")

    assert staged_root == tmp_path / "st" / "submitted"
    by = {s.student: s for s in subs}
    assert sorted(by) == ["alice", "bob", "carol", "dave"]
    alice = by["alice"]
    assert sorted(p.name for p in alice.folder.iterdir()) == ["data.csv", "toy.ipynb"]
    assert alice.reasons == ["skipped passwd (not a regular file)"]
    assert (by["bob"].folder / "toy.ipynb").is_file() and by["bob"].reasons == []
    assert by["carol"].folder is None and by["carol"].reasons == ["no submission found"]
    assert not (by["dave"].folder / "toy.ipynb").exists()  # graded as missing
    assert any("toy.ipynb is not a valid notebook" in r for r in by["dave"].reasons)
    assert "skipped bad id!/: not a usable student id" in notes
    assert "skipped notes.txt: not a notebook" in notes
    assert f"skipped erin_other.ipynb: not named <student>_{ASSIGNMENT}.ipynb" in notes


def test_stage_submissions_from_a_zip_and_bad_sources(course, config, tmp_path):
    export = tmp_path / "export.zip"
    nb_text = nbformat.writes(reference_notebook(course))
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr(f"lms/alice_{ASSIGNMENT}.ipynb", nb_text)
    _, subs, _ = staging.stage_submissions(config, ASSIGNMENT, [ASSIGNMENT], export, tmp_path / "st")
    assert {s.student: s.folder is not None for s in subs} == {"alice": True, "carol": False}

    with pytest.raises(GradingError, match="no submissions at"):
        staging.stage_submissions(config, ASSIGNMENT, [ASSIGNMENT], tmp_path / "missing", tmp_path / "s2")
    text = tmp_path / "grades.txt"
    text.write_text("x")
    with pytest.raises(GradingError, match="must be a folder or a .zip file"):
        staging.stage_submissions(config, ASSIGNMENT, [ASSIGNMENT], text, tmp_path / "s3")


@pytest.mark.parametrize("name", ["../escape.ipynb", "/abs/path.ipynb"])
def test_safe_extract_refuses_unsafe_paths(tmp_path, name):
    export = tmp_path / "evil.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr(name, "x")
    with pytest.raises(GradingError, match="unsafe path"):
        staging.safe_extract(export, tmp_path / "out")
    assert not (tmp_path / "escape.ipynb").exists()
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(GradingError, match="not a readable zip file"):
        staging.safe_extract(tmp_path / "broken.zip", tmp_path / "out2")


def test_copy_regular_files_stops_at_the_size_limit(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"x" * 600)
    (src / "b.bin").write_bytes(b"x" * 600)
    monkeypatch.setattr(staging, "MAX_SUBMISSION_BYTES", 1000)
    skipped = staging.copy_regular_files(src, tmp_path / "dest", [])
    assert skipped == ["b.bin (submission larger than 0 MB)"]
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["a.bin"]


def test_check_notebook_and_student_ids(tmp_path):
    good = _write(nbformat.v4.new_notebook(), tmp_path / "good.ipynb")
    assert staging.check_notebook(good) is None
    (tmp_path / "bad.ipynb").write_text("[]")
    assert "bad.ipynb is not a valid notebook" in staging.check_notebook(tmp_path / "bad.ipynb")
    assert staging.STUDENT_ID.match("anna.b@uni+1") and not staging.STUDENT_ID.match("../x")
    m = staging.flat_pattern("01_x", ["a", "a_b"]).match("anna_k_01_x_a_b.ipynb")
    assert m.group("student") == "anna_k" and m.group("notebook") == "a_b"
    assert staging.flat_pattern("01_x", ["a"]).match("anna_01_x.ipynb").group("notebook") is None


def test_working_files_take_the_submission_then_the_source(course, config, tmp_path):
    submitted = tmp_path / "sub"
    submitted.mkdir()
    (submitted / "answer.txt").write_text("mine")
    (submitted / "toy.ipynb").write_text("{}")
    (course / "source" / ASSIGNMENT / "answer.txt").write_text("the course's")
    try:
        staging.working_files(config, ASSIGNMENT, submitted, tmp_path / "work")
    finally:
        (course / "source" / ASSIGNMENT / "answer.txt").unlink()
    assert (tmp_path / "work" / "answer.txt").read_text() == "the course's"
    assert not (tmp_path / "work" / "toy.ipynb").exists()
