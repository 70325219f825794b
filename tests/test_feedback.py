"""lrlab.course.grading.feedback: learners see their visible tests and messages, never hidden tests or their
tracebacks."""

from __future__ import annotations

import copy
import html
import re

import nbformat
import pytest
from hostile import MEAN_TESTS, SQUARE_TESTS, cell_by_id, toy_source

from lrlab.course.grading import feedback as fb

SOURCE = "a = 1\n### BEGIN HIDDEN TESTS\nassert secret_check(a) == 42\n### END HIDDEN TESTS\nprint('done')"


def test_hidden_regions_and_strip():
    assert fb.hidden_regions(SOURCE) == [(2, 4)]
    assert fb.strip_hidden(SOURCE) == f"a = 1\n{fb.HIDDEN_MARKER}\nprint('done')"
    assert fb.hidden_regions("x = 1") == [] and fb.strip_hidden("x = 1") == "x = 1"
    unterminated = "a\n    ### BEGIN HIDDEN TESTS\n    leak()"
    assert fb.hidden_regions(unterminated) == [(2, 3)]
    assert fb.strip_hidden(unterminated) == f"a\n    {fb.HIDDEN_MARKER}"  # keeps the indentation
    assert fb.hidden_lines(SOURCE) == ["assert secret_check(a) == 42"]
    with pytest.raises(ValueError, match="must be a str"):
        fb.hidden_regions(None)


def test_failing_line_reads_ipython_tracebacks():
    tb = ["\x1b[0;31mAssertionError\x1b[0m   Traceback (most recent call last)",
          "Cell \x1b[0;32mIn[7]\x1b[0m, line \x1b[0;32m3\x1b[0m", "Cell In[7], line 3",
          "Cell In[2], line 9, in helper"]
    assert fb.failing_line(tb, 7) == 3
    assert fb.failing_line(tb, 2) == 9
    assert fb.failing_line(tb, 5) is None and fb.failing_line(tb, None) is None


def _test_cell(source: str, outputs: list, count: int = 4):
    cell = nbformat.v4.new_code_cell(source, execution_count=count, outputs=outputs)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "locked": True, "points": 1, "solution": False,
                                 "schema_version": 3, "task": False}
    return cell


def _err(line: int, ename="AssertionError", evalue="boom", count=4):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=["----", f"Cell In[{count}], line {line}", f"{ename}: {evalue}"])


def test_visible_failure_keeps_its_message_but_not_the_traceback():
    cell = fb.hide_test_cell(_test_cell(SOURCE, [_err(1, evalue="a: expected 2, got 1")]))
    (out,) = cell.outputs
    assert out.evalue == "a: expected 2, got 1" and out.traceback == ["AssertionError: a: expected 2, got 1"]
    assert "secret_check" not in cell.source and fb.HIDDEN_MARKER in cell.source


def test_hidden_failure_becomes_a_fixed_sentence_and_hides_other_output():
    printed = nbformat.v4.new_output("stream", name="stdout", text="expected 42\n")
    cell = fb.hide_test_cell(_test_cell(SOURCE, [printed, _err(3, evalue="HIDDEN expected 42")]))
    assert [o.output_type for o in cell.outputs] == ["stream", "error"] and cell.outputs[0].text == fb.DROPPED
    assert cell.outputs[1].ename == "HiddenTestFailed" and "42" not in str(cell.outputs)


def test_a_failure_of_unknown_origin_is_treated_as_hidden():
    no_frame = nbformat.v4.new_output("error", ename="AssertionError", evalue="expected 42", traceback=["?"])
    cell = fb.hide_test_cell(_test_cell(SOURCE, [no_frame]))
    assert cell.outputs[0].ename == "TestFailed" and "42" not in str(cell.outputs)


def test_grader_errors_are_kept():
    stopped = nbformat.v4.new_output("error", ename="GraderStopped", evalue="not run", traceback=["x"])
    cell = fb.hide_test_cell(_test_cell(SOURCE, [stopped]))
    assert cell.outputs[0].ename == "GraderStopped"


