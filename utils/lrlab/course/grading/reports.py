"""Reports: feedback HTML for learners (hidden tests removed), one :class:`StudentResult` per learner, the
:class:`GradeReport` of a batch (a table and a summary with a reason for every intervention), the grades CSV.

Student ids, file names, grade ids and reasons come from submissions: the table and the summary show them through
:func:`~lrlab.course.grading.text.escape_terminal` (no escape sequence reaches the terminal), the CSV through
:func:`~lrlab.course.grading.text.csv_cell` (no formula reaches a spreadsheet).

Imports: :mod:`~lrlab.course.grading.feedback`, :mod:`~lrlab.course.grading.gradebook`,
:mod:`~lrlab.course.grading.sanitize` (its log collector), :mod:`~lrlab.course.grading.text`; nbconvert, nbgrader
and traitlets inside the functions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lrlab.course.grading.feedback import HideHiddenTests
from lrlab.course.grading.gradebook import coursedir
from lrlab.course.grading.sanitize import collecting_logger
from lrlab.course.grading.text import csv_cell, escape_terminal


def feedback_config(config, assignment: str, student: str):
    """The course config for nbgrader's GenerateFeedback, with lrlab's HideHiddenTests guaranteed."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades
    from traitlets.config import Config
    from traitlets.utils.importstring import import_item

    configured = config.GenerateFeedback.get("preprocessors") if "GenerateFeedback" in config else None
    steps = list(configured) if configured else list(GenerateFeedback.class_traits()["preprocessors"].default())
    steps = [import_item(s) if isinstance(s, str) else s for s in steps]
    steps = [s for s in steps if not (isinstance(s, type) and issubclass(s, ClearHiddenTests | HideHiddenTests))]
    at = next((i + 1 for i, s in enumerate(steps) if isinstance(s, type) and issubclass(s, GetGrades)), 0)
    steps.insert(at, HideHiddenTests)
    cfg = Config(config)
    cfg.merge(Config({
        "CourseDirectory": {"assignment_id": assignment, "student_id": student, "notebook_id": "*"},
        "GenerateFeedback": {"force": True, "preprocessors": steps},
    }))
    return cfg


class FeedbackWriter:
    """nbgrader's GenerateFeedback for one student at a time, with hidden tests removed.

    One HTML exporter serves every student: nbgrader would build (and compile the templates of) a
    new one per run, which costs more than rendering a notebook."""

    def __init__(self, config, assignment: str) -> None:
        from nbconvert.writers import FilesWriter
        from nbgrader.converters import GenerateFeedback

        self.assignment = assignment
        self.config = feedback_config(config, assignment, "*")
        logger, self.collect = collecting_logger(f"feedback.{assignment}")

        class _Feedback(GenerateFeedback):
            exporter_cache = None

            def start(self) -> None:
                self.init_notebooks()
                self.writer = FilesWriter(parent=self, config=self.config)
                if self.exporter_cache is None:
                    self.exporter_cache = self.exporter_class(parent=self, config=self.config)
                    for pre in self.preprocessors:
                        self.exporter_cache.register_preprocessor(pre)
                self.exporter = self.exporter_cache
                cwd = os.getcwd()
                os.chdir(self.coursedir.root)
                try:
                    self.convert_notebooks()
                finally:
                    os.chdir(cwd)

        self.coursedir = coursedir(self.config)
        self.converter = _Feedback(coursedir=self.coursedir, config=self.config, log=logger)

    def write(self, student: str) -> list[Path]:
        """Generate (again) the feedback of ``student``; return the HTML files."""
        self.coursedir.student_id = student
        self.converter.start()
        folder = Path(self.coursedir.format_path(self.coursedir.feedback_directory, student, self.assignment))
        return sorted(folder.glob("*.html"))


