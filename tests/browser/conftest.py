"""Fixtures for the browser tests: Chromium driven by Playwright, and JupyterLab on a copy of the course.

These tests play the learner: they open the course in a real JupyterLab in a real browser, run cells, move
sliders and press the nbgrader Validate button. Everything runs on a temporary copy of the course, so the
repository is never touched, and on its own Jupyter configuration, so nothing of the person running the
tests (settings, workspaces, kernels) leaks in.

When Chromium or Playwright is missing the tests are skipped with a plain reason. Set
``LRLAB_REQUIRE_BROWSER=1`` (the CI does) to turn that skip into a failure, so a green run always means the
browser tests ran. ``LRLAB_CHROMIUM`` points at another Chromium binary than Debian's ``/usr/bin/chromium``.

Screenshots and timings land in ``build/browser/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_helpers import BUILD, COURSE_FOLDERS, REPO, TIMINGS, record_timing, wait_for_file_browser

#: What a temporary course copy contains (the course's nbgrader config computes its root from its own place).
COURSE_PARTS = ("nbgrader_config.py", "source", "release", "notebooks")

#: Chromium's flags for a closed, headless machine (Playwright adds --headless and a fresh --user-data-dir).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SERVER_START_TIMEOUT_S = 90
EXPECT_TIMEOUT_MS = 30_000
FIRST_RENDER_TIMEOUT_S = 90

# Lab settings for the copy: no news or update checks (the machine may be offline), nothing else changed.
LAB_USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

_DURATIONS: dict[str, float] = {}
_REPORTS = pytest.StashKey[dict]()


def _unavailable(reason: str) -> None:
    """Skip (or fail, when the run requires the browser) because the browser tests cannot run here."""
    if os.environ.get("LRLAB_REQUIRE_BROWSER", "") == "1":
        pytest.fail(f"{reason} -- LRLAB_REQUIRE_BROWSER=1, so the browser tests must run", pytrace=False)
    pytest.skip(f"browser tests skipped: {reason}")


def _chromium_path() -> Path | None:
    configured = os.environ.get("LRLAB_CHROMIUM")
    candidates = [configured] if configured else ["/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


# --------------------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (Debian's package) driven by Playwright's sync API, shared by the session."""
    chromium = _chromium_path()
    if chromium is None:
        where = os.environ.get("LRLAB_CHROMIUM") or "/usr/bin/chromium"
        _unavailable(f"Chromium not found at {where} (install the Debian package `chromium`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package `playwright` is not installed (it is in the `dev` extra)")

    from playwright.sync_api import expect

    # The machine may be busy (a kernel importing torch on the same cores): give the UI time to answer.
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    BUILD.mkdir(parents=True, exist_ok=True)
    for old in BUILD.glob("*.png"):  # screenshots of an earlier run must not pass for this one's
        old.unlink(missing_ok=True)  # another worker may have removed it first
    with sync_playwright() as playwright:
        started = time.monotonic()
        chrome = playwright.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        record_timing("browser_launch_s", time.monotonic() - started)
        try:
            yield chrome
        finally:
            chrome.close()


# --------------------------------------------------------------------------------------------- JupyterLab


@dataclass
class LabServer:
    """A running ``jupyter lab`` on a temporary copy of the course."""

    url: str  # base URL, ending in "/"
    token: str
    root: Path  # the course copy the server serves
    process: subprocess.Popen
    log: Path
    ready_s: float = 0.0  # process start -> /api/status answers
    first_render_s: float = 0.0  # process start -> the file browser lists the course
    context: object = None  # the browser context (profile) the scenarios open their tabs in

    def lab_url(self, path: str = "") -> str:
        """URL of JupyterLab opening ``path`` (relative to the course), with a fresh workspace."""
        tree = f"tree/{path}" if path else ""
        return f"{self.url}lab/{tree}?reset&token={self.token}"

    def api(self, method: str, endpoint: str, body: dict | None = None, timeout: float = 30) -> object:
        """Call the server's REST API (``endpoint`` like ``api/kernels``); returns the JSON or None."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{endpoint}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read().decode()
        return json.loads(text) if text.strip() else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel and session, so one scenario's kernels do not slow down the next."""
        for session in self.api("GET", "api/sessions") or []:
            self.api("DELETE", f"api/sessions/{session['id']}")
        for kernel in self.api("GET", "api/kernels") or []:
            self.api("DELETE", f"api/kernels/{kernel['id']}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no server log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _copy_course(target: Path) -> Path:
    """Copy the parts of the course a learner's JupyterLab needs into ``target``."""
    target.mkdir(parents=True)
    for part in COURSE_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        elif source.is_file():
            shutil.copy2(source, target / part)
        else:
            (target / part).mkdir()  # an empty course folder still shows in the file browser
    return target


def _isolated_env(home: Path) -> dict[str, str]:
    """Environment of the server and its kernels: Jupyter, IPython and matplotlib state under ``home``."""
    env = dict(os.environ)
    for name in ("NBGRADER_EXECUTION", "JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "MPLBACKEND", "PYTHONSTARTUP"):
        env.pop(name, None)
    dirs = {
        "HOME": home,
        "JUPYTER_CONFIG_DIR": home / "jupyter-config",
        "JUPYTER_DATA_DIR": home / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": home / "jupyter-runtime",
        "IPYTHONDIR": home / "ipython",
        "MPLCONFIGDIR": home / "matplotlib",
    }
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings"
    for relative, values in LAB_USER_SETTINGS.items():
        file = settings / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(values))
    # No news feed, no update check: the learner's lab must not depend on the network.
    (dirs["JUPYTER_CONFIG_DIR"] / "jupyter_server_config.json").write_text(
        json.dumps({"LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"}})
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the kernels run in sessions of their own, so a group kill misses them)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _stop(process: subprocess.Popen) -> None:
    """Terminate the server's process group (it shuts its kernels down), then kill what is left."""
    if process.poll() is not None:
        return
    kernels = _child_pids(process.pid) if Path("/proc").is_dir() else []
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)
    for pid in kernels:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _wait_ready(server: LabServer, started: float) -> None:
    deadline = started + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"jupyter lab stopped (code {server.process.returncode}) early:\n{server.log_tail()}",
                pytrace=False,
            )
        try:
            server.api("GET", "api/status", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.2)
    pytest.fail(
        f"jupyter lab did not answer /api/status within {SERVER_START_TIMEOUT_S} s:\n{server.log_tail()}",
        pytrace=False,
    )


