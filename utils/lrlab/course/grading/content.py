"""Sanitizing a submission's content: no active content reaches an instructor or a learner.

A submitted notebook is rendered as HTML in two places: nbgrader's formgrader (where the instructor
grades written answers) and the feedback files (rendered with nbconvert's HTML exporter). Anything
active in it (a script in an HTML output, ``<img onerror>`` in a markdown cell, a ``javascript:``
link, a widget view, an output whose metadata breaks out of an attribute) would run with the
instructor's Jupyter session. :func:`sanitize_notebook` removes it, in place, and says what it removed:

* **outputs** keep only an allowlist of MIME types: ``text/plain``, ``image/png`` and ``image/jpeg``
  (strict base64 only), ``text/html`` cleaned by bleach with an explicit allowlist, ``text/markdown``
  cleaned like a markdown cell, ``application/json`` turned into text. Everything else
  (JavaScript, widget/Bokeh/Plotly views, SVG, LaTeX, PDF, ...) is dropped, with a note in the
  output. Output metadata keeps only integer image sizes (no ``isolated``, no ``filenames``).
  Streams keep only the names ``stdout``/``stderr``; error outputs are text and stay.
* **markdown cells** (the written answers) keep their text, lists, emphasis, code, tables and LaTeX.
  Raw HTML is neutralized except a few attribute-less formatting tags (``<b>``, ``<br>``, ``<sub>``,
  ...): the ``<`` that opens any other tag, comment or declaration gets a zero-width space after it,
  so it still reads as ``<`` but no renderer (mistune, marked, a browser) can take it for a tag.
  Links whose scheme is ``javascript:``, ``vbscript:``, ``livescript:`` or ``data:`` (other than a
  PNG/JPEG/GIF/WebP image), however spelled (case, entities, control characters, backslash
  escapes), are broken. MathJax commands that load extensions or set styles, classes or ids
  (``\\require``, ``\\style``, ``\\class``, ``\\cssId``, ``\\unicode``, ``\\bbox``) get a zero-width space
  after their backslash and no longer run.
* **raw cells** become plain text (``format: text/plain``; the HTML exporter does not render them)
  and their source is neutralized like markdown.
* **metadata**: notebook metadata keeps only ``kernelspec`` and ``language_info`` with plain string
  values; cell metadata keeps only the fields nbgrader and Jupyter need (``nbgrader``, ``tags``
  made of safe characters, ``deletable``, ``editable``, ``collapsed``, ``scrolled``, boolean
  ``jupyter`` flags); widget state (``metadata.widgets``) and everything else goes. Cell ids that
  could break out of an attribute are replaced.
* **attachments** keep only PNG/JPEG/GIF images in strict base64 under safe names.

This module is pure (no I/O); it only reads and changes the notebook it is given. It imports bleach
and nbformat, nothing of ``lrlab``.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import uuid
from collections.abc import Callable

import bleach
from nbformat.notebooknode import NotebookNode, from_dict

#: MIME types an output may keep (HTML and markdown after cleaning, JSON as text).
ALLOWED_MIME = ("text/plain", "image/png", "image/jpeg", "text/html", "text/markdown", "application/json")
#: Image types allowed in ``data:`` URLs (of ``<img>``) and in markdown attachments.
SAFE_IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

#: HTML tags an HTML output may keep (no script, style, forms, frames, objects, SVG, MathML, meta, base).
HTML_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "div", "dl", "dt",
    "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
    "samp", "small", "span", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u",
    "ul", "var",
})
#: Attributes per tag (no ``style``, no ``on*``, no ``id``/``name`` that could clobber the page's own).
HTML_ATTRIBUTES = {
    "a": ["href", "title"],
    "abbr": ["title"],
    "img": ["src", "alt", "title", "width", "height"],
    "table": ["class", "border"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align"],
    "col": ["span"],
    "colgroup": ["span"],
}
HTML_PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
#: Tags a markdown cell may keep, only without attributes (``<b>``, ``</b>``, ``<br/>``).
MARKDOWN_TAGS = frozenset({
    "b", "i", "em", "strong", "u", "s", "del", "ins", "sub", "sup", "br", "hr", "p", "code", "pre", "kbd",
    "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "blockquote", "h1", "h2", "h3", "h4", "h5",
    "h6", "small", "mark", "dl", "dt", "dd",
})
#: Cell metadata fields kept (the rest, e.g. ``widgets``, ``slideshow``, editor state, is dropped).
CELL_METADATA = ("nbgrader", "tags", "deletable", "editable", "collapsed", "scrolled", "jupyter")
NOTEBOOK_METADATA = ("kernelspec", "language_info")

ZWSP = "\u200b"
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_.+#/-]{0,100}$")
_DISPLAY_NAME = re.compile(r"^[A-Za-z0-9 _.+()-]{1,100}$")
_SAFE_TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CELL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ATTACHMENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]*={0,2}\s*$")
_STYLE_OR_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_SAFE_DATA_IMAGE = re.compile(r"^data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*$", re.IGNORECASE)


# -- URL schemes, however spelled --------------------------------------------------------------------

# What may sit between two characters of a scheme and still be dropped by an HTML/URL parser or a
# markdown renderer: whitespace and control characters, their entities, backslash escapes.
_GAP = r"(?:[\x00-\x20\\]|&(?:tab|newline|nbsp);|&#0*(?:9|10|13|32);?|&#x0*(?:9|a|d|20);?)*"


def _char(c: str) -> str:
    """A regex for one character of a scheme written literally or as a numeric entity."""
    alts = [re.escape(c)]
    for code in {ord(c), ord(c.upper()), ord(c.lower())}:
        alts += [f"&#0*{code};?", f"&#x0*{code:x};?"]
    if c == ":":
        alts.append("&colon;")
    return "(?:" + "|".join(alts) + ")"


def _scheme_pattern(word: str) -> str:
    return _GAP.join(_char(c) for c in word + ":")


_DANGEROUS_SCHEME = re.compile(
    "|".join(f"(?P<s{i}>{_scheme_pattern(w)})" for i, w in enumerate(("javascript", "vbscript", "livescript")))
    + f"|(?P<data>{_scheme_pattern('data')}{_GAP}(?!image/(?:png|jpe?g|gif|webp)[;,])[A-Za-z0-9.+-]*/)",
    re.IGNORECASE,
)


def block_dangerous_urls(text: str) -> tuple[str, int]:
    """``text`` with every ``javascript:``/``vbscript:``/``livescript:`` scheme, and every ``data:`` URL
    that is not a PNG/JPEG/GIF/WebP image, broken (however it is spelled); and how many there were.

    The scheme becomes ``#blocked-<name>``: the link still reads, and goes nowhere."""

    def repl(m: re.Match) -> str:
        name = next(k for k, v in m.groupdict().items() if v is not None)
        return "#blocked-data" if name == "data" else "#blocked-" + ("javascript", "vbscript", "livescript")[
            int(name[1:])]

    return _DANGEROUS_SCHEME.subn(repl, text)


