"""nbgrader configuration of an instructor's server on the class hub (deploy/jupyterhub/jupyterhub_config.py).

The instructor keeps the course in ~/lrlab (or where LRLAB_COURSE says): a clone of the repository, or a copy
of its nbgrader_config.py, source/ and release/. This file loads that course's own nbgrader_config.py, so the
formgrader and every nbgrader command see the same course root, gradebook and exchange. The exchange is the
hub's shared one: the hub sets LRLAB_EXCHANGE, which the course's configuration reads.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

course = Path(os.environ.get("LRLAB_COURSE") or Path.home() / "lrlab")
if (course / "nbgrader_config.py").is_file():
    load_subconfig(str(course / "nbgrader_config.py"))  # noqa: F821  (provided by traitlets as well)
else:
    c.CourseDirectory.course_id = os.environ.get("LRLAB_COURSE_ID") or "lrlab"
    c.CourseDirectory.root = str(course)
    c.Exchange.root = os.environ.get("LRLAB_EXCHANGE") or "/srv/nbgrader/exchange"
