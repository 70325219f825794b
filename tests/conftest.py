"""Shared fixtures: the course root and throwaway copies of the course for tests that write."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from coursecopy import ROOT, copy_course

BIN = Path(sys.executable).parent

os.environ.setdefault("MPLBACKEND", "Agg")

# Hypothesis: in CI (the CI variable set, as GitHub Actions and .ci/run do) the property tests run with a fixed
# seed, so every run checks the same examples and a change lands or fails on its merits, never by chance; locally
# they keep exploring new random examples (and replay the failures they found from .hypothesis/). The property
# tests take their settings from the profile "lrlab", which is whichever of the two applies.
# (Both start from Hypothesis's own "default" profile, not from whatever is loaded: Hypothesis loads its "ci"
# profile by itself when it sees a CI variable, even an empty one.)
settings.register_profile("lrlab-ci", settings.get_profile("default"), derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("lrlab-dev", settings.get_profile("default"), deadline=None)
HYPOTHESIS_PROFILE = "lrlab-ci" if os.environ.get("CI", "").lower() not in ("", "0", "false") else "lrlab-dev"
settings.register_profile("lrlab", settings.get_profile(HYPOTHESIS_PROFILE))
settings.load_profile(HYPOTHESIS_PROFILE)

# nbgrader runs `alembic` by name; kernels are found through this interpreter's environment.
if os.environ.get("PATH", "").split(os.pathsep)[0] != str(BIN):
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def course_copy(tmp_path: Path) -> Path:
    """A full copy of the course in a temporary folder (its own gradebook and exchange)."""
    return copy_course(tmp_path / "course")


def pytest_runtest_setup(item):
    """Tests marked `sandbox` need bubblewrap: skipped where none can be made, unless CI requires it."""
    if item.get_closest_marker("sandbox"):
        from lrlab.course.grading.sandbox import sandbox_problem

        problem = sandbox_problem()
        if problem is not None:
            if os.environ.get("LRLAB_REQUIRE_SANDBOX") == "1":
                pytest.fail(f"LRLAB_REQUIRE_SANDBOX=1, but no sandbox can be made here: {problem}")
            pytest.skip(f"no sandbox here: {problem}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under xdist, keep the browser tests in one worker: they share one JupyterLab server per worker.

    tryfirst: pytest-xdist reads the xdist_group marks in a hook of its own, registered after this conftest
    and so (last in, first called) run before this one; marks added after it had looked were ignored, and
    the browser tests were spread over several workers."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))
