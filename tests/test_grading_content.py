"""lrlab.course.grading.content: no active content of a submission survives, written answers stay readable.

Every hostile case is checked twice: rendered as it was submitted, the detector finds it active (so
the case is real and a passthrough would fail the test); sanitized, it finds nothing.
"""

from __future__ import annotations

import copy
import re
from html import unescape
from html.parser import HTMLParser

import nbformat
import pytest
from nbconvert.filters.markdown import markdown2html

from lrlab.course.grading import content as gc

ACTIVE_TAGS = {"script", "iframe", "frame", "object", "embed", "form", "meta", "base", "svg", "math", "style",
               "link", "applet", "template", "noscript", "input", "button", "textarea", "select", "video", "audio"}
URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "data", "background", "poster", "srcdoc"}


class _Detector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ACTIVE_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = re.sub(r"[\x00-\x20]", "", value or "").lower()
            if name.startswith("on"):
                self.found.append(f"{tag}.{name}")
            elif name == "style" and ("expression(" in value or "url(" in value):
                self.found.append(f"{tag}.style")
            elif name in URL_ATTRS and (value.startswith(("javascript:", "vbscript:", "livescript:"))
                                        or value.startswith("data:") and not value.startswith("data:image/png")):
                self.found.append(f"{tag}.{name}={value[:30]}")

    handle_startendtag = handle_starttag

    def handle_comment(self, data):
        if "<script" in data.lower():
            self.found.append("comment hiding a script")


def active(html_text: str) -> list[str]:
    """What in ``html_text`` a browser would run or follow (a conservative detector)."""
    detector = _Detector()
    detector.feed(html_text)
    detector.close()
    return detector.found


# -- markdown: each hostile answer is active when rendered raw, inert once sanitized ----------------

