"""No active content of a submission reaches the instructor or a learner; student text is escaped in every report.

The hostile cases of ``tests/hostile/active.py`` (HTML/JavaScript outputs, markdown with script, SVG outputs and
side files, a written answer with script, attachments, terminal escapes in a grade id) are graded in one batch of
the toy course next to an honest submission. What the formgrader renders (the notebook in ``autograded/``,
rendered with nbconvert's HTML exporter as the formgrader does), what it serves (the files next to it) and the
feedback pages must hold nothing a browser would run; the written answer must still read, and scores must be
what the honest submission gets. The browser test ``tests/browser/test_browser_6_formgrader.py`` checks the same
in Chromium. The unit tests below check each defence on its own.
"""

from __future__ import annotations

import base64
import csv
import html.parser
from pathlib import Path

import nbformat
import pytest
from hostile import ASSIGNMENT, build_toy_course, cell_by_id, reference_notebook
from hostile.active import (
    ANSWER_WORDS,
    CASES,
    ESCAPE_ID,
    FORMULAS,
    PASSIVE_FILES,
    make,
    side_files,
    written_answer_cell,
)

from lrlab.course.grading import feedback, reports, sanitize, scoring
from lrlab.course.grading import sandbox as sb
from lrlab.course.grading.gradebook import load_config

TOKEN = "__lrlab_pwned"
_URL_ATTRIBUTES = ("href", "src", "srcdoc", "action", "formaction", "data", "xlink:href", "poster", "background")


class _ActiveFinder(html.parser.HTMLParser):
    """Finds what a browser would run of the hostile payloads: script elements, event handlers, script URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._in_script = True
        for name, value in attrs:
            value = value or ""
            plain = "".join(value.split()).lower()
            if plain.startswith("data:image/svg") and name in _URL_ATTRIBUTES:  # an SVG that carries script
                head, _, body = value.partition(",")
                value = base64.b64decode(body + "==").decode(errors="replace") if "base64" in head else body
            if TOKEN not in value:
                continue
            if name.startswith("on") or name == "srcdoc":
                self.found.append(f"<{tag} {name}=...>")
            elif name in _URL_ATTRIBUTES and plain.startswith(("javascript:", "vbscript:", "data:")):
                self.found.append(f"<{tag} {name}={value[:30]}...>")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and TOKEN in data:
            self.found.append(f"<script>{data[:40]}...</script>")


def active_parts(page: str) -> list[str]:
    """The hostile payloads a browser would run in the HTML ``page``."""
    finder = _ActiveFinder()
    finder.feed(page)
    finder.close()
    return finder.found


def render(nb) -> str:
    """A notebook as HTML, as the formgrader and the feedback render it (nbconvert's HTML exporter)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.from_dict(nb))
    return body


# ------------------------------------------------------------------------------------------------ unit tests


def test_the_finder_sees_every_payload_of_an_unsanitized_submission():
    """The checks below mean something: unsanitized, every class of case renders active payloads."""
    root_nb = nbformat.v4.new_notebook()
    root_nb.cells = [nbformat.v4.new_markdown_cell("x")]
    for name, case in CASES.items():
        if case.cells is None or name == "escape_ids":
            continue
        nb = make(root_nb, name, case)
        cell = nb.cells[-1]
        if cell.cell_type == "code":  # outputs as the kernel would send them
            lines = [line for line in cell.source.split("\n") if not line.startswith("from IPython")]
            code = compile("\n".join(lines).replace("display(", "_show("), name, "exec")
            shown = []
            exec(code, {"_show": lambda data, raw=False, shown=shown: shown.append(data),
                        "__builtins__": __builtins__, "HTML": lambda s: {"text/html": s},
                        "Javascript": lambda s: {"application/javascript": s}})
            cell.outputs = [nbformat.v4.new_output("display_data", data=d) for d in shown]
        assert active_parts(render(nb)), name


def test_sanitize_content_is_last_in_the_chain_and_outputs_are_sanitized_after_scores_are_saved(tmp_path):
    from nbgrader.preprocessors import SaveAutoGrades

    course = build_toy_course(tmp_path / "c")
    config = load_config(course)
    assert sanitize.sanitize_chain(config)[-1] is sanitize.SanitizeContent
    replay = type("Replay", (scoring.ReplayExecute,), {"jobs": {}, "rerun": []})
    steps = scoring._autograde_config(config, ASSIGNMENT, "s1", tmp_path, replay).Autograde.autograde_preprocessors
    assert steps[steps.index(SaveAutoGrades) + 1] is sanitize.SanitizeOutputs


def test_sanitize_reports_script_in_a_written_answer_and_keeps_its_words(tmp_path):
    course = build_toy_course(tmp_path / "c")
    nb = make(reference_notebook(course), "answer", CASES["answer_script"])
    path = tmp_path / "submitted" / "s1" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))
    clean, reasons = sanitize.sanitize(load_config(course), path, "s1", ASSIGNMENT, ASSIGNMENT)
    answer = written_answer_cell(clean).source
    assert ANSWER_WORDS in answer and "<script" not in answer and "onerror" in answer  # still reads, inert
    assert not active_parts(render(clean))
    assert any("active content removed" in r and "script" in r for r in reasons), reasons


