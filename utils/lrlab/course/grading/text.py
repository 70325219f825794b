"""Student-controlled text made safe for a terminal and a spreadsheet.

Grade ids, file names, student ids and reasons come from submissions. Printed raw, an ANSI or OSC
escape sequence rewrites the instructor's terminal (hides rows, fakes scores, sets the window title,
writes a hyperlink), and a bidi override reorders what is shown. Written raw into a CSV, a cell that
starts with ``=``, ``+``, ``-`` or ``@`` is a formula to a spreadsheet. :func:`escape_terminal` makes
every such character visible as an escape; :func:`csv_cell` also neutralizes formulas.

Pure functions, no imports from the rest of the course.
"""

from __future__ import annotations

import unicodedata

#: Unicode characters that reorder or hide text (bidi embeddings/overrides/isolates, marks,
#: zero-width characters, the BOM): shown as ``\\u....``.
INVISIBLE = frozenset(
    "\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064"
    "\u2066\u2067\u2068\u2069\ufeff"
)
#: Characters that make a spreadsheet read a cell as a formula (OWASP's list, plus tab and CR).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_terminal(text) -> str:
    """``text`` with every control character, escape sequence and bidi/invisible character made visible.

    Control characters (all of C0, DEL, C1) become ``\\xNN``; the escape character of an ANSI
    or OSC sequence becomes ``\\x1b`` (so ``"\\x1b[31m"`` prints as the seven characters
    ``\\x1b[31m``); bidi overrides, zero-width characters and other format characters (category Cf)
    become ``\\uNNNN``; a backslash stays a backslash. Newlines and tabs are escaped too: a value
    always stays on its own line and column.
    """
    if not isinstance(text, str):
        raise ValueError(f"escape_terminal needs a str, got {type(text).__name__}")
    out = []
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            out.append(f"\\x{code:02x}")
        elif ch in INVISIBLE or unicodedata.category(ch) in ("Cf", "Cs", "Co", "Zl", "Zp"):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)


def csv_cell(value) -> str:
    """A CSV cell for ``value`` (str or number): escaped like :func:`escape_terminal`, and a text that
    starts with ``= + - @`` (or tab/CR, after any spaces) gets a leading ``'`` so no spreadsheet runs it as a formula.

    Numbers (int, float; not bool) are written as they are, negative ones included.
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if not isinstance(value, str):
        raise ValueError(f"csv_cell needs a str or a number, got {type(value).__name__}")
    if value.lstrip(" ").startswith(FORMULA_START):
        value = "'" + value
    return escape_terminal(value)
