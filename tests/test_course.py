"""The course command line: release in sync and byte-stable, validate, run, round trip, error paths."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from lrlab.course.layout import course_notebooks
from lrlab.course.release import normalize_notebook_text, release
from lrlab.course.run import run_notebooks
from lrlab.course.validate import validate

from coursecopy import ROOT, copy_course


def lrlab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lrlab", *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow
def test_release_is_in_sync_with_source():
    stale = release(ROOT, check=True)
    assert stale == [], "release/ is out of sync with source/; run `lrlab release`:\n" + "\n".join(stale)


@pytest.mark.slow
def test_release_is_byte_stable_and_check_names_the_stale_notebook(tmp_path):
    root = copy_course(tmp_path / "course", ["00_pytorch_warmup"])
    before = (root / "release/00_pytorch_warmup/00_pytorch_warmup.ipynb").read_bytes()
    proc = lrlab("release", "00_pytorch_warmup", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert (root / "release/00_pytorch_warmup/00_pytorch_warmup.ipynb").read_bytes() == before
    assert lrlab("release", "--check", cwd=root).returncode == 0

    src = root / "source/00_pytorch_warmup/00_pytorch_warmup.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.cells[0].source += "\n\nA sentence the release does not have yet."
    nbformat.write(nb, src)
    proc = lrlab("release", "--check", cwd=root)
    assert proc.returncode == 1
    assert "release/00_pytorch_warmup/00_pytorch_warmup.ipynb (differs)" in proc.stderr
    assert (root / "release/00_pytorch_warmup/00_pytorch_warmup.ipynb").read_bytes() == before, "--check wrote"


def test_normalized_release_has_no_outputs_and_sorted_keys():
    text = json.dumps({"cells": [{"cell_type": "code", "outputs": [1], "execution_count": 3, "metadata": {},
                                  "source": "x"}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    out = json.loads(normalize_notebook_text(text))
    assert out["cells"][0]["outputs"] == [] and out["cells"][0]["execution_count"] is None
    assert normalize_notebook_text(text) == normalize_notebook_text(normalize_notebook_text(text))


@pytest.mark.slow
def test_source_passes_and_release_fails_as_expected_with_the_validator():
    results = validate(ROOT, jobs=2)
    kinds = {(r.kind, r.notebook) for r in results}
    assert {k for k, _ in kinds} == {"source", "release"}
    bad = [f"{r.notebook}: {r.detail}" for r in results if not r.ok]
    assert not bad, "\n".join(bad)


@pytest.mark.slow
def test_validate_reports_a_release_test_that_passes_unanswered(tmp_path):
    root = copy_course(tmp_path / "course", ["00_pytorch_warmup"])
    path = root / "release/00_pytorch_warmup/00_pytorch_warmup.ipynb"
    nb = nbformat.read(path, as_version=4)
    ref = {c.metadata["nbgrader"]["grade_id"]: c.source
           for c in nbformat.read(root / "source/00_pytorch_warmup/00_pytorch_warmup.ipynb", as_version=4).cells
           if "nbgrader" in c.metadata}
    for cell in nb.cells:  # answer one exercise in the "release": its test must now be reported
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "center_columns":
            cell.source = ref["center_columns"]
    nbformat.write(nb, path)
    results = {r.notebook: r for r in validate(root, ["00_pytorch_warmup"])}
    bad = results["release/00_pytorch_warmup/00_pytorch_warmup.ipynb"]
    assert not bad.ok and "center_columns_tests passes on the unanswered notebook" in bad.detail


def _notebooks() -> list[str]:
    return [str(p.relative_to(ROOT)) for p in course_notebooks(ROOT)]


@pytest.mark.slow
@pytest.mark.parametrize("notebook", _notebooks())
def test_every_notebook_executes_under_papermill(notebook, tmp_path):
    results = run_notebooks(ROOT, device="auto", notebooks=[str(ROOT / notebook)], out_dir=tmp_path)
    assert [r.status for r in results] == ["ok"], results[0].status
    executed = nbformat.read(tmp_path / notebook, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "DEVICE = " in injected[0].source, "papermill did not inject the parameters"


def _submission_from_source(root: Path, assignment: str, dest: Path) -> None:
    """The release notebook with every answer cell filled in from the instructor's solution."""
    src = next((root / "source" / assignment).glob("*.ipynb"))
    rel = root / "release" / assignment / src.name
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nbformat.read(src, as_version=4).cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    nb = nbformat.read(rel, as_version=4)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest / src.name)


