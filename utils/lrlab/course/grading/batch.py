"""One grading batch, phase after phase: :func:`grade` stages the submissions, sanitizes each notebook (and drops
side files a browser would run), executes them in boxes (``jobs`` at a time), scores and reports each student as
soon as their notebooks are done. Progress lines escape every student-controlled string
(:func:`~lrlab.course.grading.text.escape_terminal`).

Imports: every phase of :mod:`lrlab.course.grading` and :mod:`lrlab.course.layout`; nbformat.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import nbformat

from lrlab.course.grading import sandbox as sb
from lrlab.course.grading.executor import Job, kill_all_boxes, run_jobs
from lrlab.course.grading.gradebook import (
    coursedir,
    ensure_in_gradebook,
    flag_for_review,
    gradebook_score,
    load_config,
    zero_submission,
)
from lrlab.course.grading.reports import FeedbackWriter, GradeReport, StudentResult, write_csv
from lrlab.course.grading.sanitize import drop_active_files, sanitize
from lrlab.course.grading.scoring import ReplayExecute, autograde_student, diagnose
from lrlab.course.grading.staging import stage_submissions, working_files
from lrlab.course.grading.text import escape_terminal
from lrlab.course.layout import find_root


def default_jobs() -> int:
    """One job per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def grade(assignment: str, *, root: Path | None = None, submissions: Path | None = None, jobs: int | None = None,
          unsafe: bool = False, limits: sb.Limits | None = None, feedback: bool = True,
          csv_path: Path | None = None, progress=None) -> GradeReport:
    """Grade every submission of ``assignment``: sandboxed, in parallel, scored by nbgrader.

    Args:
        assignment: the assignment name (a folder of ``source/``).
        root: the course folder (holding ``nbgrader_config.py``); default: found from the current folder.
        submissions: where the submissions are (see :func:`stage_submissions`); default ``submitted/``.
        jobs: notebooks executed at the same time (default: the number of CPU cores).
        unsafe: run without a sandbox (only the resource limits apply). Without it, grading refuses
            to start where no sandbox can be made (:class:`lrlab.course.errors.SandboxUnavailable`).
        limits: resource limits per notebook (:class:`~lrlab.course.grading.sandbox.Limits`; ``wall_s`` bounds
            a notebook).
        feedback: also generate feedback HTML (``feedback/<student>/<assignment>/``).
        csv_path: where to write the grades CSV (default ``<root>/grades/<assignment>.csv``).
        progress: called with a line of text as students finish (e.g. ``print``); None for silence.

    Returns:
        A :class:`GradeReport`. Scores are in the gradebook (``db_url`` of ``nbgrader_config.py``).
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    if not isinstance(assignment, str) or not assignment or "/" in assignment or assignment.startswith("."):
        raise ValueError(f"assignment must be the name of a folder in source/, got {assignment!r}")
    if jobs is None:
        jobs = default_jobs()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    limits = limits if limits is not None else sb.Limits()
    if not isinstance(limits, sb.Limits):
        raise ValueError(f"limits must be a lrlab.course.grading.sandbox.Limits, got {type(limits).__name__}")
    root = Path(root if root is not None else find_root()).resolve()
    config = load_config(root)
    if not unsafe:
        sb.require_sandbox()
    say = progress or (lambda line: None)
    start = time.monotonic()
    notebooks = ensure_in_gradebook(config, assignment)
    folders = coursedir(config)
    db_url = folders.db_url

    with tempfile.TemporaryDirectory(prefix="lrlab-grade-") as tmp:
        workspace = Path(tmp)
        hidden = (root, Path.home().resolve(), workspace)
        seed = sb.matplotlib_cache_seed(workspace / "home")
        box = sb.Sandbox(limits=limits, hidden=hidden, unsafe=unsafe, home_from=seed)
        staged_root, subs, notes = stage_submissions(config, assignment, notebooks, submissions, workspace)
        results: dict[str, StudentResult] = {}
        student_jobs: dict[str, list[Job]] = {}
        all_jobs: dict[tuple[str, str], Job] = {}
        replay = type("BatchReplay", (ReplayExecute,), {
            "jobs": all_jobs, "box": box, "wall_s": limits.wall_s, "rerun": []})

        def finish(student: str) -> None:
            result = results[student]
            for job in student_jobs[student]:
                result.seconds += job.seconds
            broken = [job for job in student_jobs[student] if not job.started]
            if broken:  # the grader failed, not the learner: leave the gradebook as it was
                result.status = "error"
                result.reasons += [p for job in broken for p in job.problems]
                result.reasons.append("not scored: no kernel could be started for it (the gradebook is unchanged)")
                detail = result.reasons[-2] if len(result.reasons) > 1 else ""
                say(escape_terminal(f"{student}: not graded ({detail})"))
                return
            if student_jobs[student]:
                errors = autograde_student(config, assignment, student, staged_root, replay)
            else:  # no notebook of the submission can be graded
                zero_submission(db_url, assignment, student)
                errors = []
            for job in student_jobs[student]:
                result.reasons += [p for p in job.problems if p not in result.reasons]
                graded = Path(folders.format_path(folders.autograded_directory, student, assignment))
                graded = graded / f"{job.notebook}.ipynb"
                if graded.exists():
                    more, hidden = diagnose(nbformat.read(str(graded), as_version=4), limits)
                    result.reasons += [m for m in more if m not in result.reasons]
                    result.hidden_failures += hidden
            review = [r for r in result.reasons if r.startswith(("tampered with the grader", "flagged for manual"))]
            if review and not errors:
                flag_for_review(db_url, assignment, student, review)
            if errors:
                result.status = "error"
                result.reasons.append(f"nbgrader could not grade it: {errors[0]}")
            elif result.reasons:
                result.status = "problems"
            result.score, result.max_score, result.needs_manual = gradebook_score(db_url, assignment, student)
            if feedback and result.status != "error":
                try:
                    result.feedback = feedback_writer.write(student)
                except Exception as exc:  # feedback is a courtesy; the grade stands without it
                    result.reasons.append(f"feedback could not be generated ({type(exc).__name__}: {exc})")
            say(escape_terminal(f"{student}: {result.score:g}/{result.max_score:g} {result.status}"
                                + (f" ({result.reasons[0]})" if result.reasons else "")))

        feedback_writer = FeedbackWriter(config, assignment) if feedback else None

        # phase 1 (sanitize, this thread) feeds phase 2 (execute in boxes, `jobs` at a time), which
        # feeds phase 3 (score and feedback, this thread, one student at a time)
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lrlab-grade")
        futures = {}
        try:
            for number, sub in enumerate(subs):
                if sub.folder is None:
                    results[sub.student] = StudentResult(sub.student, "missing", reasons=list(sub.reasons))
                    continue
                result = results[sub.student] = StudentResult(sub.student, "graded", reasons=list(sub.reasons))
                files = workspace / f"f{number}"
                result.reasons += working_files(config, assignment, sub.folder, files)
                # the kernel has its copy; what stays is copied into autograded/, which the formgrader serves
                result.reasons += drop_active_files(sub.folder)
                student_jobs[sub.student] = []
                for k, name in enumerate(notebooks):
                    path = sub.folder / f"{name}.ipynb"
                    if not path.exists():
                        continue
                    try:
                        nb, reasons = sanitize(config, path, sub.student, assignment, name)
                    except Exception as exc:  # nbgrader refuses the notebook: grade it as missing
                        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        result.reasons.append(f"{name}.ipynb cannot be graded ({detail}); it scores 0")
                        path.unlink()
                        continue
                    result.reasons += [r for r in reasons if r not in result.reasons]
                    job = Job(sub.student, name, nb, files, workspace / f"r{number}-{k}")
                    student_jobs[sub.student].append(job)
                    all_jobs[job.key] = job
                futures[pool.submit(run_jobs, config, student_jobs[sub.student], box, limits.wall_s)] = sub.student
            for future in as_completed(futures):
                student = futures[future]
                try:
                    future.result()
                except Exception as exc:  # a bug in the grader must not take the batch down
                    results[student].reasons.append(
                        f"execution failed in the grader ({type(exc).__name__}: {exc})")
                finish(student)
        except BaseException:
            kill_all_boxes()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    report = GradeReport(assignment, [results[s] for s in sorted(results)], notes=notes, sandboxed=not unsafe,
                         seconds=time.monotonic() - start, reexecuted=list(replay.rerun) if student_jobs else [])
    report.csv_path = write_csv(report, Path(csv_path) if csv_path else root / "grades" / f"{assignment}.csv")
    return report