@dataclass
class StudentResult:
    """How one learner's submission was graded.

    Attributes:
        student: the student id.
        status: ``graded``; ``problems`` (graded, but the grader had to step in: see reasons);
            ``missing`` (no submission); ``error`` (nbgrader could not grade it at all).
        score, max_score: total points and maximum from the gradebook (manual points included).
        needs_manual: some answers still wait for a person to grade them.
        reasons: every intervention of the grader, in words (an edited test restored, a kernel
            that died, a notebook that was not JSON, a cell past a limit, ...).
        hidden_failures: test cells whose visible tests pass and a hidden test fails (typical of
            answers hard-coded to the visible examples).
        seconds: time spent executing in the box.
        feedback: the feedback HTML files.
    """

    student: str
    status: str
    score: float = 0.0
    max_score: float = 0.0
    needs_manual: bool = False
    reasons: list[str] = field(default_factory=list)
    hidden_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    feedback: list[Path] = field(default_factory=list)


@dataclass
class GradeReport:
    """The outcome of :func:`grade`: one :class:`StudentResult` per learner, plus notes."""

    assignment: str
    results: list[StudentResult]
    notes: list[str] = field(default_factory=list)
    csv_path: Path | None = None
    sandboxed: bool = True
    seconds: float = 0.0
    reexecuted: list[tuple[str, str]] = field(default_factory=list)

    def by_student(self) -> dict[str, StudentResult]:
        return {r.student: r for r in self.results}

    def table(self) -> str:
        rows = [("student", "score", "status", "reasons")]
        for r in self.results:
            notes = r.reasons + [f"hidden tests fail in '{g}'" for g in r.hidden_failures]
            reason = escape_terminal(notes[0]) if notes else ""
            if len(notes) > 1:
                reason += f" (+{len(notes) - 1} more)"
            manual = " +manual" if r.needs_manual else ""
            rows.append((escape_terminal(r.student), f"{r.score:g}/{r.max_score:g}{manual}", r.status, reason))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 7)
        return "\n".join(line.rstrip() for line in lines)

    def summary(self) -> str:
        graded = [r for r in self.results if r.status in ("graded", "problems")]
        mean = sum(r.score for r in graded) / len(graded) if graded else 0.0
        top = max((r.max_score for r in graded), default=0.0)
        counts = {s: sum(r.status == s for r in self.results) for s in ("graded", "problems", "missing", "error")}
        lines = [
            f"{self.assignment}: {len(self.results)} students ({counts['graded']} graded, {counts['problems']} "
            f"graded with problems, {counts['missing']} missing, {counts['error']} not gradable)",
            f"mean score of graded submissions: {mean:.2f} / {top:g}",
            f"{'sandboxed' if self.sandboxed else 'NOT sandboxed (--unsafe)'}, {self.seconds:.1f} s",
        ]
        troubled = [r for r in self.results if r.reasons]
        if troubled:
            lines.append("problems:")
            for r in troubled:
                for reason in r.reasons:
                    lines.append(f"  {escape_terminal(r.student)}: {escape_terminal(reason)}")
        hidden = [r for r in self.results if r.hidden_failures]
        if hidden:
            lines.append("visible tests pass but hidden tests fail (hard-coded answers?):")
            for r in hidden:
                lines.append(f"  {escape_terminal(r.student)}: {escape_terminal(', '.join(r.hidden_failures))}")
        lines += [f"note: {escape_terminal(n)}" for n in self.notes]
        if self.csv_path:
            lines.append(f"grades written to {escape_terminal(str(self.csv_path))}")
        return "\n".join(lines)


def write_csv(report: GradeReport, path: Path) -> Path:
    """Write one row per student: id, assignment, score, max score, manual grading pending, status, reasons.

    Every text cell goes through :func:`~lrlab.course.grading.text.csv_cell` (escapes shown, formulas neutralized)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student_id", "assignment", "score", "max_score", "needs_manual_grade", "status", "reasons",
                         "hidden_test_failures"])
        for r in report.results:
            writer.writerow([csv_cell(r.student), csv_cell(report.assignment), f"{r.score:g}", f"{r.max_score:g}",
                             r.needs_manual, csv_cell(r.status), csv_cell("; ".join(r.reasons)),
                             csv_cell(" ".join(r.hidden_failures))])
    return path