def test_outputs_that_quote_hidden_code_are_removed_anywhere():
    """A second line of defence: even in a cell that ran before any hidden test (where no quote is
    expected: the hidden code had not run), an output quoting hidden code is removed."""
    nb = nbformat.v4.new_notebook()
    leak = nbformat.v4.new_output("stream", name="stdout", text="In[4] was: assert secret_check(a) == 42\n")
    fine = nbformat.v4.new_output("stream", name="stdout", text="hello\n")
    nb.cells = [nbformat.v4.new_code_cell("print(guess)", outputs=[leak, fine]), _test_cell(SOURCE, [])]
    fb.hide_hidden_tests(nb)
    assert nb.cells[0].outputs[0].text == fb.REDACTED and nb.cells[0].outputs[1].text == "hello\n"
    with pytest.raises(ValueError, match="min_length"):
        fb.hide_hidden_tests(nb, min_length=0)


@pytest.fixture(scope="module")
def executed_toy():
    """The toy notebook, run for real: square hard-coded (hidden test fails), mean wrong (visible fails)."""
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = toy_source()
    cell_by_id(nb, "square").source = "def square(x):\n    return 9"
    cell_by_id(nb, "mean").source = "def mean(xs):\n    return 0"
    ExecutePreprocessor(timeout=60, allow_errors=True, kernel_name="python3").preprocess(nb, {})
    return nb


def _render(nb) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.register_preprocessor(fb.HideHiddenTests, enabled=True)
    body, _ = exporter.from_notebook_node(copy.deepcopy(nb))
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def test_rendered_feedback_has_no_hidden_code_nor_tracebacks(executed_toy):
    before = _render_without(executed_toy)
    assert "HIDDEN-SQUARE" in before and "_inputs" in before  # the leak this module closes is real
    text = _render(executed_toy)
    for line in fb.hidden_lines(SQUARE_TESTS) + fb.hidden_lines(MEAN_TESTS) + ["HIDDEN-SQUARE", "HIDDEN-MEAN"]:
        assert line not in text
    assert "Traceback (most recent call last)" not in text
    assert "fails a hidden test" in text  # square: visible passes, hidden fails
    assert "mean([1, 2, 3]) should be 2" in text  # mean: the visible message stays


def _render_without(nb) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(copy.deepcopy(nb))
    return html.unescape(re.sub(r"<[^>]+>", "", body))


LEAKY_SQUARE = '''import base64, codecs, sys
from IPython.display import display
_seen = []
def square(x):
    _seen.append(x)
    text = repr(_seen)
    print("LEAK-b64:" + base64.b64encode(text.encode()).decode())
    print("LEAK-hex:" + text.encode().hex(), file=sys.stderr)
    display({"text/plain": "LEAK-rot13:" + codecs.encode(text, "rot13")}, raw=True)
    return x * x'''

LEAKY_MEAN = '''_hist = "\\n".join(In)
print("LEAK-b64:" + base64.b64encode(_hist.encode()).decode())
print("LEAK-reversed:" + _hist[::-1])
for _i in range(0, len(_hist), 7):
    print("LEAK-split:" + _hist[_i:_i + 7])
display({"text/html": "<b>LEAK-html:" + _hist.encode().hex() + "</b>"}, raw=True)
def mean(xs):
    return sum(xs) / len(xs)'''

LEAKY_LAST = 'raise ValueError("LEAK-error:" + base64.b64encode("\\n".join(In).encode()).decode())'


@pytest.fixture(scope="module")
def executed_leaky():
    """The toy notebook with a learner who prints what the hidden tests do, encoded, everywhere."""
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = toy_source()
    cell_by_id(nb, "square").source = LEAKY_SQUARE
    cell_by_id(nb, "mean").source = LEAKY_MEAN
    nb.cells.append(nbformat.v4.new_code_cell(LEAKY_LAST))
    ExecutePreprocessor(timeout=60, allow_errors=True, kernel_name="python3").preprocess(nb, {})
    return nb


