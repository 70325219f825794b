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


@pytest.mark.parametrize("name", ["../escape.ipynb", "/abs/path.ipynb", "a/./b.ipynb"])
def test_safe_extract_skips_unsafe_paths(tmp_path, name):
    export = tmp_path / "evil.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr(name, "x")
        archive.writestr("ok.txt", "fine")
    assert staging.safe_extract(export, tmp_path / "out") == [(name, "an unsafe path")]
    assert not (tmp_path / "escape.ipynb").exists() and (tmp_path / "out" / "ok.txt").read_text() == "fine"
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(GradingError, match="not a readable zip file"):
        staging.safe_extract(tmp_path / "broken.zip", tmp_path / "out2")


def _special(archive: zipfile.ZipFile, name: str, mode: int, data: str = "x") -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    archive.writestr(info, data)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_zip_hazards_touch_only_their_students_row(course, config, tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "MAX_SUBMISSION_BYTES", 10_000)  # the whole export may unpack to 100 kB
    nb_text = nbformat.writes(reference_notebook(course))
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr(f"lms/alice/{ASSIGNMENT}/toy.ipynb", nb_text)
        archive.writestr(f"lms/bob/{ASSIGNMENT}/toy.ipynb", nb_text)
        archive.writestr(f"lms/bob/{ASSIGNMENT}/data", "a file")
        archive.writestr(f"lms/bob/{ASSIGNMENT}/data/more.csv", "x" * 90_000)  # clashes; must not count
        archive.writestr(f"lms/carol_{ASSIGNMENT}.ipynb", nb_text)
        archive.writestr(f"lms/carol_{ASSIGNMENT}.ipynb", "x" * 90_000)  # the same name again
        _special(archive, f"lms/dave_{ASSIGNMENT}.ipynb", 0o010644)  # a FIFO
        _special(archive, f"lms/erin/{ASSIGNMENT}/toy.ipynb", 0o020644)  # a device
        _special(archive, f"lms/frank_{ASSIGNMENT}.ipynb", 0o120777, "/etc/passwd")  # a symbolic link
        archive.writestr("lms/../../escape.txt", "x")
    _, subs, notes = staging.stage_submissions(config, ASSIGNMENT, [ASSIGNMENT], export, tmp_path / "st")
    by = {s.student: s for s in subs}
    assert by["alice"].reasons == [] and (by["alice"].folder / "toy.ipynb").is_file()
    assert by["bob"].reasons == [f"skipped bob/{ASSIGNMENT}/data/more.csv in the zip: a file and a folder of the "
                                 "same name"]
    assert (by["bob"].folder / "toy.ipynb").is_file() and (by["bob"].folder / "data").read_text() == "a file"
    assert by["carol"].reasons == [f"skipped carol_{ASSIGNMENT}.ipynb in the zip: the same name appears twice in "
                                   "the zip"]
    assert (by["carol"].folder / "toy.ipynb").read_text() == nb_text
    assert by["dave"].folder is None and by["dave"].reasons == [
        f"skipped dave_{ASSIGNMENT}.ipynb in the zip: a FIFO", "no submission found"]
    assert by["erin"].folder is None and "a device" in by["erin"].reasons[0]
    assert by["frank"].folder is None and "a symbolic link" in by["frank"].reasons[0]
    assert "skipped lms/../../escape.txt in the zip: an unsafe path" in notes


def test_flat_hazards_touch_only_their_students_row(course, config, tmp_path):
    source = tmp_path / "in"
    _write(reference_notebook(course), source / f"alice_{ASSIGNMENT}.ipynb")
    _write(reference_notebook(course), source / f"bob_{ASSIGNMENT}.ipynb")
    _write(release_notebook(course), source / f"bob_{ASSIGNMENT}_{ASSIGNMENT}.ipynb")  # the same notebook again
    os.mkfifo(source / f"carol_{ASSIGNMENT}.ipynb")
    os.symlink(source / f"alice_{ASSIGNMENT}.ipynb", source / f"dave_{ASSIGNMENT}.ipynb")
    _, subs, _ = staging.stage_submissions(config, ASSIGNMENT, [ASSIGNMENT], source, tmp_path / "st")
    by = {s.student: s for s in subs}
    assert by["alice"].reasons == []
    assert by["bob"].reasons == [f"bob_{ASSIGNMENT}.ipynb, bob_{ASSIGNMENT}_{ASSIGNMENT}.ipynb are all toy.ipynb of "
                                 "this student; none of them is graded", "toy.ipynb is missing from the submission; "
                                 "it scores 0"]
    assert by["carol"].folder is None and by["carol"].reasons[0] == (
        f"skipped carol_{ASSIGNMENT}.ipynb: a FIFO, not a regular file")
    assert by["dave"].folder is None and "a symbolic link" in by["dave"].reasons[0]


def test_copy_regular_files_stops_at_the_size_limit(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"x" * 600)
    (src / "b.bin").write_bytes(b"x" * 600)
    (src / "c.bin").write_bytes(b"x" * 300)  # fits: the skipped b.bin does not count
    monkeypatch.setattr(staging, "MAX_SUBMISSION_BYTES", 1000)
    skipped = staging.copy_regular_files(src, tmp_path / "dest", [])
    assert skipped == ["b.bin (submission larger than 0 MB)"]
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["a.bin", "c.bin"]


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