@pytest.mark.slow
def test_nbgrader_round_trip_full_marks_for_the_solution_and_zero_for_the_blank_release(tmp_path):
    a = "00_pytorch_warmup"
    root = copy_course(tmp_path / "course", [a])

    def nbgrader(*args):
        proc = subprocess.run([sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"], cwd=root,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    nbgrader("generate_assignment", a, "--force")
    _submission_from_source(root, a, root / "submitted" / "solver" / a)
    blank = root / "submitted" / "blank" / a
    blank.mkdir(parents=True)
    shutil.copy2(next((root / "release" / a).glob("*.ipynb")), blank)
    for student in ("solver", "blank"):
        nbgrader("db", "student", "add", student)
    nbgrader("autograde", a, "--force")
    nbgrader("export", "--to", "grades.csv")
    rows = {r["student_id"]: r for r in csv.DictReader((root / "grades.csv").open())}
    src = nbformat.read(next((root / "source" / a).glob("*.ipynb")), as_version=4)
    auto_points = sum(c.metadata["nbgrader"]["points"] for c in src.cells
                      if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code")
    total_points = sum(c.metadata["nbgrader"]["points"] for c in src.cells
                       if c.metadata.get("nbgrader", {}).get("grade"))
    assert float(rows["solver"]["score"]) == auto_points
    assert float(rows["blank"]["score"]) == 0.0
    assert float(rows["solver"]["max_score"]) == total_points


def _nb_without_parameters(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)
    return path


def test_run_refuses_a_notebook_without_parameters_cell_before_running_anything(tmp_path):
    bad = _nb_without_parameters(tmp_path / "no_params.ipynb")
    proc = lrlab("run", str(bad), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "no cell tagged 'parameters'" in proc.stderr and "no_params.ipynb" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device", ["gpu", "tpu", "CUDA!"])
def test_run_refuses_an_unknown_device(device, tmp_path):
    proc = lrlab("run", "--device", device, "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "--device must be one of auto, cpu, cuda" in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_run_refuses_cuda_on_a_machine_without_one(tmp_path):
    proc = lrlab("run", "--device", "cuda", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr


def test_run_and_release_refuse_bad_arguments(tmp_path):
    assert "positive integer" in lrlab("run", "--jobs", "0").stderr
    proc = lrlab("release", "99_nothing")
    assert proc.returncode == 2 and "unknown assignment(s) 99_nothing" in proc.stderr
    proc = lrlab("run", "-p", "not-an-identifier", "1", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "identifier" in proc.stderr


@pytest.mark.slow
def test_run_prints_a_table_injects_parameters_and_fails_on_a_failing_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('SEED = 0\nDEVICE = "auto"\nBOOM = False'),
                nbformat.v4.new_code_cell("assert not BOOM, 'boom was set'")]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    ok = lrlab("run", str(path), "--device", "cpu", "--out", str(tmp_path / "a"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "notebook" in ok.stdout and "seconds" in ok.stdout and " ok" in ok.stdout
    bad = lrlab("run", str(path), "-p", "BOOM", "True", "--out", str(tmp_path / "b"))
    assert bad.returncode == 1 and "FAILED: AssertionError: boom was set" in bad.stdout


def test_the_cli_prints_course_errors_once_and_lets_bugs_raise(monkeypatch, capsys):
    import lrlab.course.release
    from lrlab.course.cli import main
    from lrlab.course.errors import GradingError

    def fixable(*args, **kwargs):
        raise GradingError("something the instructor can fix")

    monkeypatch.setattr(lrlab.course.release, "release", fixable)
    assert main(["--root", str(ROOT), "release", "--check"]) == 2
    err = capsys.readouterr().err
    assert err == "lrlab release: error: something the instructor can fix\n"

    def bug(*args, **kwargs):
        raise ValueError("a bug in the caller")

    monkeypatch.setattr(lrlab.course.release, "release", bug)
    with pytest.raises(ValueError, match="a bug in the caller"):
        main(["--root", str(ROOT), "release", "--check"])


@pytest.mark.parametrize("args, message", [
    (["grade", "toy", "--jobs", "0"], "--jobs: must be a positive integer"),
    (["grade", "../toy"], "ASSIGNMENT: must be the name of a folder in source/"),
    (["grade", "toy", "--time-limit", "-1"], "--time-limit: must be a positive number"),
    (["grade", "toy", "--memory", "0.1"], "--memory: must be 0 (no limit) or at least 0.25 (GB)"),
    (["validate", "--jobs", "x"], "--jobs: must be a positive integer"),
])
def test_the_cli_refuses_bad_options_before_doing_anything(args, message, capsys):
    from lrlab.course.cli import main

    with pytest.raises(SystemExit) as exit:
        main(args)
    assert exit.value.code == 2 and message in capsys.readouterr().err
