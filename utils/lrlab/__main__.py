"""``python -m lrlab`` is the same as the ``lrlab`` command (:func:`lrlab.course.cli.main`)."""

import sys

from lrlab.course.cli import main

sys.exit(main())
