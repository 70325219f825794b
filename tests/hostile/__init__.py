"""Hostile and broken submissions, and a tiny course to grade them in.

Each case in :data:`CASES` turns a correct notebook of the toy assignment (``toy``, two exercises
``square`` and ``mean`` with visible and hidden tests, one written answer) into a submission that
attacks or breaks the grader in one way, and says what grading must make of it. The tests in
``tests/test_grading.py`` grade all of them in one batch, next to honest submissions.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ASSIGNMENT = "toy"
POINTS = {"square_tests": 2.0, "mean_tests": 3.0, "explain": 1.0}

CONFIG = '''\
from pathlib import Path

c = get_config()  # noqa: F821
ROOT = Path(__file__).resolve().parent
c.CourseDirectory.course_id = "toy"
c.CourseDirectory.root = str(ROOT)
c.CourseDirectory.db_url = f"sqlite:///{ROOT / 'gradebook.db'}"
c.Exchange.root = str(ROOT / "exchange")
c.Execute.timeout = TIMEOUT
c.Execute.interrupt_on_timeout = True
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "lrlab.course.grading.feedback.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
'''


def _cell(kind: str, source: str, grade_id: str, *, grade=False, solution=False, locked=False, points=None):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
            "task": False}
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


SQUARE = 'def square(x):\n    """x times x."""\n    ### BEGIN SOLUTION\n    return x * x\n    ### END SOLUTION'
SQUARE_TESTS = (
    'assert square(3) == 9, "square(3) should be 9"\n'
    "### BEGIN HIDDEN TESTS\n"
    "_inputs = [-7, 0, 11, 2.5]\n"
    'assert [square(v) for v in _inputs] == [49, 0, 121, 6.25], "HIDDEN-SQUARE expected [49, 0, 121, 6.25]"\n'
    "### END HIDDEN TESTS\n"
    'print("square: the visible tests pass")'
)
MEAN = (
    'def mean(xs):\n    """The average of a list of numbers."""\n'
    "    ### BEGIN SOLUTION\n    return sum(xs) / len(xs)\n    ### END SOLUTION"
)
MEAN_TESTS = (
    'assert mean([1, 2, 3]) == 2, "mean([1, 2, 3]) should be 2"\n'
    "### BEGIN HIDDEN TESTS\n"
    "_values = [4.0, -2.0, 10.0, 0.5]\n"
    'assert abs(mean(_values) - 3.125) < 1e-12, "HIDDEN-MEAN expected 3.125"\n'
    "### END HIDDEN TESTS\n"
    'print("mean: the visible tests pass")'
)


def toy_source() -> nbformat.NotebookNode:
    """The instructor's notebook of the toy assignment (solutions and hidden tests included)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.cells = [
        _cell("markdown", "# Toy assignment\nTwo small functions.", "intro", locked=True),
        _cell("code", "import math\nSEED = 0", "setup", locked=True),
        _cell("code", SQUARE, "square", solution=True),
        _cell("code", SQUARE_TESTS, "square_tests", grade=True, locked=True, points=2),
        _cell("code", MEAN, "mean", solution=True),
        _cell("code", MEAN_TESTS, "mean_tests", grade=True, locked=True, points=3),
        _cell("markdown", "Why divide by `len(xs)`?\n\n### BEGIN SOLUTION\nTo average.\n### END SOLUTION",
              "explain", grade=True, solution=True, points=1),
    ]
    return nb