HOSTILE_MARKDOWN = {
    "script": "My answer.\n\n<script>fetch('/api/contents')</script>",
    "case trick": "<ScRiPt>alert(1)</sCrIpT>",
    "img onerror": "Look: <img src=x onerror=alert(1)>",
    "iframe": '<iframe src="javascript:alert(1)"></iframe>',
    "svg onload": "<svg onload=alert(1)><circle r=4 /></svg>",
    "svg script": "<svg><script>alert(1)</script></svg>",
    "math": '<math><mtext><a xlink:href="javascript:alert(1)">m</a></mtext></math>',
    "link javascript": "[click](javascript:alert(1))",
    "link mixed case": "[click](JaVaScRiPt:alert(1))",
    "link entity": "[click](&#106;avascript&#58;alert(1))",
    "link hex entity": "[click](&#x6A;&#x61;vascript:alert(1))",
    "autolink": "<javascript:alert(1)>",
    "reference link": "[click][r]\n\n[r]: javascript:alert(1)",
    "vbscript": "[click](vbscript:msgbox(1))",
    "data html": "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "html anchor": '<a href="JaVaScRiPt:alert(1)">x</a>',
    "comment hiding script": "<!-- note --><script>alert(1)</script><!-- <script>x</script> -->",
    "nested unclosed": "<div><p><img src=x onerror=alert(1)//<b>",
    "form": '<form action="javascript:alert(1)"><button>Grade</button></form>',
    "meta refresh": '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "base": '<base href="javascript:alert(1)//">',
    "object": '<object data="javascript:alert(1)"></object><embed src="javascript:alert(1)">',
    "css expression": '<div style="width: expression(alert(1))">x</div>',
    "css url": '<p style="background:url(javascript:alert(1))">x</p>',
    "style block": "<style>body{background:url(javascript:alert(1))}</style>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_MARKDOWN))
def test_hostile_markdown_is_active_raw_and_inert_sanitized(name):
    text = HOSTILE_MARKDOWN[name]
    assert active(markdown2html(text)), f"{name}: the case should be active when rendered as submitted"
    clean, notes = gc.sanitize_markdown(text)
    assert not active(markdown2html(clean)), f"{name}: {markdown2html(clean)!r}"
    assert notes


def test_markdown_written_answer_stays_readable():
    answer = (
        "## My answer\n\nThe loss **falls** when the *learning rate* decays:\n\n"
        "- warmup for `5` epochs\n- then cosine, $\\eta_t = \\eta_0 \\cdot \\frac{1}{2}(1+\\cos(\\pi t/T))$\n"
        "1. first\n2. second with $x^2$ and $$a < b$$\n\n"
        "| schedule | best loss |\n|---|---|\n| step | 0.41 |\n| cosine | 0.38 |\n\n"
        "```python\nfor lr in lrs:\n    if lr < 1e-3:\n        print(lr)\n```\n\n"
        "Training data: the train split. See [the paper](https://arxiv.org/abs/1608.03983).<br>"
        "H<sub>2</sub>O and <b>bold</b>."
    )
    clean, notes = gc.sanitize_markdown(answer)
    assert clean == answer and notes == []  # nothing to remove: byte for byte the same
    rendered = markdown2html(clean)
    for piece in ("<strong>falls</strong>", "<li>warmup for <code>5</code> epochs</li>", "$x^2$", "<table>",
                  "cosine", "https://arxiv.org/abs/1608.03983", "<sub>2</sub>", "1e-3"):
        assert piece in rendered, piece


def test_neutralized_tags_still_read_as_text():
    clean, _ = gc.sanitize_markdown("use `List<int>` and <img src=x onerror=alert(1)>")
    assert clean.replace(gc.ZWSP, "") == "use `List<int>` and <img src=x onerror=alert(1)>"
    assert "&lt;\u200bimg src=x onerror=alert(1)&gt;" in markdown2html(clean)


def test_mathjax_commands_that_style_or_load_code_are_made_inert():
    text = r"$\require{html}\style{position:fixed;top:0}{\text{x}}\class{jp-Toolbar}{y}\cssId{z}{w}\unicode{x}$"
    clean, notes = gc.sanitize_markdown(text)
    assert not re.search(r"\\(require|style|class|cssId|unicode)\{", clean)
    assert clean.replace(gc.ZWSP, "") == text and notes
    assert gc.sanitize_markdown(r"$\stylebox \classic \frac{a}{b}$") == (r"$\stylebox \classic \frac{a}{b}$", [])


def test_safe_data_images_and_prose_with_a_colon_are_kept():
    text = "![plot](data:image/png;base64,iVBORw0KGgo=) and data: the set, JavaScript is a language"
    assert gc.sanitize_markdown(text) == (text, [])


def test_block_dangerous_urls_counts_every_spelling():
    spellings = ["javascript:", "JAVASCRIPT:", "java\nscript:", "&#106;avascript:", "&#0000106avascript:",
                 "javascript&colon;", "javascript&#x3A;", "java&Tab;script:", "javascript\\:", " vbscript:",
                 "livescript:", "data:text/html,", "DATA:application/xhtml+xml,"]
    for spelling in spellings:
        out, n = gc.block_dangerous_urls(f"[x]({spelling}alert(1))")
        assert n == 1 and "#blocked-" in out, spelling
        assert not active(markdown2html(out)), spelling
    assert gc.block_dangerous_urls("data:image/png;base64,AAAA https://x.org/javascript") == (
        "data:image/png;base64,AAAA https://x.org/javascript", 0)


# -- HTML outputs ----------------------------------------------------------------------------------

HOSTILE_HTML = {k: v for k, v in HOSTILE_MARKDOWN.items() if "<" in v and not v.startswith("<javascript")}
HOSTILE_HTML |= {
    "img data svg": '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=">',
    "a data": '<a href="data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">x</a>',
    "split script": "<<script>alert(1)//<</script>",
    "a control char": '<a href="java&#9;script:alert(1)">x</a>',
    "srcdoc": "<iframe srcdoc=\"&lt;script&gt;parent.alert(1)&lt;/script&gt;\"></iframe>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HTML))
def test_hostile_html_is_active_raw_and_inert_sanitized(name):
    text = HOSTILE_HTML[name]
    assert active(text), f"{name}: the case should be active as submitted"
    clean, notes = gc.sanitize_html(text)
    assert not active(clean), f"{name}: {clean!r}"
    assert notes


def test_honest_html_keeps_tables_links_and_images():
    frame = ('<style scoped>.dataframe tbody tr th {vertical-align: top;}</style>'
             '<table border="1" class="dataframe"><thead><tr><th>lr</th></tr></thead>'
             '<tbody><tr><td>0.1</td></tr></tbody></table>'
             '<a href="https://example.org/x">ref</a> <img src="data:image/png;base64,iVBORw0KGgo=" width="20">')
    clean, _ = gc.sanitize_html(frame)
    for piece in ('<table border="1" class="dataframe">', "<td>0.1</td>", 'href="https://example.org/x"',
                  'src="data:image/png;base64,iVBORw0KGgo="', 'width="20"'):
        assert piece in clean, piece
    assert "vertical-align" not in clean  # the style block goes with its content


# -- whole notebooks -------------------------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def hostile_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python", "version": "3.11.4",
                                     "pygments_lexer": 'ipython3"><script>alert(1)</script>'},
                   "widgets": {"application/vnd.jupyter.widget-state+json": {"state": {"x": {"model": 1}}}},
                   "title": "</title><script>alert(1)</script>"}
    code = nbformat.v4.new_code_cell("display(HTML(x))", execution_count=1)
    code.metadata = {"tags": ['x" onmouseover="alert(1)', "ok-tag"], "widgets": {"state": 1},
                     "nbgrader": {"solution": True, "grade": False, "grade_id": "answer", "locked": False}}
    code.outputs = [
        nbformat.v4.new_output("display_data", data={
            "text/html": "<b>hi</b><script>alert(1)</script><img src=x onerror=alert(2)>",
            "application/javascript": "alert(3)",
            "text/plain": "<IPython.core.display.HTML object>"}),
        nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
            "application/vnd.bokehjs_exec.v0+json": "", "application/vnd.plotly.v1+json": {"data": []}}),
        nbformat.v4.new_output("display_data", data={"image/svg+xml": "<svg onload=alert(4)></svg>"}),
        nbformat.v4.new_output("display_data", data={"image/png": 'AAAA" onerror="alert(5)'}),
        nbformat.v4.new_output("display_data", data={"image/png": PNG},
                               metadata={"image/png": {"width": '1" onerror="alert(6)', "height": 10},
                                         "isolated": True, "trusted": True}),
        nbformat.v4.new_output("execute_result", data={"text/markdown": "[x](javascript:alert(7))",
                                                       "text/latex": "\\href{javascript:alert(8)}{x}"},
                               execution_count=1),
        nbformat.v4.new_output("stream", name='stdout"><script>alert(9)</script>', text="<script>printed</script>"),
        nbformat.v4.new_output("display_data", data={"application/json": {"a": "<script>"}}),
    ]
    md = nbformat.v4.new_markdown_cell(HOSTILE_MARKDOWN["img onerror"] + "\n\n**Answer**: $x^2$ " +
                                       HOSTILE_MARKDOWN["link entity"] + HOSTILE_MARKDOWN["comment hiding script"])
    md.attachments = {"a.png": {"image/png": PNG}, "b.svg": {"image/svg+xml": "<svg onload=alert(10)>"},
                      '"><script>': {"image/png": PNG}}
    raw = nbformat.v4.new_raw_cell("<script>alert(11)</script>")
    raw.metadata = {"format": "text/html"}
    nb.cells = [code, md, raw]
    return nb