def test_a_reference_to_a_missing_attachment_cannot_stop_the_formgrader_rendering():
    """nbconvert refuses a notebook whose markdown names an attachment it lacks; a learner could use that to hide a
    submission from the instructor. The reference goes, the kept attachment and the words stay."""
    from lrlab.course.grading.content import sanitize_notebook

    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    cell = nbformat.v4.new_markdown_cell("kept ![a](attachment:a.png) gone ![b](attachment:b.svg) "
                                         '<img src="attachment:never.png"> words')
    cell.attachments = {"a.png": {"image/png": png}, "b.svg": {"image/svg+xml": "<svg onload='x()'/>"}}
    nb = nbformat.v4.new_notebook(cells=[cell])
    notes = sanitize_notebook(nb)
    page = render(nb)
    assert "words" in page and "attachment:b.svg" not in nb.cells[0].source
    assert "attachment:a.png" in nb.cells[0].source and "a.png" in nb.cells[0].attachments
    assert any("b.svg" in n for n in notes) and any("never.png" in n for n in notes)
    assert sanitize_notebook(nb) == []  # a second pass finds nothing more


def test_side_files_of_active_types_are_dropped_and_data_files_kept(tmp_path):
    for name, data in side_files("x").items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    (tmp_path / "toy.ipynb").write_text("{}")
    reasons = sanitize.drop_active_files(tmp_path)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted([*PASSIVE_FILES, "toy.ipynb"])
    assert len(reasons) == len(side_files("x")) - len(PASSIVE_FILES)
    assert any("figure.SVG (image/svg+xml)" in r for r in reasons)
    for name in ("a.htm", "b.svgz", "c.mjs", "d.pdf", "e.xml", "f.html.gz"):
        assert sanitize.active_file(name), name
    for name in ("data.npy", "model.pt", "notes.txt", "plot.png", "helper.py", "Makefile"):
        assert sanitize.active_file(name) is None, name


def _graded_cell(source: str, outputs: list, count: int, grade_id: str = "t") -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": 1,
                                 "schema_version": 3, "solution": False, "task": False}
    cell.execution_count = count
    cell.outputs = outputs
    return cell


def _error(ename: str, evalue: str, count: int, line: int) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue,
                                  traceback=[f"Cell In[{count}], line {line}", f"{ename}: {evalue}"])


