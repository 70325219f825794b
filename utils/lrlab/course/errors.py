"""The tooling's one error family: problems the user of ``lrlab`` can fix, printed without a traceback.

The command line catches :class:`CourseError` (and so every subclass) once, prints ``error: ...`` and exits 2.
Anything else (``ValueError``, ``TypeError``, ...) is a bug of the caller or of the tooling and keeps its traceback.

Imports: the standard library only.
"""

from __future__ import annotations


class CourseError(Exception):
    """A problem the user of the command line can fix (no course here, an unknown assignment, ...)."""


class GradingError(CourseError):
    """A problem of a grading request the instructor can fix (bad submissions, missing course files)."""


class SandboxUnavailable(CourseError):
    """No sandbox can be made on this machine; the message says why and what to do."""