# -- markdown ------------------------------------------------------------------------------------

#: MathJax commands that load code or set styles, classes or ids in the page (kept readable, made inert).
_MATHJAX_ACTIVE = re.compile(r"\\(require|style|class|cssId|unicode|bbox|html|data)(?![A-Za-z])")
_MARKUP_OPEN = re.compile(r"<(?=[A-Za-z/!?])")
_ALLOWED_MD_TAG = re.compile(r"</?([A-Za-z][A-Za-z0-9]*)\s*/?>")
#: A tag that would run something: script, frames, objects, SVG/MathML, forms, meta/base/link, any ``on*=`` handler.
_ACTIVE_TAG = re.compile(r"<\s*(?:(?:script|iframe|frame|frameset|object|embed|applet|svg|math|form|meta|base|link|"
                         r"style|template)\b|[A-Za-z][^>]*?[\s/\"']on[A-Za-z]+\s*=)", re.IGNORECASE)


def sanitize_markdown(text: str) -> tuple[str, list[str]]:
    """Neutralize raw HTML and dangerous links in markdown ``text``; return (text, notes).

    Ordinary markdown (emphasis, lists, code, tables, LaTeX, ``a < b``) is left as it is. A ``<`` that
    opens a tag, comment, declaration or autolink is kept only for an attribute-less tag of
    :data:`MARKDOWN_TAGS`; any other gets a zero-width space after it, so it reads the same and
    is no longer markup anywhere.
    """
    if not isinstance(text, str):
        raise ValueError(f"markdown must be a str, got {type(text).__name__}")
    notes: list[str] = []
    out: list[str] = []
    pos = 0
    neutralized = active = 0
    for m in _MARKUP_OPEN.finditer(text):
        start = m.start()
        out.append(text[pos:start])
        tag = _ALLOWED_MD_TAG.match(text, start)
        if tag and tag.group(1).lower() in MARKDOWN_TAGS:
            out.append("<")
        else:
            out.append("<" + ZWSP)
            neutralized += 1
            active += bool(_ACTIVE_TAG.match(text, start))
        pos = start + 1
    out.append(text[pos:])
    result, blocked = block_dangerous_urls("".join(out))
    result, tex = _MATHJAX_ACTIVE.subn(lambda m: "\\" + ZWSP + m.group(1), result)
    neutralized += tex
    if neutralized:
        notes.append(f"{neutralized} HTML tag(s) or MathJax command(s) neutralized")
    if active:
        notes.append(f"{active} of the neutralized tags were script, frame, object or event-handler tags")
    if blocked:
        notes.append(f"{blocked} unsafe link(s) broken")
    return result, notes


