"""lrlab grade: no marks without work. Tampering with the kernel's machinery, metadata that changes how a test runs,
side files that shadow modules and injected results earn nothing and are flagged; honest warnings cost nothing.

The cases of ``tests/hostile/guard_cases.py`` are graded once per module in one batch next to a correct submission;
the unit tests below it check the pieces one by one.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from hostile import ASSIGNMENT, build_toy_course, cell_by_id, reference_notebook
from hostile.guard_cases import GUARD_CASES

from lrlab.course.grading import guard as gd
from lrlab.course.grading import sandbox as sb
from lrlab.course.grading.batch import grade
from lrlab.course.grading.staging import SHADOW_SUFFIX, rename_shadowing

LIMITS = sb.Limits(wall_s=60, cpu_s=60, memory_bytes=2 * sb.GiB, processes=64, tmp_bytes=16 * sb.MiB,
                   runtime_bytes=4 * sb.MiB)
AS_ROOT_ONLY = {"guard_fork_probe"}  # tested in test_fork_probe_as_root_is_bounded


def _scores(root: Path, student: str) -> dict[str, float | None]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        return {cell: gb.find_grade(cell, ASSIGNMENT, ASSIGNMENT, student).auto_score
                for cell in ("square_tests", "mean_tests")}


def _outputs(root: Path, student: str) -> str:
    nb = nbformat.read(str(root / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4)
    texts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            texts.append(str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
                         + str(output.get("evalue", "")))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("guardcourse")
    build_toy_course(root, students=["ref", *GUARD_CASES])
    for student, case in {"ref": None, **GUARD_CASES}.items():
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nb = reference_notebook(root) if case is None else case.make(root)
        nbformat.write(nb, str(folder / f"{ASSIGNMENT}.ipynb"))
        for rel, text in (case.files if case else {}).items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
    report = grade(ASSIGNMENT, root=root, jobs=2, limits=LIMITS)
    return {"root": root, "report": report}




@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.xdist_group("lrlab_grading_guard")
def test_honest_submission_is_untouched(guarded):
    result = guarded["report"].by_student()["ref"]
    assert result.status == "graded" and result.reasons == []
    assert _scores(guarded["root"], "ref") == {"square_tests": 2.0, "mean_tests": 3.0}


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.xdist_group("lrlab_grading_guard")
@pytest.mark.parametrize("name", sorted(set(GUARD_CASES) - AS_ROOT_ONLY))
def test_guard_case(guarded, name):
    _check_case(guarded, name)


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.xdist_group("lrlab_grading_guard")
@pytest.mark.skipif(os.geteuid() != 0, reason="Linux applies the process limit to every user but root: only a "
                    "grader running as root needs the box's own uid to bound a fork probe")
def test_fork_probe_as_root_is_bounded(guarded):
    _check_case(guarded, "guard_fork_probe")
    outputs = _outputs(guarded["root"], "guard_fork_probe")
    uid = int(outputs.split("UID ", 1)[1].split()[0])
    assert uid != 0 and int(outputs.split("FORKED ", 1)[1].split()[0]) < 64


def _check_case(guarded, name):
    case = GUARD_CASES[name]
    result = guarded["report"].by_student()[name]
    assert result.status == case.status, (result.status, result.reasons)
    if case.reason:
        assert any(case.reason in r for r in result.reasons), result.reasons
    else:
        assert result.reasons == []
    assert _scores(guarded["root"], name) == {k: float(v) for k, v in case.scores.items()}, result.reasons
    outputs = _outputs(guarded["root"], name)
    if case.absent:
        assert case.absent not in outputs
    if case.present:
        assert case.present in outputs


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.xdist_group("lrlab_grading_guard")
def test_tampering_is_flagged_in_the_csv_and_the_gradebook(guarded):
    from nbgrader.api import Gradebook

    root = guarded["root"]
    csv = guarded["report"].csv_path.read_text()
    row = next(line for line in csv.splitlines() if line.startswith("guard_ast_swallow,"))
    assert "tampered with the grader" in row and "ast_transformers" in row
    assert "flagged for manual review" in row
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        submission = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, "guard_ast_swallow")
        assert submission.flagged
        assert any("ast_transformers" in (c.auto_comment or "") for c in submission.comments)
        honest = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, "ref")
        assert not honest.flagged


# -- the pieces -------------------------------------------------------------------------------------------------


def test_credit_rule_drops_results_the_test_did_not_produce():
    cell = nbformat.v4.new_code_cell("assert square(3) == 9")
    forged = nbformat.v4.new_output("execute_result", data={"text/plain": "2.0"}, execution_count=1)
    error = nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])
    cell.outputs = [forged, error]
    assert gd.credit_outputs(cell) and cell.outputs == [error]
    honest = nbformat.v4.new_code_cell("check = 1\ncheck * 0.5")
    result = nbformat.v4.new_output("execute_result", data={"text/plain": "0.5"}, execution_count=1)
    honest.outputs = [result]
    assert not gd.credit_outputs(honest) and honest.outputs == [result]
    honest.outputs = [forged, result]
    assert gd.credit_outputs(honest) and honest.outputs == [result]
    honest.outputs = [result, error]  # the last expression never ran
    assert gd.credit_outputs(honest) and honest.outputs == [error]


def test_stderr_only_loss_names_the_line():
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="\nwarning: slow\nmore\n")]
    assert gd.stderr_only_loss(cell) == "warning: slow"
    cell.outputs.append(nbformat.v4.new_output("error", ename="E", evalue="", traceback=[]))
    assert gd.stderr_only_loss(cell) is None


def test_scan_flags_code_reaching_for_the_machinery(tmp_path):
    build_toy_course(tmp_path)
    nb = reference_notebook(tmp_path)
    assert gd.scan(nb) == []
    cell_by_id(nb, "square").source = "import gc\nget_ipython().ast_transformers.append(None)\ndef square(x): ..."
    cell_by_id(nb, "mean").source = "%matplotlib inline\nimport sys\nsys.settrace(None)\ndef mean(xs): ..."
    hits = gd.scan(nb)
    assert len(hits) == 2 and "'square'" in hits[0] and "gc" in hits[0] and "ast_transformers" in hits[0]
    assert ".settrace" in hits[1]
    cell_by_id(nb, "setup").source = "import gc"  # locked cells are the instructor's
    assert len(gd.scan(nb)) == 2


def test_verdict_refuses_an_unsigned_answer():
    guard = gd.Guard()
    reply = {"status": "ok", "data": {"text/plain": repr('["forged", "[]"]')}}
    assert gd.Guard().verdict(reply, "c") == ["the grader's check in the kernel was replaced"]
    assert "removed" in guard.verdict({"status": "error"}, "c")[0]


@pytest.mark.parametrize("name, kind", [("lrlab/__init__.py", "folder"), ("torch.py", "file"),
                                        ("numpy/__init__.py", "folder"), ("sitecustomize.py", "file"),
                                        ("json.py", "file"), ("extra.pth", "file"), ("_ctypes.so", "file")])
def test_side_files_that_shadow_a_module_are_renamed(tmp_path, name, kind):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("x = 1\n")
    (tmp_path / "helper.py").write_text("y = 2\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "numbers.csv").write_text("1,2\n")
    top = name.split("/")[0]
    reasons = rename_shadowing(tmp_path)
    assert len(reasons) == 1 and top in reasons[0] and kind in reasons[0], reasons
    assert not (tmp_path / top).exists() and (tmp_path / (top + SHADOW_SUFFIX)).exists()
    assert (tmp_path / "helper.py").exists() and (tmp_path / "data" / "numbers.csv").exists()


def test_feedback_shows_a_fixed_sentence_for_a_withheld_cell():
    """A withheld test cell keeps a grader sentence in the feedback (not "a test failed"); a learner's own error
    class of the same name cannot carry its text there either."""
    from lrlab.course.grading import feedback

    cell = nbformat.v4.new_code_cell("assert True\n### BEGIN HIDDEN TESTS\nassert 1\n### END HIDDEN TESTS\n",
                                     metadata={"nbgrader": {"grade": True, "grade_id": "t", "points": 1}})
    cell.outputs = []
    gd.withhold(cell, "the test code was changed while it ran")
    cell.outputs.append(nbformat.v4.new_output("error", ename=gd.GUARD_ERROR, evalue="<b>forged</b>",
                                               traceback=[]))
    out = feedback.hide_test_cell(cell)
    sentence = feedback.GRADER_SENTENCES[gd.GUARD_ERROR]
    assert [o.evalue for o in out.outputs] == [sentence, sentence]
    assert "forged" not in str(out.outputs)
