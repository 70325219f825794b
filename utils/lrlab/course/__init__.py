"""lrlab.course: the instructor's and CI's tooling around the learner library ``lrlab``.

Modules: :mod:`~lrlab.course.cli` (the ``lrlab`` command: argument parsing only), :mod:`~lrlab.course.layout`
(where a course's folders and notebooks are), :mod:`~lrlab.course.release` (source/ -> release/),
:mod:`~lrlab.course.run` (notebooks executed headless), :mod:`~lrlab.course.validate` (source passes, release
fails as expected), :mod:`~lrlab.course.errors` (the one error family of the tooling) and the package
:mod:`lrlab.course.grading` (sandboxed autograding, one module per phase).

Imports: the tooling may import the learner library (``lrlab.*``); no module of the library imports the tooling.
This package file imports nothing, so that ``lrlab --help`` stays fast.
"""
