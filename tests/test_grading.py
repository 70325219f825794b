"""lrlab grade: hostile submissions cannot hurt the course, honest ones score as nbgrader scores them.

The toy course of ``tests/hostile`` is graded once per module with every hostile case next to honest
submissions (one batch, two jobs); each test then checks one promise on that batch.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from hostile import (
    ASSIGNMENT,
    CASES,
    Context,
    build_toy_course,
    cell_by_id,
    processes_with,
    reference_notebook,
    release_notebook,
    tree_digest,
)

import lrlab
from lrlab.course.errors import SandboxUnavailable
from lrlab.course.grading import sandbox as sb
from lrlab.course.grading.batch import grade

pytestmark = pytest.mark.slow
needs_box = pytest.mark.sandbox  # skipped where no sandbox can be made; a failure under LRLAB_REQUIRE_SANDBOX=1
# the tests that read the one graded batch run in one xdist worker, so the batch is graded once
in_batch = pytest.mark.xdist_group("lrlab_grading_batch")

LRLAB_DIR = Path(lrlab.__file__).resolve().parent
LRLAB_TARGETS = ("__init__.py", "checks.py")  # the files the rewrite_lrlab submission goes after
GENERATED = {"gradebook.db", "autograded", "feedback", "grades", "exchange"}
LIMITS = sb.Limits(wall_s=60, cpu_s=60, memory_bytes=2 * sb.GiB)


def partial_notebook(root: Path) -> nbformat.NotebookNode:
    """Honest but partly wrong: ``mean`` divides by the wrong count."""
    nb = reference_notebook(root)
    cell_by_id(nb, "mean").source = "def mean(xs):\n    return sum(xs) / (len(xs) + 1)"
    return nb


HONEST = {"ref": reference_notebook, "partial": partial_notebook, "blank": release_notebook}


def write_submissions(root: Path, makers: dict) -> None:
    """Write each ``makers[student](root)`` as that student's submission (bytes as they are; None: nothing)."""
    for student, make in makers.items():
        made = make(root)
        if made is None:
            continue
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{ASSIGNMENT}.ipynb"
        if isinstance(made, bytes):
            target.write_bytes(made)
        else:
            nbformat.write(made, str(target))


def auto_scores(root: Path, student: str) -> dict[str, float | None]:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        out = {}
        for cell in ("square_tests", "mean_tests"):
            try:
                out[cell] = gb.find_grade(cell, ASSIGNMENT, ASSIGNMENT, student).auto_score
            except MissingEntry:
                out[cell] = None
        return out


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("toycourse")
    students = [*HONEST, *CASES]
    build_toy_course(root, students=students)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.setblocking(False)
    ctx = Context(course=root, lrlab_dir=LRLAB_DIR, port=listener.getsockname()[1],
                  marker=tmp_path_factory.mktemp("outside") / "late.txt", token=f"lrlab-bg-{uuid.uuid4().hex}")
    write_submissions(root, {name: (lambda r, m=case.make: m(r, ctx)) for name, case in CASES.items()})
    write_submissions(root, HONEST)
    before = tree_digest(root, GENERATED)
    lrlab_before = {name: (LRLAB_DIR / name).read_bytes() for name in LRLAB_TARGETS}
    report = grade(ASSIGNMENT, root=root, jobs=2, limits=LIMITS)
    yield {"report": report, "root": root, "ctx": ctx, "before": before, "lrlab_before": lrlab_before,
           "listener": listener}
    listener.close()


@in_batch
@needs_box
def test_every_student_is_in_the_report_and_the_csv(batch):
    report = batch["report"]
    assert sorted(r.student for r in report.results) == sorted([*HONEST, *CASES])
    text = report.csv_path.read_text()
    for name in [*HONEST, *CASES]:
        assert f"\n{name}," in text
    assert "mean score" in report.summary() and "sandboxed" in report.summary()
    assert report.reexecuted == []  # every execution in a box was replayed, none had to be redone


@in_batch
@needs_box
def test_honest_submissions_score_what_they_earn(batch):
    results = batch["report"].by_student()
    assert auto_scores(batch["root"], "ref") == {"square_tests": 2.0, "mean_tests": 3.0}
    assert auto_scores(batch["root"], "partial") == {"square_tests": 2.0, "mean_tests": 0.0}
    assert auto_scores(batch["root"], "blank") == {"square_tests": 0.0, "mean_tests": 0.0}
    assert results["ref"].status == "graded" and results["ref"].reasons == []
    assert results["ref"].score == 5.0 and results["ref"].max_score == 6.0 and results["ref"].needs_manual
    assert results["blank"].status == "graded", results["blank"].reasons


@in_batch
@needs_box
@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_case(batch, name):
    case = CASES[name]
    result = batch["report"].by_student()[name]
    assert result.status == case.status, (result.status, result.reasons)
    if case.reason:
        assert any(case.reason in r for r in result.reasons), result.reasons
    got = auto_scores(batch["root"], name)
    for cell, expected in case.scores.items():
        if expected is not None:
            assert got[cell] == expected, (cell, got, result.reasons)
    assert sorted(result.hidden_failures) == sorted(case.hidden)
    if case.status != "missing":
        assert result.max_score == 6.0  # edited points never reach the gradebook


