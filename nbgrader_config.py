"""nbgrader configuration of the lrlab course.

Paths are computed from this file's location, so the course works wherever it is cloned.
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821  (provided by nbgrader/traitlets when the file is loaded)

COURSE_ROOT = Path(__file__).resolve().parent

c.CourseDirectory.course_id = "lrlab"
c.CourseDirectory.root = str(COURSE_ROOT)
c.CourseDirectory.source_directory = "source"
c.CourseDirectory.release_directory = "release"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = f"sqlite:///{COURSE_ROOT / 'gradebook.db'}"

# The exchange lives inside the course (ignored by git), so no system folder is needed; a class on JupyterHub
# shares one exchange between everyone's accounts, and the hub names it in LRLAB_EXCHANGE (deploy/jupyterhub).
c.Exchange.root = os.environ.get("LRLAB_EXCHANGE") or str(COURSE_ROOT / "exchange")
os.makedirs(c.Exchange.root, exist_ok=True)  # nbgrader does not create it, and the formgrader refuses to work without
c.Exchange.path_includes_course = True

# Every cell of the course runs in a few seconds on a laptop CPU; a minute is a generous ceiling,
# and a cell that runs past it is a bug (or a submission that loops forever).
c.ExecutePreprocessor.timeout = 60
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True

# Students never see the instructor's hidden tests, not even in their feedback.
c.ClearHiddenTests.enforce_metadata = True
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "lrlab.course.grading.feedback.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# Release notebooks are normalised by `lrlab release`; do not append nbgrader's header/footer.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