def _launch(course: Path, home: Path, log: Path) -> LabServer:
    """Start ``jupyter lab`` serving ``course`` (its working directory too: nbgrader reads nbgrader_config.py
    from there) on a free loopback port, with Jupyter state under ``home``; return once it answers."""
    env = _isolated_env(home)
    port, token = _free_port(), secrets.token_hex(16)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    with open(log, "w") as log_file:
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=course, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LabServer(url=f"http://127.0.0.1:{port}/", token=token, root=course, process=process, log=log)
    try:
        _wait_ready(server, started)
    except BaseException:
        _stop(process)
        raise
    server.ready_s = time.monotonic() - started
    return server


@pytest.fixture(scope="session")
def lab(browser, tmp_path_factory) -> LabServer:
    """``jupyter lab`` on a temporary copy of the course, on a free loopback port, stopped at the end.

    It also measures JupyterLab's time to first render: from starting the server process to the file browser
    listing the course's folders in Chromium.
    """
    base = tmp_path_factory.mktemp("lab")
    course = _copy_course(base / "course")
    started = time.monotonic()
    server = _launch(course, base / "home", BUILD / "jupyter-lab.log")
    try:
        record_timing("lab_server_ready_s", server.ready_s)

        # One browser context (profile) for the session: like a learner's browser, it caches JupyterLab's
        # scripts after the first visit; every scenario still opens a tab of its own on a reset workspace.
        server.context = browser.new_context(viewport={"width": 1400, "height": 900})
        server.context.set_default_timeout(EXPECT_TIMEOUT_MS)
        page = server.context.new_page()
        try:
            page.goto(server.lab_url(), timeout=FIRST_RENDER_TIMEOUT_S * 1000)
            wait_for_file_browser(page, COURSE_FOLDERS, timeout_s=FIRST_RENDER_TIMEOUT_S)
            server.first_render_s = time.monotonic() - started
            record_timing("lab_first_render_s", server.first_render_s)
        except Exception as error:
            page.screenshot(path=str(BUILD / "00_first_render_failed.png"))
            pytest.fail(f"JupyterLab did not render the course: {error}\n{server.log_tail()}", pytrace=False)
        finally:
            page.close()
        yield server
    finally:
        if server.context is not None:
            server.context.close()
        _stop(server.process)


@pytest.fixture(scope="session")
def launch_server():
    """``launch_server(course, home, log)``: another ``jupyter lab`` (an instructor's, on a course of its own),
    stopped at the end of the session."""
    servers: list[LabServer] = []

    def launch(course: Path, home: Path, log: Path) -> LabServer:
        server = _launch(course, home, log)
        servers.append(server)
        return server

    yield launch
    for server in servers:
        _stop(server.process)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


@pytest.fixture
def page(browser, lab, request):
    """A fresh browser tab (1400x900) for one scenario; its kernels are shut down afterwards.

    When the scenario fails, the tab is saved as build/browser/FAILED-<test name>.png.
    """
    tab = lab.context.new_page()
    try:
        yield tab
    finally:
        call = request.node.stash.get(_REPORTS, {}).get("call")
        if call is not None and call.failed:
            try:
                tab.screenshot(path=str(BUILD / f"FAILED-{request.node.name}.png"))
            except Exception:  # a missing screenshot must not hide the real failure
                pass
        tab.close()
        try:
            lab.shutdown_kernels()
        except (urllib.error.URLError, OSError):
            pass


@pytest.fixture
def screenshot(page):
    """``screenshot(name)`` saves the whole tab as build/browser/<name>.png and returns the path."""

    def save(name: str, locator=None) -> Path:
        path = BUILD / f"{name}.png"
        (locator or page).screenshot(path=str(path))
        return path

    return save


# --------------------------------------------------------------------------------------------- reporting


_RAN: set[str] = set()


def pytest_runtest_logreport(report):
    if "browser" in report.keywords:
        _DURATIONS[report.nodeid] = _DURATIONS.get(report.nodeid, 0.0) + report.duration
        if report.when == "call":
            _RAN.add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if not _RAN:  # skipped (the reason is in pytest's summary) or not selected
        return
    total = sum(_DURATIONS.values())
    record_timing("browser_suite_s", total)
    lines = [f"browser suite: {len(_DURATIONS)} tests in {total:.1f} s"]
    if "lab_first_render_s" in TIMINGS:
        lines.append(
            f"JupyterLab time to first render of the course: {TIMINGS['lab_first_render_s']:.1f} s "
            f"(server answering after {TIMINGS.get('lab_server_ready_s', 0):.1f} s)"
        )
    lines += [f"  {name} = {value}" for name, value in sorted(TIMINGS.items()) if name.endswith("_s")]
    terminalreporter.write_sep("-", "browser timings")
    for line in lines:
        terminalreporter.write_line(line)
    if BUILD.is_dir():
        (BUILD / "timings.json").write_text(
            json.dumps({"timings": TIMINGS, "tests": {k: round(v, 2) for k, v in _DURATIONS.items()}}, indent=2)
        )
