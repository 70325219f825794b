"""Scoring (trusted, one student after another): nbgrader's own ``Autograde`` converter scores each student, with
its execution step replaced by :class:`ReplayExecute`, which hands back the notebook executed in a box, and
:class:`~lrlab.course.grading.sanitize.SanitizeOutputs` right after ``SaveAutoGrades``, so the notebook stored in
``autograded/`` (what the formgrader and the feedback render) keeps no active output made while grading;
:func:`diagnose` reads a graded notebook for the grader's limits and for hidden tests that fail.

So every score is computed by nbgrader's code, and only this process writes to the gradebook.

Imports: the other phases of :mod:`lrlab.course.grading` (executor, sanitize, staging, gradebook, feedback,
sandbox), nbformat, nbgrader, traitlets.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor

from lrlab.course.grading import sandbox as sb
from lrlab.course.grading.executor import cell_label, execute_in_box
from lrlab.course.grading.feedback import failing_line, hidden_regions
from lrlab.course.grading.gradebook import coursedir
from lrlab.course.grading.sanitize import SanitizeOutputs, collecting_logger, sanitize_chain, signature
from lrlab.course.grading.staging import working_files


class ReplayExecute(NbGraderPreprocessor):
    """Stands in for nbgrader's ``Execute`` in ``Autograde``: hands back the notebook executed in a
    box, after checking that it was executed from exactly this sanitized notebook. If it was not
    (which would be a bug), the notebook is executed again, in a box, right here."""

    jobs: dict = {}
    box: sb.Sandbox | None = None
    wall_s: float = 600.0
    rerun: list = []

    def preprocess(self, nb, resources):
        import copy

        info = resources["nbgrader"]
        job = self.jobs.get((info["student"], info["notebook"]))
        if job is not None and job.executed is not None and signature(job.nb) == signature(nb):
            return copy.deepcopy(job.executed), resources
        self.log.warning("Executing %s/%s again: no matching run in the box", info["student"], info["notebook"])
        self.rerun.append((info["student"], info["notebook"]))
        tmp = Path(tempfile.mkdtemp(prefix="lrlab-rerun-"))
        try:
            files = tmp / "files"
            files.mkdir()
            working_files(self.config, info["assignment"], Path(resources["metadata"]["path"]), files)
            executed, problems, _ = execute_in_box(self.config, nb, box=self.box, files=files,
                                                   rundir=tmp / "r", wall_s=self.wall_s)
            if job is not None:
                job.problems = problems
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return executed, resources


def _autograde_config(config, assignment: str, student: str, staged_root: Path, replay: type):
    """The course config, changed so that nbgrader's Autograde grades one staged student with replay, and
    sanitizes the graded notebook once its scores are saved."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute as NbExecute
    from nbgrader.preprocessors import SaveAutoGrades
    from traitlets.config import Config
    from traitlets.utils.importstring import import_item

    configured = config.Autograde.get("autograde_preprocessors") if "Autograde" in config else None
    steps = list(configured) if configured else list(Autograde.class_traits()["autograde_preprocessors"].default())
    steps = [import_item(s) if isinstance(s, str) else s for s in steps]
    steps = [replay if isinstance(s, type) and issubclass(s, NbExecute) else s for s in steps]
    steps = [s for s in steps if s is not SanitizeOutputs]
    at = next((i + 1 for i, s in enumerate(steps) if isinstance(s, type) and issubclass(s, SaveAutoGrades)),
              len(steps))
    steps.insert(at, SanitizeOutputs)
    cfg = Config(config)
    cfg.merge(Config({
        "CourseDirectory": {"submitted_directory": str(staged_root), "assignment_id": assignment,
                            "student_id": student, "notebook_id": "*"},
        "Autograde": {"force": True, "create_student": True, "sanitize_preprocessors": sanitize_chain(config),
                      "autograde_preprocessors": steps},
    }))
    return cfg


def autograde_student(config, assignment: str, student: str, staged_root: Path, replay: type) -> list[str]:
    """Run nbgrader's own ``Autograde`` for one student (execution replayed); return its errors."""
    from nbgrader.converters import Autograde

    cfg = _autograde_config(config, assignment, student, staged_root, replay)
    logger, collect = collecting_logger(f"autograde.{student}")
    converter = Autograde(coursedir=coursedir(cfg), config=cfg, log=logger)
    try:
        with warnings.catch_warnings():
            # nbgrader's gradebook code triggers SQLAlchemy "not in session" warnings on every run
            warnings.filterwarnings("ignore", module="nbgrader.api")
            converter.start()
    except Exception as exc:  # nbgrader reports per-student failures by raising at the end
        errors = [e for e in collect.errors if not e.startswith(("There was an error", "Please see"))]
        return errors[-1:] or [str(exc)]
    return []


def diagnose(nb: NotebookNode, limits: sb.Limits) -> tuple[list[str], list[str]]:
    """Read a graded notebook: (reasons, hidden_failures).

    reasons: cells that hit a limit of the grader (per-cell time limit, memory), in words;
    hidden_failures: test cells whose visible tests pass but a hidden test fails (often a
    hard-coded answer), as grade ids.
    """
    reasons, hidden = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        names = {o.get("ename") for o in cell.get("outputs", []) if o.get("output_type") == "error"}
        label = cell_label(nb, index)
        if "CellTimeoutError" in names:
            reasons.append(f"{label} ran past the per-cell time limit and was interrupted")
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            text = f"{output.get('ename')}: {output.get('evalue')}"
            if output.get("ename") == "MemoryError" or "can't allocate memory" in text:
                gb = limits.memory_bytes / sb.GiB
                reasons.append(f"{label} ran out of memory (the sandbox allows {gb:g} GB per process)")
                break
        meta = cell.get("metadata", {}).get("nbgrader", {})
        regions = hidden_regions(cell.source)
        if meta.get("grade") and regions and names and not names & {"GraderStopped", "CellTimeoutError"}:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    line = failing_line(output.get("traceback", []), cell.get("execution_count"))
                    if line is not None and any(a <= line <= b for a, b in regions):
                        hidden.append(meta.get("grade_id", label))
                    break
    return reasons, hidden
