"""Start the course's one-machine JupyterHub (``make hub``): check, set up, start, say where, stop cleanly.

Run it as root with the course's Python (``.venv/bin/python deploy/jupyterhub/start.py``). It

1. refuses, with the reason, when not root, when the port is taken, or when other users could not run the
   course's environment (a clone in a folder only root can enter);
2. installs the hub's proxy, configurable-http-proxy (npm, pinned below), into build/hub/node/ when missing;
3. makes the nbgrader exchange folder with the permissions nbgrader documents (0777);
4. starts JupyterHub with deploy/jupyterhub/jupyterhub_config.py, waits for the login page to answer, and prints its
   address, the seconds it took, and how to add learners and instructors;
5. on Ctrl-C (or SIGTERM) stops the hub, which stops the proxy and everyone's server, and checks nothing is left.

Exit codes: 0 after a clean stop, 2 when it refuses to start, 1 when the hub failed.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHP_VERSION = "5.3.0"  # configurable-http-proxy, from npm
NODE_PREFIX = REPO / "build" / "hub" / "node"
CHP = NODE_PREFIX / "node_modules" / ".bin" / "configurable-http-proxy"
READY_TIMEOUT_S = 120


class Refused(Exception):
    """A reason not to start, worded for the person who typed ``make hub``."""


def say(message: str) -> None:
    print(f"hub: {message}", flush=True)


def port_problem(ip: str, port: int) -> str | None:
    """Why the hub cannot listen on ``ip:port`` (taken by another program), or None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError as error:
            return f"port {port} on {ip} is already in use ({error.strerror})"
    return None


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def needed_paths() -> list[Path]:
    """What every person's server runs: the course's environment, the Python it was made with, the course."""
    return [Path(sys.prefix), Path(os.path.realpath(sys.executable)), Path(sys.base_prefix), REPO]


def closed_folders(paths: list[Path] | None = None) -> list[Path]:
    """The folders on the way to ``paths`` that users other than their owner cannot enter (no o+x)."""
    closed: list[Path] = []
    for path in needed_paths() if paths is None else paths:
        for folder in [*reversed(path.parents), path]:
            try:
                mode = folder.stat().st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH and folder not in closed:
                closed.append(folder)
    return closed