def test_sanitize_notebook_removes_every_active_part_and_says_so():
    nb = hostile_notebook()
    notes = gc.sanitize_notebook(nb)
    nbformat.validate(nb)
    assert nb.metadata == {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                           "language_info": {"name": "python", "version": "3.11.4"}}
    code, md, raw = nb.cells
    assert nb.metadata.kernelspec.name == "python3" and code.metadata.nbgrader.grade_id == "answer"  # nbgrader style
    assert code.metadata == {"tags": ["ok-tag"], "nbgrader": {"solution": True, "grade": False,
                                                              "grade_id": "answer", "locked": False}}
    html_out, widget, svg, bad_png, png, result, stream, json_out = code.outputs
    assert html_out.data["text/html"] == "<b>hi</b><img src=\"x\">" and "application/javascript" not in html_out.data
    assert list(widget.data) == ["text/plain"] and "removed by the grader" in widget.data["text/plain"]
    assert list(svg.data) == ["text/plain"] and list(bad_png.data) == ["text/plain"]
    assert png.data == {"image/png": PNG} and png.metadata == {"image/png": {"height": 10}}
    assert list(result.data) == ["text/markdown"] and "javascript" not in result.data["text/markdown"].replace(
        "#blocked-javascript", "")
    assert stream.name == "stdout" and stream.text == "<script>printed</script>"  # streams render escaped
    assert json_out.data == {"text/plain": '{\n "a": "<script>"\n}'}
    assert set(md.attachments) == {"a.png"}
    assert raw.metadata == {"format": "text/plain"} and "<script" not in raw.source
    joined = "\n".join(notes)
    for expected in ("widgets", "application/javascript", "image/svg+xml", "text/latex", "unsafe tag",
                     "HTML tag(s) or MathJax command(s) neutralized", "unsafe link", "attachment 'b.svg'",
                     "not base64"):
        assert expected in joined, expected