# -- HTML ----------------------------------------------------------------------------------------

def _allow_attribute(tag: str, name: str, value: str) -> bool:
    if name not in HTML_ATTRIBUTES.get(tag, ()):
        return False
    normalized = re.sub(r"[\x00-\x20]", "", html.unescape(value)).lower()
    if name in ("href", "src"):
        if normalized.startswith("data:"):
            return tag == "img" and bool(_SAFE_DATA_IMAGE.match(normalized))
        return not block_dangerous_urls(normalized)[1]
    if name in ("width", "height", "colspan", "rowspan", "span", "border"):
        return normalized.isdigit()
    if name == "class":
        return bool(re.fullmatch(r"[a-z0-9 _-]{0,64}", normalized))
    return True


_CLEANER = bleach.Cleaner(tags=HTML_TAGS, attributes=_allow_attribute, protocols=HTML_PROTOCOLS, strip=True,
                          strip_comments=True)


def sanitize_html(text: str) -> tuple[str, list[str]]:
    """Clean an HTML fragment with bleach's allowlist (:data:`HTML_TAGS`, :data:`HTML_ATTRIBUTES`,
    :data:`HTML_PROTOCOLS`); return (html, notes). Script and style elements are removed with their
    content; other disallowed tags are removed and their text kept (escaped)."""
    if not isinstance(text, str):
        raise ValueError(f"html must be a str, got {type(text).__name__}")
    without, removed = _STYLE_OR_SCRIPT.subn("", text)
    cleaned = _CLEANER.clean(without)
    notes = []
    if removed:
        notes.append(f"{removed} script/style element(s) removed")
    if cleaned != without:
        notes.append("HTML cleaned to the allowed tags and attributes")
    return cleaned, notes


# -- outputs -------------------------------------------------------------------------------------

def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value if isinstance(value, str) else json.dumps(value)


