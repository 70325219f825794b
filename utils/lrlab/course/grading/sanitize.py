"""Sanitizing (trusted, in the grading process): a submitted notebook goes through nbgrader's own sanitizing
preprocessors plus two repairs of lrlab's, so a learner who edits or deletes a test gets the real test back, and
lrlab's content sanitizing, so no active content of a submission reaches the formgrader or the feedback.

:class:`RepairGradeMetadata` rebuilds the nbgrader metadata of known cells from the gradebook;
:class:`RestoreLockedCells` puts back deleted test and read-only cells; :func:`sanitize_chain` is the whole chain;
:class:`SanitizeContent` (last in the chain, and again after nbgrader's ``SaveAutoGrades``) removes active
content with :func:`~lrlab.course.grading.content.sanitize_notebook`; :func:`drop_active_files` removes side files
that a browser would run from the folder nbgrader copies into ``autograded/``, which the formgrader serves.
:func:`sanitize` runs the chain on one notebook and returns the reasons, in words, for every repair.
:func:`signature` says what execution depends on; :func:`collecting_logger` turns nbgrader's warnings into reasons.

Imports: :mod:`~lrlab.course.grading.content`, :mod:`~lrlab.course.grading.gradebook`,
:mod:`~lrlab.course.grading.feedback`, :mod:`~lrlab.course.grading.guard`, nbformat, nbgrader, traitlets.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import re
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from lrlab.course.grading.content import numbered_ids, sanitize_notebook
from lrlab.course.grading.feedback import BEGIN, END, hidden_regions
from lrlab.course.grading.gradebook import coursedir, gradebook_cells, source_notebook
from lrlab.course.grading.guard import RestoreWholeCells


def _expected_metadata(known: dict, grade_id: str) -> dict:
    meta = {"grade": known["grade"], "grade_id": grade_id, "locked": known["locked"], "schema_version": 3,
            "solution": known["solution"], "task": known["task"]}
    if known["grade"] or known["task"]:
        meta["points"] = known["points"]
    return meta


def release_source(source: str) -> str:
    """What a learner receives of a cell: the source without its hidden test region (as nbgrader releases it)."""
    lines = source.split("\n")
    for first, last in reversed(hidden_regions(source, BEGIN, END)):
        del lines[first - 1:last]
    return "\n".join(lines)


def _reasons(resources: dict) -> list[str]:
    return resources.setdefault("lrlab", {}).setdefault("reasons", [])


class RepairGradeMetadata(NbGraderPreprocessor):
    """Make every cell's nbgrader metadata agree with the gradebook before nbgrader sanitizes.

    nbgrader trusts the metadata it finds: a learner who flips ``grade`` to false, renames a test's
    ``grade_id`` or removes it makes ``nbgrader autograde`` skip the test or fail on the notebook.
    Here a cell whose ``grade_id`` the gradebook knows gets the gradebook's flags and points back,
    and a cell whose nbgrader metadata names no known cell becomes an ordinary cell (its code still
    runs). Honest notebooks are left untouched. Runs first in the sanitize chain.
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            known = gradebook_cells(gb, info["notebook"], info["assignment"])
        reasons = _reasons(resources)
        for index, cell in enumerate(nb.cells):
            meta = cell.get("metadata", {}).get("nbgrader")
            if meta is None:
                continue
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
            if isinstance(grade_id, str) and grade_id in known:
                expected = _expected_metadata(known[grade_id], grade_id)
                current = {k: meta.get(k, False if k == "task" else None) for k in expected}
                if isinstance(current.get("points"), int | float) and not isinstance(current["points"], bool):
                    current["points"] = float(current["points"])
                if current != expected:
                    checksum = meta.get("checksum")
                    cell.metadata["nbgrader"] = NotebookNode(expected)
                    if checksum is not None:
                        cell.metadata["nbgrader"]["checksum"] = checksum
                    reasons.append(f"the nbgrader metadata of cell '{grade_id}' was changed; "
                                   "restored from the gradebook")
                info_cell = known[grade_id]
                honest = (info_cell["source"], release_source(info_cell["source"]))
                if info_cell["locked"] and cell.source not in honest:
                    reasons.append(f"cell '{grade_id}' was edited; the original was restored")
            elif isinstance(meta, dict) and not any(meta.get(k) for k in ("grade", "solution", "locked", "task")):
                continue
            else:
                del cell.metadata["nbgrader"]
                name = f"'{grade_id}'" if isinstance(grade_id, str) else f"{index + 1} (no grade id)"
                reasons.append(f"cell {name} carries nbgrader metadata the gradebook does not know; "
                               "graded as an ordinary cell")
        return nb, resources