@in_batch
@needs_box
def test_course_and_package_are_unchanged(batch):
    root = batch["root"]
    assert tree_digest(root, GENERATED) == batch["before"]
    assert {name: (LRLAB_DIR / name).read_bytes() for name in LRLAB_TARGETS} == batch["lrlab_before"]
    assert not (root / "planted.txt").exists() and not (LRLAB_DIR / "_planted.py").exists()


@in_batch
@needs_box
def test_gradebook_holds_no_forged_scores(batch):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{batch['root'] / 'gradebook.db'}") as gb:
        for student in [*HONEST, *CASES]:
            for cell in ("square_tests", "mean_tests"):
                try:
                    grade = gb.find_grade(cell, ASSIGNMENT, ASSIGNMENT, student)
                except Exception:
                    continue
                assert grade.auto_score is None or grade.auto_score <= grade.max_score


def _outputs(root: Path, student: str) -> str:
    nb = nbformat.read(str(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4)
    return "\n".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@in_batch
@needs_box
def test_sandbox_blocked_what_the_submissions_tried(batch):
    root = batch["root"]
    assert "SOURCE-BLOCKED" in _outputs(root, "read_source") and "SOURCE-VISIBLE" not in _outputs(root, "read_source")
    gradebook = _outputs(root, "write_gradebook")
    assert "GRADEBOOK-BLOCKED" in gradebook and "COURSE-BLOCKED" in gradebook and "WRITTEN" not in gradebook
    lrlab = _outputs(root, "rewrite_lrlab")
    assert "LRLAB-BLOCKED" in lrlab and "LRLAB-WRITABLE" not in lrlab and "LRLAB-WRITTEN" not in lrlab
    network = _outputs(root, "network")
    assert network.count("NETWORK-BLOCKED") == 3 and "NETWORK-OPEN" not in network
    with pytest.raises(BlockingIOError):
        batch["listener"].accept()


@in_batch
@needs_box
def test_background_processes_are_gone(batch):
    ctx = batch["ctx"]
    assert processes_with(ctx.token) == []
    time.sleep(2.5)  # past the moment the background process meant to write
    assert processes_with(ctx.token) == []
    assert not ctx.marker.exists() and not Path(ctx.box_marker).exists()


@in_batch
@needs_box
def test_feedback_never_shows_hidden_tests(batch):
    root = batch["root"]
    pages = sorted((root / "feedback").glob(f"*/{ASSIGNMENT}/{ASSIGNMENT}.html"))
    assert len(pages) >= len(HONEST) + len(CASES) - 3  # missing, invalid and the killed ones still get pages
    for page in pages:
        text = page.read_text()
        for secret in ("HIDDEN-SQUARE", "HIDDEN-MEAN", "_inputs = [", "_values = [", "BEGIN HIDDEN TESTS"):
            assert secret not in text, (page, secret)
    hard = (root / "feedback" / "hard_coded" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "fails a hidden test" in hard
    visible = (root / "feedback" / "edit_tests" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "square(3) should be 9" in visible  # a failed visible test keeps its message
    for page in (hard, visible):  # ... but no test cell shows a traceback
        assert "Traceback (most recent call last)" not in page and "Cell In[" not in page


@in_batch
@needs_box
def test_scores_equal_a_plain_nbgrader_autograde(batch, tmp_path):
    """The same honest submissions, graded by `nbgrader autograde` one after another, score the same."""
    root = build_toy_course(tmp_path / "plain")
    write_submissions(root, {**HONEST, "hard_coded": lambda r: CASES["hard_coded"].make(r, None)})
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--log-level=ERROR"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for student in [*HONEST, "hard_coded"]:
        assert auto_scores(root, student) == auto_scores(batch["root"], student), student


def test_grading_refuses_without_a_sandbox_unless_unsafe(tmp_path, monkeypatch):
    root = build_toy_course(tmp_path / "course", timeout=10)
    write_submissions(root, {"ref": reference_notebook})
    monkeypatch.setattr(sb, "sandbox_problem", lambda: "bubblewrap (`bwrap`) is not installed")
    with pytest.raises(SandboxUnavailable, match="--unsafe"):
        grade(ASSIGNMENT, root=root, jobs=1)
    report = grade(ASSIGNMENT, root=root, jobs=1, unsafe=True, feedback=False, limits=LIMITS)
    assert report.by_student()["ref"].score == 5.0 and not report.sandboxed
    assert "NOT sandboxed" in report.summary()


@needs_box
def test_flat_files_and_zip_exports(tmp_path):
    root = build_toy_course(tmp_path / "course", timeout=10, students=["carol"])
    flat = tmp_path / "lms"
    flat.mkdir()
    nbformat.write(reference_notebook(root), str(flat / f"alice_{ASSIGNMENT}.ipynb"))
    nbformat.write(release_notebook(root), str(flat / f"bob_smith_{ASSIGNMENT}.ipynb"))
    (flat / "notes.txt").write_text("not a submission")
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", flat)
    report = grade(ASSIGNMENT, root=root, submissions=Path(archive), jobs=2, feedback=False, limits=LIMITS)
    results = report.by_student()
    assert results["alice"].score == 5.0 and results["bob_smith"].score == 0.0
    assert results["carol"].status == "missing"
    assert any("notes.txt" in n for n in report.notes)


@needs_box
def test_cli_grade(tmp_path, capsys):
    from lrlab.course.cli import main

    root = build_toy_course(tmp_path / "course", timeout=10)
    write_submissions(root, {"ref": reference_notebook, "blank": release_notebook})
    code = main(["--root", str(root), "grade", ASSIGNMENT, "--jobs", "2", "--no-feedback",
                 "--csv", str(tmp_path / "g.csv")])
    out = capsys.readouterr().out
    assert code == 0
    assert "ref" in out and "5/6" in out and "2 students" in out
    assert (tmp_path / "g.csv").read_text().startswith("student_id,assignment,score")


def _real_assignments() -> list:
    """00_pytorch_warmup always; 01 and 02 (about two minutes each on 2 cores) when LRLAB_GRADE_ALL=1."""
    root = Path(__file__).resolve().parents[1]
    names = sorted(p.name for p in (root / "source").glob("0[0-2]_*") if (root / "release" / p.name).is_dir())
    every = os.environ.get("LRLAB_GRADE_ALL") == "1"
    return [pytest.param(n, marks=() if every or n.startswith("00_") else pytest.mark.skip("set LRLAB_GRADE_ALL=1"))
            for n in names]


@needs_box
@pytest.mark.parametrize("assignment", _real_assignments())
def test_course_assignment_scores_equal_a_plain_nbgrader_autograde(assignment, tmp_path):
    """Reference, partly answered and untouched submissions of a real assignment: lrlab grade (sandboxed,
    parallel) and a sequential `nbgrader autograde` give every test cell the same score."""
    from nbgrader.api import Gradebook

    from coursecopy import copy_course

    roots = []
    for name in ("lrlab", "plain"):
        root = copy_course(tmp_path / name, [assignment])
        source = nbformat.read(str(root / "source" / assignment / f"{assignment}.ipynb"), as_version=4)
        release = nbformat.read(str(root / "release" / assignment / f"{assignment}.ipynb"), as_version=4)
        partial = copy.deepcopy(source)
        answers = [i for i, c in enumerate(source.cells) if c.metadata.get("nbgrader", {}).get("solution")
                   and c.cell_type == "code"]
        stub = {c.metadata["nbgrader"]["grade_id"]: c.source for c in release.cells if "nbgrader" in c.metadata}
        partial.cells[answers[0]].source = stub[partial.cells[answers[0]].metadata["nbgrader"]["grade_id"]]
        for student, nb in {"reference": source, "partial": partial, "untouched": release}.items():
            folder = root / "submitted" / student / assignment
            folder.mkdir(parents=True)
            nbformat.write(nb, str(folder / f"{assignment}.ipynb"))
        roots.append(root)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for cmd in ([sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
                [sys.executable, "-m", "nbgrader", "autograde", assignment]):
        proc = subprocess.run([*cmd, "--log-level=ERROR"], cwd=roots[1], env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    report = grade(assignment, root=roots[0], jobs=2, feedback=False)
    assert all(r.status == "graded" for r in report.results), report.summary()

    def cell_scores(root: Path) -> dict:
        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            return {(sub.student.id, grade.name): (grade.auto_score, grade.max_score, grade.cell_type)
                    for sub in gb.assignment_submissions(assignment) for nb in sub.notebooks for grade in nb.grades}

    ours, theirs = cell_scores(roots[0]), cell_scores(roots[1])
    assert ours == theirs and len(ours) > 0
    for (student, _cell), (auto, top, kind) in ours.items():
        if kind == "code" and student == "reference":
            assert auto == top
        if kind == "code" and student == "untouched":
            assert auto == 0


def test_a_kernel_that_cannot_start_leaves_the_gradebook_alone(tmp_path, monkeypatch):
    """A broken grader (here: every box exits at once) is an error of the batch, not zeros for learners."""
    root = build_toy_course(tmp_path / "course", timeout=10)
    write_submissions(root, {"ref": reference_notebook})
    monkeypatch.setattr(sb.Sandbox, "wrap", lambda self, argv, **kw: [sys.executable, "-c", "raise SystemExit(3)"])
    report = grade(ASSIGNMENT, root=root, jobs=1, unsafe=True, feedback=False, limits=LIMITS)
    result = report.by_student()["ref"]
    assert result.status == "error" and any("could not start" in r for r in result.reasons), result.reasons
    assert auto_scores(root, "ref") == {"square_tests": None, "mean_tests": None}