def _strict_base64(value) -> bool:
    text = _text(value)
    if not isinstance(text, str) or not _BASE64.match(text):
        return False
    try:
        base64.b64decode(re.sub(r"\s", "", text), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _clean_output_metadata(metadata, kept: list[str]) -> dict:
    out: dict = {}
    if not isinstance(metadata, dict):
        return out
    for mime in kept:
        if mime.startswith("image/") and isinstance(metadata.get(mime), dict):
            size = {k: v for k, v in metadata[mime].items()
                    if k in ("width", "height") and isinstance(v, int) and not isinstance(v, bool) and v > 0}
            if size:
                out[mime] = size
    return out


def sanitize_output(output: NotebookNode, where: str = "output") -> tuple[NotebookNode, list[str]]:
    """One output, sanitized (a new node); and notes naming what was removed."""
    kind = output.get("output_type")
    notes: list[str] = []
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return from_dict({"output_type": "stream", "name": name, "text": _text(output.get("text", ""))}), notes
    if kind == "error":
        return from_dict({"output_type": "error", "ename": str(output.get("ename", "")),
                          "evalue": str(output.get("evalue", "")),
                          "traceback": [str(line) for line in output.get("traceback", [])]}), notes
    if kind not in ("display_data", "execute_result"):
        notes.append(f"{where}: output of unknown type {str(kind)[:40]!r} removed")
        return from_dict({"output_type": "stream", "name": "stdout",
                          "text": "[output removed by the grader: unknown output type]\n"}), notes
    data = output.get("data", {}) if isinstance(output.get("data"), dict) else {}
    clean: dict = {}
    dropped = sorted(m for m in data if m not in ALLOWED_MIME)
    for mime in ALLOWED_MIME:
        if mime not in data:
            continue
        value = data[mime]
        if mime in ("image/png", "image/jpeg"):
            if _strict_base64(value):
                clean[mime] = re.sub(r"\s", "", _text(value))
            else:
                dropped.append(mime + " (not base64)")
        elif mime == "text/html":
            cleaned, more = sanitize_html(_text(value))
            clean[mime] = cleaned
            notes += [f"{where}: {n}" for n in more]
        elif mime == "text/markdown":
            cleaned, more = sanitize_markdown(_text(value))
            clean[mime] = cleaned
            notes += [f"{where}: {n}" for n in more]
        elif mime == "application/json":
            if "text/plain" not in data:
                clean["text/plain"] = json.dumps(value, indent=1)[:100_000]
        else:
            clean[mime] = _text(value)
    if dropped:
        notes.append(f"{where}: removed {', '.join(d[:80] for d in dropped)}")
        if not clean:
            clean["text/plain"] = (f"[output removed by the grader: {', '.join(d[:80] for d in dropped)} "
                                   "is not shown for safety]")
    node = {"output_type": kind, "data": clean, "metadata": _clean_output_metadata(output.get("metadata"), list(clean))}
    if kind == "execute_result":
        count = output.get("execution_count")
        node["execution_count"] = count if isinstance(count, int) and not isinstance(count, bool) else None
    return from_dict(node), notes


# -- metadata ------------------------------------------------------------------------------------

def _plain_strings(value, keys: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        return {}
    out = {}
    for key in keys:
        item = value.get(key)
        if isinstance(item, str) and (_SAFE_TOKEN.match(item) or key == "display_name" and _DISPLAY_NAME.match(item)):
            out[key] = item
        elif key == "codemirror_mode" and isinstance(item, dict):
            sub = {k: v for k, v in item.items() if k in ("name", "version")
                   and (isinstance(v, int) and not isinstance(v, bool) or isinstance(v, str) and _SAFE_TOKEN.match(v))}
            if sub:
                out[key] = sub
    return out


def sanitize_notebook_metadata(metadata) -> tuple[dict, list[str]]:
    """Notebook metadata reduced to a ``kernelspec`` and ``language_info`` of plain strings."""
    if not isinstance(metadata, dict):
        return {}, ["notebook metadata was not a mapping; removed"]
    out = {}
    ks = _plain_strings(metadata.get("kernelspec"), ("name", "display_name", "language"))
    if ks:
        out["kernelspec"] = ks
    li = _plain_strings(metadata.get("language_info"), ("name", "version", "mimetype", "file_extension",
                                                          "pygments_lexer", "nbconvert_exporter", "codemirror_mode"))
    if li:
        out["language_info"] = li
    removed = sorted(k for k in metadata if k not in NOTEBOOK_METADATA)
    notes = [f"notebook metadata removed: {', '.join(str(k)[:40] for k in removed)}"] if removed else []
    if out.get("kernelspec") != metadata.get("kernelspec") or out.get("language_info") != metadata.get("language_info"):
        if "kernelspec" in metadata or "language_info" in metadata:
            notes.append("notebook kernelspec/language_info reduced to plain values")
    return out, notes


def sanitize_cell_metadata(metadata, where: str = "cell") -> tuple[dict, list[str]]:
    """Cell metadata reduced to :data:`CELL_METADATA` (``tags`` of safe characters, boolean flags)."""
    if not isinstance(metadata, dict):
        return {}, [f"{where}: metadata was not a mapping; removed"]
    out: dict = {}
    notes = []
    for key in CELL_METADATA:
        if key not in metadata:
            continue
        value = metadata[key]
        if key == "nbgrader":
            if isinstance(value, dict):
                out[key] = value
        elif key == "tags":
            if isinstance(value, list):
                tags = [t for t in value if isinstance(t, str) and _SAFE_TAG.match(t)]
                if len(tags) != len(value):
                    notes.append(f"{where}: unsafe tag(s) removed")
                out[key] = tags
        elif key == "jupyter":
            if isinstance(value, dict):
                flags = {k: v for k, v in value.items() if k in ("source_hidden", "outputs_hidden")
                         and isinstance(v, bool)}
                if flags:
                    out[key] = flags
        elif isinstance(value, bool) or (key == "scrolled" and value == "auto"):
            out[key] = value
    removed = sorted(k for k in metadata if k not in CELL_METADATA)
    if removed:
        notes.append(f"{where}: metadata removed: {', '.join(str(k)[:40] for k in removed)}")
    return out, notes


def _sanitize_attachments(attachments, where: str) -> tuple[dict, list[str]]:
    if not isinstance(attachments, dict):
        return {}, [f"{where}: attachments were not a mapping; removed"]
    out, notes = {}, []
    for name, bundle in attachments.items():
        if not isinstance(name, str) or not _ATTACHMENT_NAME.match(name) or not isinstance(bundle, dict):
            notes.append(f"{where}: attachment {str(name)[:40]!r} removed (unsafe name)")
            continue
        kept = {m: re.sub(r"\s", "", _text(v)) for m, v in bundle.items()
                if m in ("image/png", "image/jpeg", "image/gif") and _strict_base64(v)}
        if len(kept) != len(bundle):
            notes.append(f"{where}: attachment {name!r}: removed "
                         f"{', '.join(sorted(str(m)[:40] for m in bundle if m not in kept))}")
        if kept:
            out[name] = kept
    return out, notes


_ATTACHMENT_REF = re.compile(r"attachment:([^\s)\"'<>]*)")
#: Where a reference to a missing attachment points instead (nbconvert refuses to render a notebook whose markdown
#: names an attachment it lacks, so the formgrader could not show the submission at all).
MISSING_ATTACHMENT = "#attachment-removed"


def _drop_missing_attachments(source: str, attachments) -> tuple[str, list[str]]:
    missing: list[str] = []

    def swap(match: re.Match) -> str:
        if match.group(1) in attachments:
            return match.group(0)
        missing.append(match.group(1)[:40])
        return MISSING_ATTACHMENT

    source = _ATTACHMENT_REF.sub(swap, source)
    return source, [f"reference to missing attachment {name!r} removed" for name in dict.fromkeys(missing)]


# -- the notebook ---------------------------------------------------------------------------------

def _label(cell, index: int) -> str:
    meta = cell.get("metadata", {})
    grade_id = meta.get("nbgrader", {}).get("grade_id") if isinstance(meta, dict) else None
    if isinstance(grade_id, str) and _SAFE_TAG.match(grade_id):
        return f"cell '{grade_id}'"
    return f"cell {index + 1}"


def numbered_ids(prefix: str = "lrlab-cell-") -> Callable[[], str]:
    """A ``new_id`` for :func:`sanitize_notebook` that numbers replacement ids (the same file gives the same ids)."""
    count = iter(range(1, 10**9))
    return lambda: f"{prefix}{next(count)}"


def sanitize_notebook(nb: NotebookNode, *, new_id: Callable[[], str] | None = None) -> list[str]:
    """Remove every active content from ``nb`` (in place); return human-readable notes of what went.

    Call it on every notebook of a submission before it is stored anywhere the formgrader or the
    feedback renders it (the submitted copy the formgrader shows, and the autograded notebook the
    feedback is made from). An honest notebook comes out unchanged apart from metadata no grader
    needs. ``new_id`` makes replacement cell ids (default: random).
    """
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("sanitize_notebook needs an nbformat v4 notebook (a mapping with a 'cells' list)")
    new_id = new_id or (lambda: uuid.uuid4().hex[:8])
    notes: list[str] = []
    metadata, more = sanitize_notebook_metadata(nb.get("metadata", {}))
    nb["metadata"] = from_dict(metadata)  # attribute access (nb.metadata.kernelspec) keeps working
    notes += more
    for index, cell in enumerate(nb["cells"]):
        where = _label(cell, index)
        kind = cell.get("cell_type")
        if "id" in cell and not (isinstance(cell["id"], str) and _CELL_ID.match(cell["id"])):
            cell["id"] = new_id()
            notes.append(f"{where}: unsafe cell id replaced")
        metadata, more = sanitize_cell_metadata(cell.get("metadata", {}), where)
        cell["metadata"] = from_dict(metadata)
        notes += more
        source = _text(cell.get("source", ""))
        if kind == "code":
            cell["source"] = source
            outputs = []
            for output in cell.get("outputs", []) or []:
                if not isinstance(output, dict):
                    notes.append(f"{where}: malformed output removed")
                    continue
                clean, more = sanitize_output(output, where)
                outputs.append(clean)
                notes += more
            cell["outputs"] = outputs
            if "attachments" in cell:
                del cell["attachments"]
                notes.append(f"{where}: attachments of a code cell removed")
        elif kind in ("markdown", "raw"):
            cell["source"], more = sanitize_markdown(source)
            notes += [f"{where}: {n}" for n in more]
            if kind == "raw":
                cell["metadata"]["format"] = "text/plain"
            if "attachments" in cell:
                attachments, more = _sanitize_attachments(cell["attachments"], where)
                cell["attachments"] = from_dict(attachments)
                notes += more
                if not cell["attachments"]:
                    del cell["attachments"]
            cell["source"], more = _drop_missing_attachments(cell["source"], cell.get("attachments", {}))
            notes += [f"{where}: {n}" for n in more]
        else:
            raise ValueError(f"{where} has cell_type {str(kind)[:40]!r}; allowed: code, markdown, raw")
    return notes