def _source_order(path: Path) -> list[str]:
    """grade ids in the order of a (trusted) notebook file, or [] when it cannot be read."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # a missing or unreadable source only costs the placement of restored cells
        return []
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if isinstance(c.get("metadata", {}).get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]]


class RestoreLockedCells(NbGraderPreprocessor):
    """Put back read-only and test cells that a learner deleted, at their place in the source.

    nbgrader (with its default ``add_missing_cells = False``) simply does not grade a deleted test;
    with ``add_missing_cells = True`` it adds it back commented out, which passes. Here the original
    cell comes back, runs and is scored like everyone else's. Answer cells are not restored: a
    deleted answer scores 0 on its tests. Runs right after nbgrader's ``OverwriteCells``.
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook
        from nbgrader.utils import compute_checksum

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            known = gradebook_cells(gb, info["notebook"], info["assignment"])
        present = {c.metadata["nbgrader"].get("grade_id") for c in nb.cells
                   if isinstance(c.get("metadata", {}).get("nbgrader"), dict)}
        order = _source_order(source_notebook(self.config, info["assignment"], info["notebook"]))
        reasons = _reasons(resources)
        for grade_id, cell_info in known.items():
            if grade_id in present or "cell_type" not in cell_info:
                continue
            if not cell_info["locked"]:
                reasons.append(f"answer cell '{grade_id}' was deleted; it scores 0")
                continue
            if cell_info["cell_type"] == "code":
                cell = nbformat.v4.new_code_cell(cell_info["source"])
            else:
                cell = nbformat.v4.new_markdown_cell(cell_info["source"])
            cell.metadata["deletable"] = False
            cell.metadata["editable"] = False
            cell.metadata["nbgrader"] = NotebookNode(_expected_metadata(cell_info, grade_id))
            cell.metadata["nbgrader"]["checksum"] = compute_checksum(cell)
            nb.cells.insert(self._position(nb, grade_id, order), cell)
            present.add(grade_id)
            kind = "test" if cell_info["grade"] else "read-only"
            reasons.append(f"{kind} cell '{grade_id}' was deleted; restored from the source and run")
        return nb, resources

    @staticmethod
    def _position(nb, grade_id: str, order: list[str]) -> int:
        if grade_id not in order:
            return len(nb.cells)
        before = order[: order.index(grade_id)]
        for index in range(len(nb.cells) - 1, -1, -1):
            meta = nb.cells[index].get("metadata", {}).get("nbgrader")
            if isinstance(meta, dict) and meta.get("grade_id") in before:
                return index + 1
        return 0


#: Notes of :func:`~lrlab.course.grading.content.sanitize_notebook` that become a reason in the report (a submission
#: that carried script, an unsafe link or an unsafe attachment); metadata and harmless markup are cleaned silently.
_REPORTED_NOTES = ("script/style element", "event-handler tag", "unsafe link", "attachment")


def sanitize_content(nb: NotebookNode) -> list[str]:
    """Remove every active content from ``nb`` (in place, see :mod:`~lrlab.course.grading.content`); return the
    notes worth a reason. Replacement cell ids are numbered, so sanitizing the same file twice gives the same
    notebook."""
    notes = sanitize_notebook(nb, new_id=numbered_ids())
    reported = [n for n in notes if any(key in n for key in _REPORTED_NOTES)]
    if not reported:
        return []
    more = f" (+{len(reported) - 1} more)" if len(reported) > 1 else ""
    return [f"active content removed from the submission: {reported[0]}{more}"]


class SanitizeContent(NbGraderPreprocessor):
    """Remove active content (scripts, active outputs, unsafe markdown, metadata, attachments) from a notebook.

    Last step of the sanitize chain (so the submitted copy nbgrader stores in ``autograded/`` is clean before
    it runs) and again right after ``SaveAutoGrades`` (so outputs produced while grading are clean too, once
    nbgrader has read its scores from them, as :class:`SanitizeOutputs`). Only the first reports reasons."""

    report = True

    def preprocess(self, nb, resources):
        notes = sanitize_content(nb)
        if self.report:
            reasons = _reasons(resources)
            reasons += [n for n in notes if n not in reasons]
        return nb, resources


class SanitizeOutputs(SanitizeContent):
    """:class:`SanitizeContent` after ``SaveAutoGrades``: cleans the outputs produced while grading, silently."""

    report = False


#: MIME types of side files a browser would render or run when the formgrader serves them (``autograded/`` is
#: served at the submission's URL): HTML, SVG, XML and its kin, scripts, PDF, Flash. Guessed from the file name,
#: as the server guesses them.
ACTIVE_FILE_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml", "text/xsl",
    "application/xslt+xml", "text/javascript", "application/javascript", "application/ecmascript",
    "text/ecmascript", "application/x-javascript", "application/pdf", "application/x-shockwave-flash",
    "application/vnd.mozilla.xul+xml", "application/rdf+xml", "application/mathml+xml",
})
_ACTIVE_SUFFIXES = frozenset({
    ".html", ".htm", ".shtml", ".xhtml", ".xht", ".svg", ".svgz", ".xml", ".xsl", ".xslt", ".js", ".mjs", ".cjs",
    ".pdf", ".swf", ".xul", ".rdf", ".mml", ".hta", ".htc", ".mht", ".mhtml",
})


