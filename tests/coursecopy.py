"""Helpers shared by the test modules: the course root and throwaway copies of the course.

(Kept out of conftest.py so that test modules can import them by name: tests/browser has a conftest of its own.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
