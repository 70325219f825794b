"""The course as nbgrader sees it: its configuration, its folders and its gradebook (the SQLite database of
assignments, cells, students and scores).

Only the trusted grading process reads or writes the gradebook, one student after another.

Imports: :mod:`lrlab.course.errors`; nbgrader and traitlets inside the functions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lrlab.course.errors import GradingError


def load_config(root: Path):
    """The course's nbgrader configuration (``root/nbgrader_config.py``) as a traitlets ``Config``."""
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    if not (root / "nbgrader_config.py").is_file():
        raise GradingError(f"{root} has no nbgrader_config.py; run grading from the course folder or pass --root")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    return config


def coursedir(config):
    """nbgrader's ``CourseDirectory`` of ``config``: the course's folders and its gradebook's ``db_url``."""
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(config=config)


def notebook_names(db_url: str, assignment: str) -> list[str]:
    """The notebooks of ``assignment`` that the gradebook knows ([] when it does not know the assignment)."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            return sorted(nb.name for nb in gb.find_assignment(assignment).notebooks)
        except MissingEntry:
            return []


def ensure_in_gradebook(config, assignment: str, log=None) -> list[str]:
    """Make sure the gradebook knows ``assignment`` (its cells, points, checksums) and return its notebooks.

    The gradebook (``gradebook.db``) is not under version control, so on a fresh clone it is empty;
    nbgrader's ``generate_assignment`` records an assignment in it. When the assignment is missing
    it is generated into a throwaway folder, so ``release/`` is not touched.
    """
    import tempfile

    from nbgrader.converters import GenerateAssignment
    from traitlets.config import Config

    folders = coursedir(config)
    names = notebook_names(folders.db_url, assignment)
    if names:
        return names
    source = Path(folders.format_path(folders.source_directory, ".", assignment))
    if not source.is_dir():
        raise GradingError(f"assignment {assignment!r} is neither in the gradebook nor in {source}")
    with tempfile.TemporaryDirectory(prefix="lrlab-release-") as tmp:
        cfg = Config(config)
        cfg.merge(Config({"CourseDirectory": {"release_directory": tmp, "assignment_id": assignment},
                          "GenerateAssignment": {"force": True, "create_assignment": True}}))
        converter = GenerateAssignment(coursedir=coursedir(cfg), config=cfg, **({"log": log} if log else {}))
        converter.start()
    names = notebook_names(folders.db_url, assignment)
    if not names:
        raise GradingError(f"nbgrader could not record assignment {assignment!r} in the gradebook")
    return names


def gradebook_cells(gb, notebook: str, assignment: str) -> dict[str, dict]:
    """What the gradebook knows about every cell of a notebook, by grade id."""
    nb = gb.find_notebook(notebook, assignment)
    cells: dict[str, dict] = {}
    for cell in nb.source_cells:
        cells[cell.name] = {"cell_type": cell.cell_type, "locked": bool(cell.locked), "source": cell.source,
                            "checksum": cell.checksum, "grade": False, "solution": False, "task": False}
    for cell in nb.grade_cells:
        cells.setdefault(cell.name, {}).update(grade=True, points=float(cell.max_score))
    for cell in nb.solution_cells:
        cells.setdefault(cell.name, {}).update(solution=True)
    for cell in nb.task_cells:
        cells.setdefault(cell.name, {}).update(task=True, points=float(cell.max_score))
    return cells


def source_notebook(config, assignment: str, notebook: str) -> Path:
    """The path of an instructor notebook in ``source/``."""
    folders = coursedir(config)
    return Path(folders.format_path(folders.source_directory, ".", assignment)) / f"{notebook}.ipynb"


def zero_submission(db_url: str, assignment: str, student: str) -> None:
    """Record a submission whose notebooks are all missing or unreadable: every autograded cell 0.

    nbgrader does the same for a missing notebook of a submission it grades, but refuses to grade a
    submission with no notebook at all; this gives that learner the same result."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="nbgrader.api")
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gb.db.commit()


def gradebook_score(db_url: str, assignment: str, student: str) -> tuple[float, float, bool]:
    """(score, max score, manual grading pending) of a student's submission; (0, max, False) when there is none."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return 0.0, float(gb.find_assignment(assignment).max_score), False
        return float(sub.score), float(sub.max_score), bool(sub.needs_manual_grade)


def flag_for_review(db_url: str, assignment: str, student: str, notes: list[str]) -> None:
    """Flag a student's graded submission in the gradebook (the formgrader shows the flag) and put ``notes`` (why:
    tampering found, code that reaches for the kernel's machinery) into the automatic comment of every answer
    cell, where the formgrader shows it next to the answer. Call it after nbgrader's ``Autograde``, which writes
    those comments. Does nothing when there is no such submission."""
    from nbgrader.api import Gradebook, MissingEntry

    if not notes:
        return
    text = "Grader: " + " | ".join(notes)
    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="nbgrader.api")
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            return
        for notebook in submission.notebooks:
            notebook.flagged = True
            for comment in notebook.comments:
                comment.auto_comment = f"{comment.auto_comment}\n{text}" if comment.auto_comment else text
        gb.db.commit()
