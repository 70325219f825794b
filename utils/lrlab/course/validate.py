"""``lrlab validate``: every source notebook passes its tests; every release notebook fails each autograded test
in the expected way (checked with nbgrader's Validator, which itself exits 0 even on failure).

Imports: the standard library, :mod:`lrlab.course.layout` / :mod:`lrlab.course.errors`, and inside the functions
nbformat, nbgrader and traitlets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lrlab.course.errors import CourseError
from lrlab.course.layout import assignments, relative_path

if TYPE_CHECKING:
    import nbformat

EXPECTED_RELEASE_ERRORS = ("NotImplementedError", "NameError", "CheckFailure", "AssertionError")


@dataclass
class ValidateResult:
    notebook: str
    kind: str  # "source" or "release"
    ok: bool
    detail: str
    seconds: float


def _grade_test_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


def _validate_one(args: tuple[str, str, str]) -> ValidateResult:
    path, kind, rel = args
    import nbformat
    from nbgrader.validator import Validator
    from traitlets.config import Config

    cfg = Config()
    cfg.Execute.timeout = 120
    start = time.perf_counter()
    results = Validator(config=cfg).validate(path)
    seconds = time.perf_counter() - start
    if "type_changed" in results or "changed" in results:
        return ValidateResult(rel, kind, False, "cells were changed or changed type: " + json.dumps(
            list(results)), seconds)
    failed = results.get("failed", [])
    if kind == "source":
        if failed:
            first = failed[0]["raw_error"].strip().splitlines()
            return ValidateResult(rel, kind, False, f"{len(failed)} test cell(s) fail, first: "
                                  f"{first[-1] if first else '?'}", seconds)
        return ValidateResult(rel, kind, True, "all tests pass", seconds)
    nb = nbformat.read(path, as_version=4)
    tests = _grade_test_cells(nb)
    failed_by_source = {f["source"]: f["raw_error"] for f in failed}
    problems = []
    for cell in tests:
        gid = cell.metadata["nbgrader"]["grade_id"]
        err = failed_by_source.get(cell.source.strip())
        if err is None:
            problems.append(f"{gid} passes on the unanswered notebook")
        elif not any(name in err for name in EXPECTED_RELEASE_ERRORS):
            last = err.strip().splitlines()[-1] if err.strip() else "?"
            problems.append(f"{gid} fails in an unexpected way: {last}")
    if problems:
        return ValidateResult(rel, kind, False, "; ".join(problems), seconds)
    return ValidateResult(rel, kind, True, f"all {len(tests)} test cells fail as expected", seconds)


def validate(root: Path, names: Sequence[str] = (), jobs: int = 1) -> list[ValidateResult]:
    """Source notebooks pass every test; release notebooks fail every autograded test in the expected way."""
    work = []
    for name in assignments(root, names):
        for kind in ("source", "release"):
            for p in sorted((root / kind / name).glob("*.ipynb")):
                work.append((str(p), kind, relative_path(p, root)))
        if not list((root / "release" / name).glob("*.ipynb")):
            raise CourseError(f"release/{name} has no notebooks: run `lrlab release {name}` first")
    if jobs == 1:
        return [_validate_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_validate_one, work))
