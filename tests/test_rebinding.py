"""An answer cell cannot make a test pass by binding the names the tests use (``checks``, ``np``, ...) to fakes.

Every test cell imports the course modules it uses itself, so whatever an answer cell bound to those names is
replaced before the test runs. Here, for the first code exercise of every assignment, the unanswered stub (it raises
NotImplementedError) is submitted together with a fake ``checks`` that accepts everything, and fake ``np`` and
``torch``: the exercise must still score 0.
"""

from __future__ import annotations

import json

import pytest

from nbharness import ROOT, run_assignment

FAKES = '''

class _AcceptsAll:
    """Every check passes, every call returns something harmless."""

    def __getattr__(self, name):
        if name == "own_work":
            return lambda fn, *a, **k: (lambda *args, **kwargs: None)
        return lambda *a, **k: None

checks = _AcceptsAll()
np = _AcceptsAll()
torch = _AcceptsAll()
'''


def _first_exercise(assignment: str) -> tuple[str, str]:
    """(grade_id, release stub) of the first answer cell that has a test cell."""
    nb = json.loads((ROOT / "release" / assignment / f"{assignment}.ipynb").read_text())
    ids = {c["metadata"].get("nbgrader", {}).get("grade_id") for c in nb["cells"]}
    for c in nb["cells"]:
        meta = c["metadata"].get("nbgrader", {})
        if c["cell_type"] == "code" and meta.get("solution") and f"{meta['grade_id']}_tests" in ids:
            source = c["source"]
            return meta["grade_id"], source if isinstance(source, str) else "".join(source)
    raise AssertionError(f"{assignment} has no code exercise with a test cell")


ASSIGNMENTS = sorted(p.name for p in (ROOT / "source").iterdir() if p.is_dir())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_fake_checks_and_modules_bound_in_an_answer_cell_earn_nothing(assignment):
    grade_id, stub = _first_exercise(assignment)
    report = run_assignment(assignment, replace={grade_id: stub + FAKES}, params={},
                            stop_after=f"{grade_id}_tests")
    result = report.tests[f"{grade_id}_tests"]
    assert result.score == 0 and "NotImplementedError" in result.error, report.summary()
