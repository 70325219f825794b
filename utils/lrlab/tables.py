"""Plain-text tables for the library's and the tooling's printed summaries (imports nothing from lrlab)."""

from collections.abc import Sequence

ALIGNMENTS = ("l", "r")


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    align: Sequence[str] | None = None,
    rule: bool = True,
) -> str:
    """A plain-text table (first column left-aligned, numbers right-aligned).

    Floats are shown with one decimal; format them yourself (pass strings) for anything else.
    Columns are separated by two spaces and trailing blanks are stripped.

    Keyword-only options:
        align: one ``"l"`` or ``"r"`` per column (a string such as ``"lrrl"`` works), applied to the
            header and every cell of that column. Default: headers left, cells that look like numbers
            right, everything else left.
        rule: the line of dashes under the header (default True).
    """
    cells = [[str(h) for h in headers]] + [[f"{c:.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    for i, r in enumerate(cells[1:], start=1):
        if len(r) != len(headers):
            raise ValueError(f"row {i} has {len(r)} cells but there are {len(headers)} headers")
    if align is not None:
        align = tuple(align)
        if len(align) != len(headers) or any(a not in ALIGNMENTS for a in align):
            raise ValueError(
                f"align must give one of {ALIGNMENTS} for each of the {len(headers)} columns, got {align!r}"
            )
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def right(n: int, i: int, c: str) -> bool:
        if align is not None:
            return align[i] == "r"
        return bool(n) and c.replace(".", "").isdigit()

    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if right(n, i, c) else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if n == 0 and rule:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
