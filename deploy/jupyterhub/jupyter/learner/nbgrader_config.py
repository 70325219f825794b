"""nbgrader configuration of a learner's server on the class hub (deploy/jupyterhub/jupyterhub_config.py).

The hub puts this folder on the learner's JUPYTER_CONFIG_PATH. A learner only needs to know the course and the
shared exchange: the Assignment List fetches from it and submits to it, and fetches feedback from it.
"""

import os

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

c.CourseDirectory.course_id = os.environ.get("LRLAB_COURSE_ID") or "lrlab"
c.Exchange.root = os.environ.get("LRLAB_EXCHANGE") or "/srv/nbgrader/exchange"
# As in the course's nbgrader_config.py: fetched assignments land in ~/<course id>/<assignment>/.
c.Exchange.path_includes_course = True