def _payloads(text: str, label: str) -> list[str]:
    return re.findall(rf"LEAK-{label}:([A-Za-z0-9+/=\[\]., -]{{6,}})", text)


def test_encoded_leaks_reach_unfiltered_feedback(executed_leaky):
    """The attack is real: without this module, hidden inputs and hidden test code are recovered."""
    import base64
    import codecs

    text = _render_without(executed_leaky)
    recovered = [base64.b64decode(p).decode() for p in _payloads(text, "b64")]
    assert any("2.5" in r and "-7" in r for r in recovered)  # the hidden inputs, from the test cell
    assert any("_inputs = [-7, 0, 11, 2.5]" in r for r in recovered)  # the hidden code, via In
    assert any("-7" in bytes.fromhex(p).decode() for p in _payloads(text, "hex"))  # on stderr
    assert any("2.5" in codecs.decode(p, "rot13") for p in _payloads(text, "rot13"))  # as a display
    assert "LEAK-reversed" in text and "LEAK-split" in text and "LEAK-html" in text and "LEAK-error" in text


def test_rendered_feedback_has_no_encoded_leak(executed_leaky):
    text = _render(executed_leaky)
    for label in ("b64", "hex", "rot13", "reversed", "split", "html", "error"):
        assert not _payloads(text, label), label
    outputs = str([c.get("outputs") for c in fb.hide_hidden_tests(copy.deepcopy(executed_leaky)).cells])
    assert "LEAK" not in outputs
    assert fb.DROPPED.strip() in text and fb.ERROR_HIDDEN in text


def test_cells_before_any_hidden_test_keep_their_output():
    nb = nbformat.v4.new_notebook()
    early = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", name="stdout",
                                                                                  text="1\n")])
    visible_only = _test_cell("assert a == 2, 'a should be 2'", [_err(1, evalue="a should be 2")], count=2)
    late = nbformat.v4.new_code_cell("print(2)", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="2\n"),
        nbformat.v4.new_output("error", ename="LeakError_aGVsbG8", evalue="aGVsbG8=", traceback=["x"])])
    late_builtin = nbformat.v4.new_code_cell("1/0", outputs=[
        nbformat.v4.new_output("error", ename="ZeroDivisionError", evalue="aGVsbG8=", traceback=["x"])])
    nb.cells = [early, visible_only, _test_cell(SOURCE, [], count=3), late, late_builtin]
    fb.hide_hidden_tests(nb)
    assert nb.cells[0].outputs[0].text == "1\n"
    assert nb.cells[1].outputs[0].evalue == "a should be 2" and nb.cells[1].outputs[0].traceback == [
        "AssertionError: a should be 2"]
    assert [o.get("text", o.get("evalue")) for o in nb.cells[3].outputs] == [fb.DROPPED, fb.ERROR_HIDDEN]
    assert nb.cells[3].outputs[1].ename == "Error"
    assert nb.cells[4].outputs[0].ename == "ZeroDivisionError" and "aGVsbG8" not in str(nb.cells[4].outputs)


def test_visible_messages_are_capped():
    cell = fb.hide_test_cell(_test_cell(SOURCE, [_err(1, evalue="x" * 5000)]))
    assert len(cell.outputs[0].evalue) <= fb.MESSAGE_CHARS + 10


def test_split_hidden_parts_join_back():
    parts = fb.split_hidden(SOURCE)
    assert parts == [("a = 1", False),
                     ("### BEGIN HIDDEN TESTS\nassert secret_check(a) == 42\n### END HIDDEN TESTS", True),
                     ("print('done')", False)]
    assert "\n".join(p for p, _ in parts) == SOURCE
    assert fb.split_hidden("x = 1") == [("x = 1", False)]
    two = "### BEGIN HIDDEN TESTS\nh1\n### END HIDDEN TESTS\nv\n### BEGIN HIDDEN TESTS\nh2"
    assert [h for _, h in fb.split_hidden(two)] == [True, False, True]
    assert "\n".join(p for p, _ in fb.split_hidden(two)) == two