def test_feedback_after_hidden_tests_keeps_only_verdicts_and_visible_messages():
    hidden = "check(1)\n### BEGIN HIDDEN TESTS\ncheck(2)\n### END HIDDEN TESTS"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        _graded_cell(hidden, [], 1, "first"),
        # a visible check fails with an exception class the learner named to carry data
        _graded_cell(hidden, [_error("aGlkZGVuIHRlc3Q", "expected 2, got 3", 7341, 1)], 7341, "named"),
        # a forged grader error carrying text
        _graded_cell(hidden, [_error("GraderStopped", "c2VjcmV0IGlucHV0cw==", 7342, 3)], 7342, "forged"),
        _graded_cell(hidden, [_error("CheckFailure", "expected 4, got 5", 9999, 1),
                              nbformat.v4.new_output("execute_result", data={"text/plain": "1"},
                                                     execution_count=9999)], 9999, "check"),
    ]
    feedback.hide_hidden_tests(nb)
    named, forged, check = nb.cells[1], nb.cells[2], nb.cells[3]
    assert [o.ename for o in named.outputs if o.output_type == "error"] == ["Error"]
    assert "expected 2, got 3" in named.outputs[-1].evalue  # the visible check's message stays
    assert forged.outputs[-1].ename == "GraderStopped"
    assert forged.outputs[-1].evalue == feedback.GRADER_SENTENCES["GraderStopped"]
    assert check.outputs[-1].ename == "CheckFailure" and "expected 4, got 5" in check.outputs[-1].evalue
    assert [c.execution_count for c in nb.cells] == [1, 2, 3, 4]  # renumbered: counts set by code carry nothing
    assert all(o.get("execution_count") in (None, 4) for o in check.outputs)
    text = str(nb)
    for leak in ("aGlkZGVuIHRlc3Q", "c2VjcmV0IGlucHV0cw", "7341", "9999"):
        assert leak not in text, leak


def test_the_feedback_step_sanitizes_before_anything_else():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": f"<script>{TOKEN}=1</script><img src=x onerror='{TOKEN}=1'>",
        "application/javascript": f"{TOKEN}=1"})]
    nb.cells = [cell, nbformat.v4.new_markdown_cell(f"<img src=x onerror='{TOKEN}=1'>")]
    assert active_parts(render(nb))
    out, _ = feedback.HideHiddenTests().preprocess(nb, {})
    assert not active_parts(render(out))
    assert list(out.cells[0].outputs[0].data) == ["text/html"]


def _hostile_report() -> reports.GradeReport:
    results = [reports.StudentResult(f"s{i}", "problems", reasons=[formula, f"cell '{ESCAPE_ID}' was edited"],
                                     hidden_failures=[formula]) for i, formula in enumerate(FORMULAS)]
    results.append(reports.StudentResult("esc", "problems", reasons=[f"cell '{ESCAPE_ID}' carries metadata"]))
    return reports.GradeReport(ASSIGNMENT, results, notes=[f"skipped {ESCAPE_ID}.ipynb: not a notebook"])


def test_table_and_summary_show_escapes_instead_of_running_them():
    report = _hostile_report()
    for text in (report.table(), report.summary()):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\t" not in text
        assert "\\x1b[2J" in text and "\\u202e" in text


def test_csv_neutralizes_formulas_and_escapes(tmp_path):
    path = reports.write_csv(_hostile_report(), tmp_path / "grades.csv")
    raw = path.read_text(encoding="utf-8")
    assert "\x1b" not in raw and "\u202e" not in raw
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    for row in rows:
        for key in ("student_id", "reasons", "hidden_test_failures"):
            assert not row[key].startswith(("=", "+", "-", "@", "\t", "\r")), (key, row[key])
    assert rows[0]["reasons"].startswith("'=HYPERLINK")


# ------------------------------------------------------------------------------------------------ one batch