def proxy_version() -> str | None:
    package = NODE_PREFIX / "node_modules" / "configurable-http-proxy" / "package.json"
    try:
        return json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_proxy() -> Path:
    """configurable-http-proxy CHP_VERSION in build/hub/node/ (npm install when missing or another version)."""
    if CHP.exists() and proxy_version() == CHP_VERSION:
        return CHP
    npm = shutil.which("npm")
    if npm is None:
        raise Refused("npm is not installed: the hub's proxy, configurable-http-proxy, comes from npm "
                      "(Debian: apt-get install nodejs npm)")
    say(f"installing configurable-http-proxy {CHP_VERSION} into {NODE_PREFIX.relative_to(REPO)}/ (npm)...")
    NODE_PREFIX.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [npm, "install", "--prefix", str(NODE_PREFIX), "--no-audit", "--no-fund", "--loglevel=error",
         f"configurable-http-proxy@{CHP_VERSION}"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0 or proxy_version() != CHP_VERSION:
        raise Refused(f"npm could not install configurable-http-proxy {CHP_VERSION}:\n{proc.stdout}{proc.stderr}")
    return CHP


def ensure_exchange(path: Path) -> None:
    """The exchange folder, writable by everyone, as nbgrader documents (its subfolders nbgrader makes itself)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)


def check(ip: str, port: int) -> None:
    if os.geteuid() != 0:
        raise Refused("the hub must run as root: it starts each person's server as their own Unix user, "
                      "and nbgrader's exchange tells learners apart by that user (sudo make hub)")
    problem = port_problem(ip, port)
    if problem:
        raise Refused(f"{problem}. Stop what uses it, or choose another port: make hub HUB_PORT={port + 1}")
    closed = closed_folders()
    if closed:
        names = " ".join(str(folder) for folder in closed)
        raise Refused(f"other users cannot enter {names}, so their servers could not run the course's Python "
                      f"({os.path.realpath(sys.executable)}) or read the course. Let them pass through (chmod o+x "
                      f"{names}; they still cannot list it), or put the course in a folder everyone can enter "
                      f"(e.g. /opt/lrlab) with its .venv made from a Python outside closed folders (PYTHON=...)")


def wait_for_login(url: str, hub: subprocess.Popen, timeout_s: float = READY_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{url}hub/login", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftover_proxy(state: Path) -> int | None:
    try:
        pid = int((state / "jupyterhub-proxy.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:  # the pid file may outlive the proxy, and its number be another program's by now
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if alive(pid) and b"configurable-http-proxy" in command else None


def usage(url: str, exchange: Path, instructors: str, learners: str) -> str:
    return f"""
  The class hub is at {url}  (log in with a Unix account and its password)
  Add people, as root:
    groupadd -f {learners}; groupadd -f {instructors}
    useradd -m -G {learners} NAME && passwd NAME        # a learner
    useradd -m -G {instructors} NAME && passwd NAME     # an instructor: the course goes in ~NAME/lrlab
  nbgrader's exchange: {exchange}
  Stop the hub with Ctrl-C: it stops the proxy and everyone's server.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start the course's one-machine JupyterHub (make hub).")
    parser.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port of the hub's address (default 8000)")
    parser.add_argument("--exchange", default="/srv/nbgrader/exchange", help="nbgrader's exchange folder")
    parser.add_argument("--state", default=str(REPO / "build" / "hub" / "state"),
                        help="the hub's database, cookie secret and pid files")
    parser.add_argument("--instructors", default="lrlab-instructors", help="Unix group of the instructors")
    parser.add_argument("--learners", default="lrlab-learners", help="Unix group of the learners")
    args = parser.parse_args(argv)
    started = time.monotonic()
    state, exchange = Path(args.state).resolve(), Path(args.exchange).resolve()
    try:
        check(args.ip, args.port)
        chp = ensure_proxy()
        ensure_exchange(exchange)
    except Refused as reason:
        print(f"hub: not started: {reason}", file=sys.stderr, flush=True)
        return 2
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)  # the cookie secret and the hub's database are the hub's alone
    for group in (args.instructors, args.learners):
        try:
            grp.getgrnam(group)
        except KeyError:
            say(f"the group {group} does not exist yet: nobody can log in until you add it (see below)")

    env = dict(os.environ)
    env.update({
        "LRLAB_HUB_IP": args.ip,
        "LRLAB_HUB_PORT": str(args.port),
        "LRLAB_HUB_API_PORT": str(free_port()),
        "LRLAB_PROXY_API_PORT": str(free_port()),
        "LRLAB_HUB_STATE": str(state),
        "LRLAB_EXCHANGE": str(exchange),
        "LRLAB_CHP": str(chp),
        "LRLAB_VENV": sys.prefix,
        "LRLAB_INSTRUCTOR_GROUP": args.instructors,
        "LRLAB_LEARNER_GROUP": args.learners,
    })
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    url = f"http://{args.ip}:{args.port}/"
    command = [str(Path(sys.prefix) / "bin" / "jupyterhub"), "-f", str(HERE / "jupyterhub_config.py")]
    # Its own session: a Ctrl-C reaches the hub once, through this script, which then waits for it to clean up.
    hub = subprocess.Popen(command, cwd=state, env=env, start_new_session=True)
    stopping = []

    def stop(signum, _frame):
        if not stopping:
            say("stopping the hub (and the proxy and everyone's server)...")
        stopping.append(signum)
        if len(stopping) == 1 and hub.poll() is None:  # once: a second SIGTERM would cut the hub's cleanup short
            hub.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        if wait_for_login(url, hub):
            say(f"the login page answers after {time.monotonic() - started:.1f} s")
            print(usage(url, exchange, args.instructors, args.learners), flush=True)
        elif not stopping:
            say(f"the hub did not answer at {url}hub/login (its log is above)")
            stop(signal.SIGTERM, None)
        while True:
            try:
                code = hub.wait(timeout=30 if stopping else None)
                break
            except subprocess.TimeoutExpired:
                say("the hub did not stop within 30 s: killing it")
                os.killpg(hub.pid, signal.SIGKILL)
    finally:
        if hub.poll() is None:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
    pid = leftover_proxy(state)
    if pid is not None:
        say(f"the proxy (pid {pid}) outlived the hub: stopping it")
        os.kill(pid, signal.SIGTERM)
    say("stopped")
    return 0 if stopping and code in (0, -signal.SIGTERM, 128 + signal.SIGTERM) else (code or 1)


if __name__ == "__main__":
    sys.exit(main())
