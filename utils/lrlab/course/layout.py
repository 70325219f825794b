"""Where a course's parts are: its root folder, its assignments, the notebooks ``lrlab run`` executes.

A course is a folder holding ``nbgrader_config.py`` and ``source/`` with one folder per assignment
(``NN_name``); ``release/`` is generated from it and ``notebooks/`` holds the demos that are not graded.

Imports: the standard library and :mod:`lrlab.course.errors`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from lrlab.course.errors import CourseError

ASSIGNMENT_PATTERN = "[0-9][0-9]_*"


def find_root(start: str | os.PathLike | None = None) -> Path:
    """The course root: the nearest folder (from ``start`` upwards) holding nbgrader_config.py and source/."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "source").is_dir():
            return folder
    package_root = Path(__file__).resolve().parents[3]
    if (package_root / "nbgrader_config.py").is_file():
        return package_root
    raise CourseError(f"no course found: no folder from {here} upwards holds nbgrader_config.py and source/")


def assignments(root: Path, names: Sequence[str] = ()) -> list[str]:
    """Assignment names in source/ (``NN_name``), or the given ones after checking they exist."""
    found = sorted(p.name for p in (root / "source").glob(ASSIGNMENT_PATTERN) if p.is_dir())
    if not names:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise CourseError(f"unknown assignment(s) {', '.join(unknown)}; the course has: {', '.join(found) or 'none'}")
    return list(names)


def course_notebooks(root: Path) -> list[Path]:
    """Every notebook `lrlab run` executes: source/NN_*/**.ipynb, then notebooks/*.ipynb."""
    nbs = []
    for name in assignments(root):
        nbs += sorted((root / "source" / name).glob("*.ipynb"))
    nbs += sorted((root / "notebooks").glob("*.ipynb"))
    return [p for p in nbs if ".ipynb_checkpoints" not in p.parts]


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to the course root when it lies inside it, else as it is."""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)
