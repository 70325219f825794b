"""``python -m lrlab`` is the same as the ``lrlab`` command."""

import sys

from lrlab.course import main

sys.exit(main())
