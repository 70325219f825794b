"""``python -m lrlab`` is the same as the ``lrlab`` command (:func:`lrlab.course.cli.main`).

This file belongs to the tooling: it is the one file outside ``lrlab/course`` that imports ``lrlab.course``, and
no module of the library imports it.
"""

import sys

from lrlab.course.cli import main

sys.exit(main())
