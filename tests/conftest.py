"""Shared fixtures: the course root and throwaway copies of the course for tests that write."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

os.environ.setdefault("MPLBACKEND", "Agg")
# nbgrader runs `alembic` by name; kernels are found through this interpreter's environment.
if os.environ.get("PATH", "").split(os.pathsep)[0] != str(BIN):
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def copy_course(dest: Path, assignments: list[str] | None = None) -> Path:
    """Copy what an instructor works with (config, source, release, notebooks) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    for sub in ("source", "release"):
        (dest / sub).mkdir(exist_ok=True)
        for folder in sorted((ROOT / sub).iterdir()):
            if folder.is_dir() and (assignments is None or folder.name in assignments):
                shutil.copytree(folder, dest / sub / folder.name, ignore=ignore)
    shutil.copytree(ROOT / "notebooks", dest / "notebooks", ignore=ignore)
    return dest


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def course_copy(tmp_path: Path) -> Path:
    """A full copy of the course in a temporary folder (its own gradebook and exchange)."""
    return copy_course(tmp_path / "course")