def build_toy_course(root: Path, *, timeout: int = 5, students: Iterable[str] = ()) -> Path:
    """A complete little nbgrader course at ``root``: config, source, release, gradebook (with a roster)."""
    from nbgrader.api import Gradebook
    from nbgrader.converters import GenerateAssignment
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG.replace("TIMEOUT", str(int(timeout))))
    (root / "source" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
    nbformat.write(toy_source(), str(root / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.assignment_id = ASSIGNMENT
    config.GenerateAssignment.force = True
    cwd = os.getcwd()
    try:
        GenerateAssignment(coursedir=CourseDirectory(config=config), config=config).start()
    finally:
        os.chdir(cwd)
    with Gradebook(config.CourseDirectory.db_url) as gb:
        for student in students:
            gb.update_or_create_student(student)
    return root


def release_notebook(root: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(root / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4)


def reference_notebook(root: Path) -> nbformat.NotebookNode:
    """A correct submission: the release notebook with the reference answers filled in."""
    nb = release_notebook(root)
    source = {c.metadata["nbgrader"]["grade_id"]: c for c in toy_source().cells}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in ("square", "mean", "explain"):
            lines = source[gid].source.split("\n")
            cell.source = "\n".join(line for line in lines if "### BEGIN SOLUTION" not in line
                                     and "### END SOLUTION" not in line)
    return nb


def cell_by_id(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell
    raise KeyError(grade_id)


@dataclass
class Context:
    """Paths and values a hostile case aims at."""

    course: Path
    lrlab_dir: Path
    port: int
    marker: Path
    token: str

    @property
    def box_marker(self) -> str:
        """A path in /tmp: the box's own /tmp when sandboxed, the machine's otherwise."""
        return f"/tmp/lrlab-late-{self.token}.txt"


@dataclass
class Case:
    """A hostile submission and what grading must make of it.

    Attributes:
        make: returns the submitted notebook (or bytes written as the file, or None: nothing submitted).
        scores: expected auto score per test cell (None: not checked).
        reason: a fragment the student's reasons must contain ("" when no intervention is expected).
        status: expected status of the student.
    """

    make: Callable[[Path, Context], nbformat.NotebookNode | bytes | None]
    scores: dict[str, float | None]
    reason: str = ""
    status: str = "problems"
    hidden: list[str] = field(default_factory=list)


def fill(template: str, ctx: Context | None) -> str:
    """Put the context's paths and values (as Python literals) into a code template's {NAME} slots."""
    if ctx is None:
        return template
    values = {
        "SOURCE_NOTEBOOK": str(ctx.course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
        "GRADEBOOK": str(ctx.course / "gradebook.db"),
        "COURSE_FILE": str(ctx.course / "planted.txt"),
        "LRLAB": str(ctx.lrlab_dir),
        "PORT": ctx.port,
        "MARKER": str(ctx.marker),
        "BOX_MARKER": ctx.box_marker,
        "TOKEN": ctx.token,
    }
    for name, value in values.items():
        template = template.replace("{" + name + "}", json.dumps(value))
    return template


def _answer(square: str | None = None, mean: str | None = None, prefix: str = ""):
    def make(root: Path, ctx: Context | None):
        nb = reference_notebook(root)
        if square is not None:
            cell_by_id(nb, "square").source = fill(square, ctx)
        if mean is not None:
            cell_by_id(nb, "mean").source = fill(mean, ctx)
        if prefix:
            cell = cell_by_id(nb, "mean")
            cell.source = fill(prefix, ctx) + "\n" + cell.source
        return nb
    return make


def _delete_tests(root: Path, ctx: Context):
    nb = reference_notebook(root)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in ("square_tests", "setup")]
    return nb


def _edit_tests(root: Path, ctx: Context):
    nb = reference_notebook(root)
    cell_by_id(nb, "square").source = "def square(x):\n    return 0"
    cell_by_id(nb, "square_tests").source = 'print("all tests pass")'
    return nb


def _edit_metadata(root: Path, ctx: Context):
    nb = reference_notebook(root)
    cell_by_id(nb, "square").source = "def square(x):\n    return 0"
    cell_by_id(nb, "mean").source = "def mean(xs):\n    return 0"
    cell_by_id(nb, "square_tests").metadata["nbgrader"]["grade"] = False
    cell_by_id(nb, "mean_tests").metadata["nbgrader"]["points"] = 100
    cell_by_id(nb, "mean_tests").metadata["nbgrader"]["locked"] = False
    return nb


def _rename_test(root: Path, ctx: Context):
    nb = reference_notebook(root)
    cell_by_id(nb, "square").source = "def square(x):\n    return 0"
    test = cell_by_id(nb, "square_tests")
    test.metadata["nbgrader"]["grade_id"] = "my_own_test"
    test.source = "pass"
    return nb


READ_SOURCE = '''\
def square(x):
    raise NotImplementedError()
try:
    import json
    _nb = json.load(open({SOURCE_NOTEBOOK}))
    for _cell in _nb["cells"]:
        if "def square" in "".join(_cell["source"]):
            exec("".join(_cell["source"]))
    print("SOURCE-VISIBLE")
except OSError as _err:
    print("SOURCE-BLOCKED", _err)'''

WRITE_GRADEBOOK = '''\
import sqlite3
try:
    _db = sqlite3.connect({GRADEBOOK})
    _db.execute("UPDATE grade SET auto_score = 99")
    _db.commit()
    print("GRADEBOOK-WRITTEN")
except Exception as _err:
    print("GRADEBOOK-BLOCKED", _err)
try:
    open({COURSE_FILE}, "w").write("x")
    print("COURSE-WRITTEN")
except OSError as _err:
    print("COURSE-BLOCKED", _err)'''

REWRITE_LRLAB = '''\
import os
for _name in ("__init__.py", "checks.py"):
    try:
        open(os.path.join({LRLAB}, _name), "a").close()
        print("LRLAB-WRITABLE", _name)
    except OSError as _err:
        print("LRLAB-BLOCKED", _err)
try:
    open(os.path.join({LRLAB}, "_planted.py"), "w").write("x = 1")
    print("LRLAB-WRITTEN")
except OSError as _err:
    print("LRLAB-BLOCKED", _err)'''

NETWORK = '''\
import socket
for _addr in [("127.0.0.1", {PORT}), ("1.1.1.1", 53), ("pypi.org", 443)]:
    try:
        socket.create_connection(_addr, timeout=1).close()
        print("NETWORK-OPEN", _addr)
    except OSError as _err:
        print("NETWORK-BLOCKED", _addr, _err)'''

BACKGROUND = '''\
import subprocess, sys
_late = "import sys, time; time.sleep(2); open(sys.argv[1], 'w').write('late')"
subprocess.Popen([sys.executable, "-c", _late, {MARKER}, {TOKEN}],
                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.Popen([sys.executable, "-c", _late, {BOX_MARKER}, {TOKEN}], start_new_session=True)'''

CASES: dict[str, Case] = {
    "loop_forever": Case(
        _answer(square="def square(x):\n    while True:\n        pass"),
        {"square_tests": 0, "mean_tests": 3}, reason="time limit"),
    "loop_ignoring_interrupt": Case(
        _answer(square="import signal\ndef square(x):\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "    while True:\n        pass"),
        {"square_tests": 0, "mean_tests": 0}, reason="ignored the interrupt"),
    "sys_exit": Case(
        _answer(square="import sys\ndef square(x):\n    sys.exit('bye')"),
        {"square_tests": 0, "mean_tests": 3}, status="graded"),
    "os_exit": Case(
        _answer(square="import os\ndef square(x):\n    os._exit(3)"),
        {"square_tests": 0, "mean_tests": 0}, reason="exited (status 3)"),
    "huge_allocation": Case(
        _answer(square="def square(x):\n    _big = bytearray(64 * 2**30)\n    return x * x"),
        {"square_tests": 0, "mean_tests": 3}, reason="out of memory"),
    "print_flood": Case(
        _answer(prefix='for _ in range(30):\n    print("x" * 10_000_000)'),
        {"square_tests": 2, "mean_tests": 0}, reason="was stopped"),
    "delete_tests": Case(_delete_tests, {"square_tests": 2, "mean_tests": 3}, reason="restored from the source"),
    "edit_tests": Case(_edit_tests, {"square_tests": 0, "mean_tests": 3}, reason="the original was restored"),
    "edit_metadata": Case(_edit_metadata, {"square_tests": 0, "mean_tests": 0}, reason="metadata"),
    "rename_test": Case(_rename_test, {"square_tests": 0, "mean_tests": 3},
                        reason="the gradebook does not know"),
    "hard_coded": Case(_answer(square="def square(x):\n    return 9"), {"square_tests": 0, "mean_tests": 3},
                       status="graded", hidden=["square_tests"]),
    "write_gradebook": Case(_answer(prefix=WRITE_GRADEBOOK), {"square_tests": 2, "mean_tests": 3}, status="graded"),
    "read_source": Case(_answer(square=READ_SOURCE), {"square_tests": 0, "mean_tests": 3}, status="graded"),
    "rewrite_lrlab": Case(_answer(prefix=REWRITE_LRLAB), {"square_tests": 2, "mean_tests": 3}, status="graded"),
    "network": Case(_answer(prefix=NETWORK), {"square_tests": 2, "mean_tests": 3}, status="graded"),
    "background_process": Case(_answer(prefix=BACKGROUND), {"square_tests": 2, "mean_tests": 3}, status="graded"),
    "invalid_json": Case(lambda root, ctx: b'{"cells": [ this is not json', {"square_tests": 0, "mean_tests": 0},
                         reason="not a valid notebook"),
    "missing": Case(lambda root, ctx: None, {"square_tests": None, "mean_tests": None}, reason="no submission",
                    status="missing"),
}


def tree_digest(root: Path, skip: Iterable[str] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest), skipping top-level names in ``skip``."""
    skip = set(skip)
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] in skip or "__pycache__" in rel.parts or not path.is_file():
            continue
        out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def processes_with(token: str) -> list[int]:
    """Pids of processes whose command line contains ``token``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            pids.append(int(entry.name))
    return pids
