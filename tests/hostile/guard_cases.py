"""Hostile submissions against the guard around test cells, and honest ones it must leave alone.

Each :class:`GuardCase` turns a notebook of the toy assignment (``tests/hostile``) into a submission, with files
next to the notebook if it has any, and says what grading must make of it. ``tests/test_grading_guard.py`` grades
them all in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import cell_by_id, reference_notebook

WRONG_SQUARE = "def square(x):\n    return 0"
WRONG_MEAN = "def mean(xs):\n    return 0"


@dataclass
class GuardCase:
    """A submission and what grading must make of it.

    Attributes:
        make: returns the submitted notebook.
        scores: expected auto score per test cell.
        reason: a fragment one of the student's reasons must contain ("" when none is expected).
        status: expected status of the student.
        files: files written next to the notebook (relative path -> text).
        absent: text that must not appear in any output of the graded notebook.
        present: text that must appear in the outputs of the graded notebook.
    """

    make: Callable[[Path], nbformat.NotebookNode]
    scores: dict[str, float]
    reason: str = ""
    status: str = "problems"
    files: dict[str, str] = field(default_factory=dict)
    absent: str = ""
    present: str = ""


def _answers(square: str | None = None, mean: str | None = None, tags: dict[str, list[str]] | None = None):
    def make(root: Path) -> nbformat.NotebookNode:
        nb = reference_notebook(root)
        if square is not None:
            cell_by_id(nb, "square").source = square
        if mean is not None:
            cell_by_id(nb, "mean").source = mean
        for grade_id, cell_tags in (tags or {}).items():
            cell_by_id(nb, grade_id).metadata["tags"] = cell_tags
        return nb
    return make


def _other_kernel(root: Path) -> nbformat.NotebookNode:
    nb = reference_notebook(root)
    cell_by_id(nb, "square").source = WRONG_SQUARE
    cell_by_id(nb, "square_tests").metadata["tags"] = ["raises-exception"]
    cell_by_id(nb, "square_tests").metadata["jupyter"] = {"source_hidden": True}
    nb.metadata["kernelspec"] = {"display_name": "Other", "language": "python", "name": "no-such-kernel"}
    return nb


# a pre_run_cell callback that shows a number nbgrader reads as full (partial) credit before each cell runs
FORGE_EVENT = WRONG_SQUARE + '''
def _forge(info):
    get_ipython().displayhook(100)
get_ipython().events.register("pre_run_cell", _forge)'''

# the answer itself shows the credit while the test runs (no hook: only the credit rule stops it)
FORGE_IN_ANSWER = '''def square(x):
    get_ipython().displayhook(2.0)
    return 0'''

AST_SWALLOW = WRONG_SQUARE + '''
import ast as _ast
class _Swallow(_ast.NodeTransformer):
    def visit_Module(self, node):
        handler = _ast.ExceptHandler(type=None, name=None, body=[_ast.Pass()])
        node.body = [_ast.Try(body=node.body, handlers=[handler], orelse=[], finalbody=[])]
        return _ast.fix_missing_locations(node)
get_ipython().ast_transformers.append(_Swallow())'''

INPUT_BLANK = WRONG_SQUARE + '''
def _blank(lines):
    return [] if any("assert" in line for line in lines) else lines
get_ipython().input_transformers_cleanup.append(_blank)'''

CUSTOM_EXC = WRONG_SQUARE + '''
get_ipython().set_custom_exc((AssertionError,), lambda shell, etype, value, tb, tb_offset=None: None)'''

HOOKS = WRONG_SQUARE + '''
import sys as _sys
_ip = get_ipython()
_ip.display_trap.hook = lambda value: None
_sys.excepthook = lambda *args: None'''

TRACE = '''import sys as _sys
def square(x):
    return x * x
def _tracer(frame, event, arg):
    return None
_sys.settrace(_tracer)'''

BUILTINS = WRONG_MEAN + '''
import builtins as _b
_b.abs = lambda value: 0'''

SHADOW_NAME = WRONG_MEAN + '''
abs = lambda value: 0'''

SIDE_FILES = {
    "lrlab/__init__.py": 'print("SHADOWED-lrlab")\n',
    "json.py": 'print("SHADOWED-json")\n',
    "numpy/__init__.py": 'print("SHADOWED-numpy")\n',
    "sitecustomize.py": 'print("SHADOWED-sitecustomize")\n',
    "zmq.py": 'raise SystemExit("SHADOWED-zmq")\n',
    "evil.pth": 'import sys; print("SHADOWED-pth")\n',
    "helper.py": "VALUE = 42\n",
}
USE_SIDE_FILES = '''import json, numpy, lrlab, helper
print("IMPORTED", json.__name__, numpy.__name__, lrlab.__name__, helper.VALUE)
def square(x):
    return x * x'''

RUNTIME_SHADOW = '''import os as _os, sys as _sys
for _name in ("colorsys", "tqdm"):
    with open(_name + ".py", "w") as _fh:
        _fh.write("print('SHADOWED-' + __name__)\\n")
import colorsys as _colorsys, tqdm as _tqdm
print("REAL-MODULES" if hasattr(_colorsys, "rgb_to_hsv") and hasattr(_tqdm, "tqdm") else "SHADOWED-used")
print("CWD-LAST", _sys.path[-1] == _os.getcwd() and "" not in _sys.path)
def square(x):
    return x * x'''

HONEST_WARNING = '''import warnings
def square(x):
    warnings.warn("square is computed the slow way", UserWarning)
    return x * x'''

STDERR = '''import sys as _sys
def square(x):
    print("just a note", file=_sys.stderr)
    return x * x'''

FILL_TMP = """def square(x):
    return x * x
