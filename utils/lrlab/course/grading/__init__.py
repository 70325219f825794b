"""lrlab.course.grading: autograding an instructor can trust: sandboxed, parallel, faithful to ``nbgrader autograde``.

How a batch is graded (``lrlab grade ASSIGNMENT``, :func:`lrlab.course.grading.batch.grade`), one module per phase:

0. :mod:`~lrlab.course.grading.staging`: the submissions (nbgrader's layout, flat files or an LMS zip) are copied,
   without trusting them, into a private folder; :mod:`~lrlab.course.grading.gradebook` makes sure nbgrader's
   gradebook knows the assignment.
1. :mod:`~lrlab.course.grading.sanitize` (trusted, in this process): each submitted notebook goes through
   nbgrader's own sanitizing preprocessors plus two repairs of lrlab's: nbgrader metadata of known cells is
   rebuilt from the gradebook, and deleted test / read-only cells are put back. A learner who edits or deletes a
   test therefore gets the real test back.
2. :mod:`~lrlab.course.grading.executor` (untrusted, in parallel): each sanitized notebook runs in a Jupyter
   kernel (:mod:`~lrlab.course.grading.kernel`) started in a :mod:`~lrlab.course.grading.sandbox` box (no network,
   no course files, no grading tools, read-only environment, resource limits). The notebook client that talks to
   the kernel stays outside the box, so the submission can only produce cell outputs; it can never touch the
   notebook it is graded from, the gradebook, or the grading process. A kernel that dies, hangs or floods output
   loses the cells it did not finish. :mod:`~lrlab.course.grading.guard` checks the kernel's machinery before and
   after every test cell: a submission that tampered with it scores 0 from there on and is flagged.
3. :mod:`~lrlab.course.grading.scoring` (trusted, one student after another): nbgrader's own ``Autograde``
   converter runs as usual, except that its execution step replays the outputs of step 2 (checked cell by cell
   against a fresh sanitize of the same file). So every score is computed by nbgrader's code, and only this
   process writes to the gradebook (SQLite does not like concurrent writers).
4. :mod:`~lrlab.course.grading.reports`: feedback HTML (hidden tests removed by
   :mod:`~lrlab.course.grading.feedback`), a grades CSV, and a table with a reason for every lost point that the
   grader, not the learner's answer, caused.

:mod:`~lrlab.course.grading.batch` runs the phases for a whole batch. ``grade``, ``GradeReport`` and
``StudentResult`` can be imported from this package; they are loaded on first use, so that importing one phase
(e.g. the feedback preprocessor nbgrader loads) does not load every other.

Imports: the phases import :mod:`lrlab.course.errors`, :mod:`lrlab.course.layout` and each other along the order
above (never backwards into :mod:`~lrlab.course.grading.batch`); the learner library is never imported here, and
the library never imports this package.
"""

__all__ = ["GradeReport", "StudentResult", "default_jobs", "grade"]


def __getattr__(name: str):
    if name in ("grade", "default_jobs"):
        from lrlab.course.grading import batch

        return getattr(batch, name)
    if name in ("GradeReport", "StudentResult"):
        from lrlab.course.grading import reports

        return getattr(reports, name)
    raise AttributeError(f"module 'lrlab.course.grading' has no attribute {name!r}")