LIMITS = sb.Limits(wall_s=60, cpu_s=60, memory_bytes=2 * sb.GiB)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from lrlab.course.grading.batch import grade

    root = tmp_path_factory.mktemp("activecourse")
    build_toy_course(root, students=["ref", *CASES])
    for student in ["ref", *CASES]:
        folder = root / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nb = reference_notebook(root)
        case = CASES.get(student)
        if case is not None:
            nb = make(nb, student, case)
            if case.files:
                for name, data in side_files(student).items():
                    (folder / name).parent.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(data)
        nbformat.write(nb, str(folder / f"{ASSIGNMENT}.ipynb"))
    lines: list[str] = []
    report = grade(ASSIGNMENT, root=root, jobs=2, limits=LIMITS, progress=lines.append)
    return {"root": root, "report": report, "progress": lines}


def _autograded(root: Path, student: str) -> Path:
    return root / "autograded" / student / ASSIGNMENT


@pytest.mark.slow
@pytest.mark.sandbox
@pytest.mark.parametrize("student", sorted(CASES))
def test_nothing_active_is_stored_where_the_formgrader_or_the_feedback_renders_it(batch, student):
    root = batch["root"]
    graded = nbformat.read(str(_autograded(root, student) / f"{ASSIGNMENT}.ipynb"), as_version=4)
    assert not active_parts(render(graded)), student
    page = root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html"
    assert not active_parts(page.read_text()), student
    served = [p for p in _autograded(root, student).rglob("*") if p.is_file()]
    assert not [p.name for p in served if sanitize.active_file(p.name)], student
    result = batch["report"].by_student()[student]
    assert result.score == batch["report"].by_student()["ref"].score, (student, result.reasons)


@pytest.mark.slow
@pytest.mark.sandbox
def test_outputs_made_while_grading_keep_their_readable_part(batch):
    graded = nbformat.read(str(_autograded(batch["root"], "html_output") / f"{ASSIGNMENT}.ipynb"), as_version=4)
    outputs = graded.cells[-1].outputs
    assert outputs and all(set(o.get("data", {})) <= {"text/plain", "text/html"} for o in outputs)
    assert "<b>result</b>" in outputs[0].data["text/html"]


@pytest.mark.slow
@pytest.mark.sandbox
def test_the_written_answer_still_reads_and_the_safe_attachment_stays(batch):
    root = batch["root"]
    graded = nbformat.read(str(_autograded(root, "answer_script") / f"{ASSIGNMENT}.ipynb"), as_version=4)
    assert ANSWER_WORDS in cell_by_id(graded, "explain").source
    assert ANSWER_WORDS in render(graded)
    attached = nbformat.read(str(_autograded(root, "attachment") / f"{ASSIGNMENT}.ipynb"), as_version=4)
    assert list(attached.cells[-1].attachments) == ["dot.png"]
    assert "data:image/png;base64," in render(attached)
    reasons = batch["report"].by_student()["attachment"].reasons
    assert any("plot.svg" in r for r in reasons), reasons


@pytest.mark.slow
@pytest.mark.sandbox
def test_side_files_are_not_served_and_the_reason_says_so(batch):
    root = batch["root"]
    folder = _autograded(root, "svg_output")
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == sorted([f"{ASSIGNMENT}.ipynb", *PASSIVE_FILES])
    pages = {f"{ASSIGNMENT}.html"}  # the feedback page itself (checked for active content above)
    feedback_files = (root / "feedback" / "svg_output").rglob("*")
    assert not [p for p in feedback_files if p.name not in pages and sanitize.active_file(p.name)]
    reasons = batch["report"].by_student()["svg_output"].reasons
    assert any("report.html (text/html) is not kept" in r for r in reasons), reasons


@pytest.mark.slow
@pytest.mark.sandbox
def test_escape_sequences_in_a_grade_id_never_reach_the_terminal_or_the_csv(batch):
    report = batch["report"]
    assert any("\x1b" in r for r in report.by_student()["escape_ids"].reasons)  # raw in the result ...
    for text in (report.table(), report.summary(), "\n".join(batch["progress"]), report.csv_path.read_text()):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "\\x1b[2J" in report.summary()  # ... shown escaped