def active_file(name: str) -> str | None:
    """The active type of a side file named ``name`` (e.g. ``'image/svg+xml'``), or None when it is passive."""
    lower = name.lower()
    guessed, encoding = mimetypes.guess_type(lower, strict=False)
    if guessed in ACTIVE_FILE_TYPES:
        return guessed
    suffixes = Path(lower).suffixes
    hit = next((s for s in suffixes if s in _ACTIVE_SUFFIXES), None)
    if hit is not None:
        return guessed if guessed in ACTIVE_FILE_TYPES else f"an active type ({hit})"
    return None


def drop_active_files(folder: Path) -> list[str]:
    """Delete the side files of active types (:func:`active_file`) under a staged submission ``folder`` (its
    notebooks stay); return one reason per deleted file. Call it after the kernel's working files were copied,
    so the learner's code still finds them, and before nbgrader copies the folder into ``autograded/``."""
    reasons = []
    for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(filenames):
            kind = active_file(name)
            if kind is None:
                continue
            path = Path(dirpath) / name
            path.unlink()
            rel = path.relative_to(folder)
            reasons.append(f"side file {rel} ({kind}) is not kept where the formgrader serves it")
    return reasons


def sanitize_chain(config) -> list[type]:
    """The preprocessors that sanitize a submission: nbgrader's (as configured for ``Autograde``)
    with :class:`RepairGradeMetadata` first, :class:`RestoreLockedCells` and
    :class:`~lrlab.course.grading.guard.RestoreWholeCells` after ``OverwriteCells`` and :class:`SanitizeContent`
    last."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import OverwriteCells
    from traitlets.utils.importstring import import_item

    configured = config.Autograde.get("sanitize_preprocessors") if "Autograde" in config else None
    chain = list(configured) if configured else list(Autograde.class_traits()["sanitize_preprocessors"].default())
    chain = [import_item(c) if isinstance(c, str) else c for c in chain]
    ours = (RepairGradeMetadata, RestoreLockedCells, RestoreWholeCells, SanitizeContent)
    chain = [c for c in chain if c not in ours]
    out: list[type] = [RepairGradeMetadata]
    for cls in chain:
        out.append(cls)
        if issubclass(cls, OverwriteCells):
            out += [RestoreLockedCells, RestoreWholeCells]
    if RestoreLockedCells not in out:
        out += [RestoreLockedCells, RestoreWholeCells]
    out.append(SanitizeContent)
    return out


class _Collect(logging.Handler):
    """Turns nbgrader's warnings about a submission into reasons a person can read."""

    PATTERNS = (
        (re.compile(r"Attribute 'points' for cell (\S+) has changed"),
         "the points of cell '{0}' were changed; restored"),
        (re.compile(r"Attribute 'locked' for cell (\S+) has changed"), "cell '{0}' was unlocked; restored"),
        (re.compile(r"Attribute 'cell_type' for cell (\S+) has changed"),
         "the type of cell '{0}' was changed; restored"),
        (re.compile(r"Cell with id '(\S+)' exists multiple times"),
         "cell '{0}' appears more than once; only its last copy is graded"),
    )

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.reasons: list[str] = []
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for pattern, text in self.PATTERNS:
            m = pattern.search(message)
            if m:
                reason = text.format(m.group(1))
                if reason not in self.reasons:
                    self.reasons.append(reason)
                return
        if record.levelno >= logging.ERROR:
            self.errors.append(message)


def collecting_logger(name: str) -> tuple[logging.Logger, _Collect]:
    """A private logger for nbgrader's converters and preprocessors, and the handler that collects what it logs:
    ``handler.reasons`` (nbgrader's warnings about a submission, in words) and ``handler.errors``."""
    logger = logging.getLogger(f"lrlab.course.grading.{name}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    handler = _Collect()
    logger.addHandler(handler)
    return logger, handler


def signature(nb: NotebookNode) -> str:
    """What execution depends on: the kernel and every cell's type, source, nbgrader metadata and tags."""
    cells = [(c.cell_type, c.source, c.get("metadata", {}).get("nbgrader"), c.get("metadata", {}).get("tags"))
             for c in nb.cells]
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    return json.dumps([kernel, cells], sort_keys=True, default=str)


def sanitize(config, path: Path, student: str, assignment: str, notebook: str) -> tuple[NotebookNode, list[str]]:
    """Run the sanitize chain (:func:`sanitize_chain`) on one submitted notebook, the way nbgrader's
    ``Autograde`` does before it executes, and return the notebook and the reasons it logged.

    Raises whatever nbgrader raises for a notebook it cannot grade (e.g. broken metadata)."""
    folders = coursedir(config)
    logger, collect = collecting_logger(f"{student}.{notebook}")
    resources = {
        "unique_key": notebook, "output_files_dir": f"{notebook}_files",
        "nbgrader": {"student": student, "assignment": assignment, "notebook": notebook,
                     "db_url": folders.db_url},
        "metadata": {"path": str(path.parent), "name": notebook},
    }
    with open(path, encoding="utf-8") as fh:
        nb = nbformat.read(fh, as_version=4)
    for cls in sanitize_chain(config):
        pre = cls(config=config, log=logger)
        nb, resources = pre(nb, resources)
    # nbgrader writes the sanitized notebook and reads it back before executing it
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    return nb, _reasons(resources) + collect.reasons
