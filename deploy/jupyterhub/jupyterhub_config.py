"""JupyterHub configuration of a one-machine class of the lrlab course.

Start it with ``make hub`` (deploy/jupyterhub/start.py), which checks the port, installs the proxy and sets the
variables below; run as root, since the hub starts every person's server as their own Unix user.

- Login: real Unix accounts with their passwords (PAM). Members of the group ``lrlab-learners`` are learners, members
  of ``lrlab-instructors`` instructors; nobody else gets in.
- Each person's server is the course's own environment (the .venv that runs the hub): ``jupyterhub-singleuser``
  with JupyterLab and nbgrader's extensions. Learners get the Assignment List and Validate; instructors also the
  formgrader, on the course in their ~/lrlab.
- nbgrader's exchange is one folder everyone can write into (mode 0777, as nbgrader documents for
  /srv/nbgrader/exchange): release, fetch, submit, collect and feedback all go through it.
- Stopping the hub (Ctrl-C) stops the proxy and every person's server.

Variables (set by start.py; defaults in brackets): LRLAB_HUB_IP [127.0.0.1], LRLAB_HUB_PORT [8000],
LRLAB_HUB_API_PORT [8081] and LRLAB_PROXY_API_PORT [8001] (loopback only), LRLAB_HUB_STATE (the hub's database,
cookie secret and pid files) [build/hub/state], LRLAB_EXCHANGE [/srv/nbgrader/exchange], LRLAB_CHP (the
configurable-http-proxy command) [build/hub/node/node_modules/.bin/configurable-http-proxy], LRLAB_VENV (the
environment of everyone's server) [the one running the hub], LRLAB_INSTRUCTOR_GROUP [lrlab-instructors],
LRLAB_LEARNER_GROUP [lrlab-learners], LRLAB_COURSE_ID [lrlab].
"""

import grp
import os
import pwd
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (provided by traitlets when the file is loaded)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
env = os.environ.get

VENV = Path(env("LRLAB_VENV") or sys.prefix)
STATE = Path(env("LRLAB_HUB_STATE") or REPO / "build" / "hub" / "state")
EXCHANGE = env("LRLAB_EXCHANGE") or "/srv/nbgrader/exchange"
CHP = env("LRLAB_CHP") or str(REPO / "build" / "hub" / "node" / "node_modules" / ".bin" / "configurable-http-proxy")
INSTRUCTORS = env("LRLAB_INSTRUCTOR_GROUP") or "lrlab-instructors"
LEARNERS = env("LRLAB_LEARNER_GROUP") or "lrlab-learners"
COURSE_ID = env("LRLAB_COURSE_ID") or "lrlab"
STATE.mkdir(parents=True, exist_ok=True)


def in_group(user: str, group: str) -> bool:
    """Whether the Unix user ``user`` is a member of ``group`` (listed in it, or as their primary group)."""
    try:
        entry = grp.getgrnam(group)
    except KeyError:
        return False
    if user in entry.gr_mem:
        return True
    try:
        return pwd.getpwnam(user).pw_gid == entry.gr_gid
    except KeyError:
        return False


def jupyter_config_path(spawner) -> str:
    """An instructor's server loads deploy/jupyterhub/jupyter/instructor (the formgrader on), a learner's
    deploy/jupyterhub/jupyter/learner (the formgrader and the assignment-making tools off)."""
    role = "instructor" if in_group(spawner.user.name, INSTRUCTORS) else "learner"
    return str(HERE / "jupyter" / role)


# ------------------------------------------------------------------------------------------ the hub and its proxy
c.JupyterHub.ip = env("LRLAB_HUB_IP") or "127.0.0.1"
c.JupyterHub.port = int(env("LRLAB_HUB_PORT") or 8000)
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(env("LRLAB_HUB_API_PORT") or 8081)
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(env('LRLAB_PROXY_API_PORT') or 8001)}"
c.ConfigurableHTTPProxy.command = [CHP]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
# Stopping the hub stops the proxy and everyone's server: nothing is left running.
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# ------------------------------------------------------------------------------------------ who gets in
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.open_sessions = False  # no systemd-logind on a course machine or in a container
c.Authenticator.allowed_groups = {INSTRUCTORS, LEARNERS}

# ------------------------------------------------------------------------------------------ everyone's server
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [str(VENV / "bin" / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.Spawner.environment = {
    # the course's environment first: nbgrader, lrlab and the python3 kernel come from it
    "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
    "LRLAB_EXCHANGE": EXCHANGE,
    "LRLAB_COURSE_ID": COURSE_ID,
    "JUPYTER_CONFIG_PATH": jupyter_config_path,
}
