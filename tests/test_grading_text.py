"""lrlab.course.grading.text: student-controlled strings cannot drive the terminal or a spreadsheet."""

from __future__ import annotations

import csv
import io

import pytest

from lrlab.course.grading.text import csv_cell, escape_terminal

HOSTILE = {
    "ansi colour": "\x1b[31mred\x1b[0m",
    "clear screen": "x\x1b[2J\x1b[H",
    "cursor up (rewrite earlier rows)": "ok\x1b[1A\x1b[2K10/10",
    "osc title": "\x1b]0;pwned\x07",
    "osc 8 hyperlink": "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "c1 csi": "\x9b31m",
    "carriage return overwrite": "alice 0/10\ralice 10/10",
    "backspace": "0/10\x08\x08\x08\x0810/10",
    "newline fakes a row": "a\nbob  10/10  graded",
    "bidi override": "evil\u202egpj.exe",
    "bidi isolate": "\u2066x\u2069",
    "zero width": "ali\u200bce",
    "bom": "\ufeffname",
    "nul and del": "a\x00b\x7f",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_escape_terminal_makes_every_control_visible(name):
    raw = HOSTILE[name]
    assert any(not ch.isprintable() or ch in "\u200b\ufeff" for ch in raw)  # the case is real
    out = escape_terminal(raw)
    assert out.isprintable() and "\\" in out
    assert all(ch.isprintable() and ch not in "\u200b\u202e\u2066\u2069\ufeff" for ch in out)


def test_escape_terminal_spells_the_escapes_and_keeps_plain_text():
    assert escape_terminal("\x1b[31mred") == "\\x1b[31mred"
    assert escape_terminal("a\tb\r\n") == "a\\x09b\\x0d\\x0a"
    assert escape_terminal("evil\u202egpj") == "evil\\u202egpj"
    assert escape_terminal("\x9b") == "\\x9b"
    plain = "Zoë Ünal 学生 10/10 ok_01 (a-b) \\ path"
    assert escape_terminal(plain) == plain
    with pytest.raises(ValueError, match="needs a str"):
        escape_terminal(None)


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-2+3", "@SUM(A1)", "=HYPERLINK(\"http://x\",\"y\")",
                                  "\t=1", "\r=1", "  =1", "=cmd|' /C calc'!A0"])
def test_csv_cell_neutralizes_formulas(cell):
    out = csv_cell(cell)
    assert out.startswith("'") and out.isprintable()
    row = next(csv.reader(io.StringIO(_write([out]))))
    assert row == [out] and not row[0].lstrip(" ").startswith(("=", "+", "-", "@"))


def test_csv_cell_keeps_numbers_and_plain_text():
    assert csv_cell(-3) == "-3" and csv_cell(2.5) == "2.5" and csv_cell(True) == "True"
    assert csv_cell("alice") == "alice" and csv_cell("a-b") == "a-b"
    assert csv_cell("x\x1b[2Jy") == "x\\x1b[2Jy"
    with pytest.raises(ValueError, match="str or a number"):
        csv_cell(None)


def _write(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return buf.getvalue()