def test_sanitize_notebook_leaves_an_honest_notebook_alone():
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=1, outputs=[
        nbformat.v4.new_output("execute_result", data={"text/plain": "2"}, execution_count=1),
        nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"},
                               metadata={"image/png": {"width": 10, "height": 10}}),
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: x\n")])
    cell.metadata = {"nbgrader": {"grade": True, "grade_id": "t1", "points": 1}, "tags": ["t"]}
    nb.cells = [cell, nbformat.v4.new_markdown_cell("**bold** and $x^2$")]
    before = copy.deepcopy(nb)
    assert gc.sanitize_notebook(nb) == []
    assert nb == before


def test_sanitize_notebook_rejects_what_is_not_a_notebook():
    with pytest.raises(ValueError, match="nbformat v4 notebook"):
        gc.sanitize_notebook({"worksheets": []})
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.from_dict({"cell_type": "heading", "source": "x", "metadata": {}})]
    with pytest.raises(ValueError, match="allowed: code, markdown, raw"):
        gc.sanitize_notebook(nb)
    with pytest.raises(ValueError, match="must be a str"):
        gc.sanitize_markdown(None)


# -- rendered as the feedback is rendered ------------------------------------------------------------

def _render(nb) -> str:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nb)
    return body


def _scripts(page: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>.*?</script\s*>", page, re.IGNORECASE | re.DOTALL)


@pytest.mark.filterwarnings("ignore::UserWarning")  # nbconvert's notes on the raw notebook's odd types
def test_rendered_feedback_of_a_sanitized_hostile_notebook_runs_nothing():
    empty = nbformat.v4.new_notebook()
    empty.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                      "language_info": {"name": "python", "version": "3.11.4"}}
    baseline = _render(empty)
    raw_page = _render(hostile_notebook())
    assert len(_scripts(raw_page)) > len(_scripts(baseline))  # rendered as submitted, scripts get through
    nb = hostile_notebook()
    gc.sanitize_notebook(nb)
    page = _render(nb)
    assert sorted(_scripts(page)) == sorted(_scripts(baseline))  # only the template's own scripts
    assert "javascript:" not in unescape(page).lower()
    assert sorted(active(page)) == sorted(active(baseline))  # no handler, no active tag of the submission
    assert len(active(raw_page)) > len(active(baseline))
    assert "Answer" in page and "$x^2$" in page


def test_the_course_notebooks_pass_through_unchanged():
    """What the instructor wrote (markdown with LaTeX, code, nbgrader metadata) is not touched."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    paths = sorted(root.glob("source/*/*.ipynb")) + sorted(root.glob("release/*/*.ipynb"))
    assert paths
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        before = copy.deepcopy(nb)
        assert gc.sanitize_notebook(nb) == [], path
        assert nb == before, path