with open("/tmp/fill.bin", "wb") as _fh:
    for _ in range(64):  # bounded: 64 MB at most, the cap is smaller
        _fh.write(b"x" * 2**20)
        _fh.flush()"""

FILL_RUNTIME = """import os as _os, sys as _sys
def square(x):
    return x * x
_runtime = _os.path.dirname(_sys.argv[_sys.argv.index("-f") + 1])
with open(_os.path.join(_runtime, "fill.bin"), "wb") as _fh:
    for _ in range(64):  # bounded: 64 MB at most, the cap is smaller
        _fh.write(b"x" * 2**20)
        _fh.flush()"""

# bounded whatever the limits: at most 1000 children, each gone after 2 s
FORK_PROBE = """import os as _os, time as _time
def square(x):
    return x * x
print("UID", _os.getuid())
_kids = []
try:
    for _ in range(1000):
        _pid = _os.fork()
        if _pid == 0:
            _time.sleep(2)
            _os._exit(0)
        _kids.append(_pid)
finally:
    for _pid in _kids:
        _os.waitpid(_pid, 0)
    print("FORKED", len(_kids))"""

GUARD_CASES: dict[str, GuardCase] = {
    "guard_skip_execution": GuardCase(
        _answers(square=WRONG_SQUARE, tags={"square_tests": ["skip-execution"], "mean_tests": ["skip-execution"]}),
        {"square_tests": 0, "mean_tests": 3}, reason="metadata of locked cell 'square_tests'"),
    "guard_other_kernel": GuardCase(_other_kernel, {"square_tests": 0, "mean_tests": 3},
                                    reason="metadata of locked cell 'square_tests' was changed (tags)"),
    "guard_forged_event": GuardCase(_answers(square=FORGE_EVENT), {"square_tests": 0, "mean_tests": 0},
                                    reason="'pre_run_cell' event callbacks were changed"),
    "guard_forged_result": GuardCase(_answers(square=FORGE_IN_ANSWER), {"square_tests": 0, "mean_tests": 0},
                                     reason="forged partial credit"),
    "guard_ast_swallow": GuardCase(_answers(square=AST_SWALLOW), {"square_tests": 0, "mean_tests": 0},
                                   reason="ast_transformers were changed"),
    "guard_input_blank": GuardCase(_answers(square=INPUT_BLANK), {"square_tests": 0, "mean_tests": 0},
                                   reason="input_transformers_cleanup were changed"),
    "guard_custom_exc": GuardCase(_answers(square=CUSTOM_EXC), {"square_tests": 0, "mean_tests": 0},
                                  reason="custom exception handler was replaced"),
    "guard_hooks": GuardCase(_answers(square=HOOKS), {"square_tests": 0, "mean_tests": 0},
                             reason="the display trap's hook was replaced"),
    "guard_settrace": GuardCase(_answers(square=TRACE), {"square_tests": 0, "mean_tests": 0},
                                reason="trace function was set"),
    "guard_builtins": GuardCase(_answers(mean=BUILTINS), {"square_tests": 2, "mean_tests": 0},
                                reason="the built-in 'abs' was replaced"),
    "guard_shadow_name": GuardCase(_answers(mean=SHADOW_NAME), {"square_tests": 2, "mean_tests": 0},
                                   reason="the built-in 'abs' that the tests use was redefined"),
    "guard_side_files": GuardCase(_answers(square=USE_SIDE_FILES), {"square_tests": 2, "mean_tests": 3},
                                  reason="would shadow", files=SIDE_FILES, absent="SHADOWED",
                                  present="IMPORTED json numpy lrlab 42"),
    "guard_runtime_shadow": GuardCase(_answers(square=RUNTIME_SHADOW), {"square_tests": 2, "mean_tests": 3},
                                      status="graded", absent="SHADOWED", present="REAL-MODULES\nCWD-LAST True"),
    "guard_honest_warning": GuardCase(_answers(square=HONEST_WARNING), {"square_tests": 2, "mean_tests": 3},
                                      status="graded", present="square is computed the slow way"),
    "guard_fill_tmp": GuardCase(_answers(square=FILL_TMP), {"square_tests": 2, "mean_tests": 3},
                                reason="the code filled a size-capped folder of its sandbox"),
    "guard_fill_runtime": GuardCase(_answers(square=FILL_RUNTIME), {"square_tests": 2, "mean_tests": 3},
                                    reason="the code filled a size-capped folder of its sandbox"),
    "guard_fork_probe": GuardCase(_answers(square=FORK_PROBE), {"square_tests": 2, "mean_tests": 3},
                                  reason="the code hit the sandbox's process limit (64 processes)"),
    "guard_stderr": GuardCase(_answers(square=STDERR), {"square_tests": 0, "mean_tests": 3},
                              reason="lost its points only because it wrote to stderr"),
}
