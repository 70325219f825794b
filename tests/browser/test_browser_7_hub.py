"""Scenario 7: a class on the one-machine JupyterHub, the whole nbgrader exchange round trip in Chromium.

The hub of ``make hub`` (deploy/jupyterhub/start.py) starts on a free loopback port, with real Unix users made for
the test: an instructor and two learners, who log in with their passwords (PAM). Then

- the instructor releases 00_pytorch_warmup to the exchange (``nbgrader release_assignment``);
- each learner logs in, fetches it from the Assignment List, works, presses Validate and Submit: learner 1 with the
  reference answers; learner 2 first submits the untouched notebook, with a notebook of another assignment beside
  it, from a shell (``nbgrader submit``), then again in the Assignment List, after the due date, with only some
  exercises solved;
- the instructor collects (``nbgrader collect``), grades (``lrlab grade``, sandboxed), checks a terminal of their
  JupyterLab has the course's commands, grades learner 1's written answer in the formgrader, makes and releases the
  feedback (``nbgrader generate_feedback --force``, ``nbgrader release_feedback``);
- each learner fetches their feedback in the Assignment List and reads their score in it.

What must come out: learner 1 has every point (the written answer's by hand), learner 2 exactly the points of the
exercises solved in the newest submission (the earlier one is not graded, nor the other assignment's notebook), whose
timestamp the gradebook keeps and marks late. A fetch of an assignment not released is refused by nbgrader with its
message; so is a second start of the hub on its port.

The users, their homes, the exchange and the hub's state live in a temporary folder and are removed afterwards;
the hub is always stopped, and the test checks that it left no process behind. Creating users needs root (CI runs
as root): elsewhere the scenario is skipped with the reason, or fails under ``LRLAB_REQUIRE_BROWSER=1``.
Screenshots of each step land in ``build/hub/``, with the timings in ``build/hub/timings.json``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest
from browser_helpers import REPO, answer_cells, open_in_file_browser, solution_of

from coursecopy import copy_course

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture then skips (or fails) with a plain reason
    expect = None

pytestmark = [pytest.mark.browser, pytest.mark.hub, pytest.mark.sandbox, pytest.mark.slow]

ASSIGNMENT = "00_pytorch_warmup"
UNRELEASED = "01_data_pipeline"
COURSE_ID = "lrlab"
BUILD = REPO / "build" / "hub"
START = REPO / "deploy" / "jupyterhub" / "start.py"
VENV = Path(sys.prefix)
#: Learner 2 solves these exercises only (grade_ids of answer cells); the others stay as released.
PARTIAL = ("center_columns", "pairwise_sq_dist", "mc_accumulate")
#: The written answer, graded by hand in the formgrader.
WRITTEN = "why_no_grad"
HUB_START_TIMEOUT_S = 120
SPAWN_TIMEOUT_MS = 120_000
VALIDATE_TIMEOUT_MS = 180_000
TIMINGS: dict[str, float] = {}


def _unavailable(reason: str) -> None:
    if os.environ.get("LRLAB_REQUIRE_BROWSER", "") == "1":
        pytest.fail(f"{reason} -- LRLAB_REQUIRE_BROWSER=1, so the hub scenario must run", pytrace=False)
    pytest.skip(f"hub scenario skipped: {reason}")


def _launcher():
    spec = importlib.util.spec_from_file_location("lrlab_hub_start", START)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------- users


@dataclass
class Person:
    name: str
    password: str
    home: Path
    role: str  # "instructor" or "learner"

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.name).pw_gid


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=True, **kwargs)


def _processes_of(uids: set[int]) -> list[int]:
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        match = re.search(r"^Uid:\s+(\d+)", text, re.M)
        if match and int(match.group(1)) in uids:
            pids.append(int(status.parent.name))
    return pids


def as_user(person: Person, command: list[str], cwd: Path, hub: Hub,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``command`` as ``person`` (their uid, groups, home), in the environment their hub server has."""
    env = {
        "HOME": str(person.home),
        "USER": person.name,
        "LOGNAME": person.name,
        "PATH": f"{VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LRLAB_EXCHANGE": str(hub.exchange),
        "LRLAB_COURSE_ID": COURSE_ID,
        "JUPYTER_CONFIG_PATH": str(REPO / "deploy" / "jupyterhub" / "jupyter" / person.role),
    }
    groups = os.getgrouplist(person.name, person.gid)
    return subprocess.run(command, cwd=cwd, env=env, user=person.uid, group=person.gid, extra_groups=groups,
                          capture_output=True, text=True, timeout=timeout)


def instructor_runs(hub: Hub, *command: str, timeout: float = 300) -> str:
    proc = as_user(hub.instructor, list(command), hub.course, hub, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------- the hub


@dataclass
class Hub:
    url: str
    base: Path
    exchange: Path
    state: Path
    process: subprocess.Popen
    log: Path
    instructor: Person
    learners: list[Person]
    course: Path  # the instructor's course (~instructor/lrlab)
    port: int
    outsider: Person  # a Unix user in neither of the class's groups

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no hub log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_hub(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the launcher stops the hub, which stops the proxy and the servers
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def hub(browser):
    """The class hub on a free loopback port, with an instructor and two learners; everything removed afterwards."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        _unavailable("making the class's Unix users needs root (CI runs as root)")
    for tool in ("useradd", "userdel", "groupadd", "groupdel", "chpasswd"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed")
    if shutil.which("npm") is None and not _launcher().CHP.exists():
        _unavailable("npm is not installed (the hub's proxy, configurable-http-proxy, comes from npm)")
    launcher = _launcher()
    BUILD.mkdir(parents=True, exist_ok=True)
    for old in BUILD.glob("*.png"):
        old.unlink()
    suffix = secrets.token_hex(3)
    groups = {"instructor": f"lrlab-i-{suffix}", "learner": f"lrlab-l-{suffix}"}
    base = Path(tempfile.mkdtemp(prefix="lrlab-hub-"))
    os.chmod(base, 0o755)  # the users' homes are in here
    made_users: list[str] = []
    made_groups: list[str] = []
    opened: dict[Path, int] = {}
    process = None
    try:
        # The course's Python may live in a folder only root may enter (a pyenv under /root, as on CI): the users
        # may pass through it (o+x, not list it) while the class runs; its mode is put back afterwards.
        for folder in launcher.closed_folders():
            opened[folder] = folder.stat().st_mode & 0o7777
            os.chmod(folder, opened[folder] | 0o001)
        for group in groups.values():
            _run(["groupadd", group])
            made_groups.append(group)
        people = []
        for name, role in ((f"lrlab-in-{suffix}", "instructor"), (f"lrlab-l1-{suffix}", "learner"),
                           (f"lrlab-l2-{suffix}", "learner"), (f"lrlab-x-{suffix}", "outsider")):
            home = base / "home" / name
            home.parent.mkdir(exist_ok=True)
            member = ["-G", groups[role]] if role in groups else []  # the outsider has an account, not a class
            _run(["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", *member, name])
            made_users.append(name)
            password = secrets.token_urlsafe(12)
            _run(["chpasswd"], input=f"{name}:{password}\n")
            people.append(Person(name, password, home, role))
        instructor, learners, outsider = people[0], people[1:3], people[3]

        course = copy_course(instructor.home / "lrlab", [ASSIGNMENT])
        _run(["chown", "-R", f"{instructor.name}:{instructor.gid}", str(course)])

        port = _free_port()
        exchange, state = base / "exchange", base / "state"
        log = BUILD / "hub.log"
        command = [sys.executable, str(START), "--port", str(port), "--exchange", str(exchange), "--state",
                   str(state), "--instructors", groups["instructor"], "--learners", groups["learner"]]
        started = time.monotonic()
        with open(log, "w") as log_file:
            process = subprocess.Popen(command, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        url = f"http://127.0.0.1:{port}/"
        hub = Hub(url, base, exchange, state, process, log, instructor, learners, course, port, outsider)
        deadline = started + HUB_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the hub stopped (code {process.returncode}) early:\n{hub.log_tail()}", pytrace=False)
            try:
                with urllib.request.urlopen(f"{url}hub/login", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the hub's login page did not answer in {HUB_START_TIMEOUT_S} s:\n{hub.log_tail()}",
                            pytrace=False)
            time.sleep(0.2)
        TIMINGS["hub_start_to_login_page_s"] = round(time.monotonic() - started, 2)
        yield hub
    finally:
        uids = set()
        for name in made_users:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                pass
        left = []
        if process is not None:
            _stop_hub(process)
            time.sleep(0.5)
            left = _processes_of(uids)
            launcher_state = base / "state"
            proxy = launcher.leftover_proxy(launcher_state)
            if proxy is not None:
                left.append(proxy)
                os.kill(proxy, signal.SIGKILL)
        for pid in _processes_of(uids):  # a server the hub failed to stop must not keep a user from being removed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for name in made_users:
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        for group in made_groups:
            subprocess.run(["groupdel", group], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        for folder, mode in opened.items():
            os.chmod(folder, mode)
        BUILD.mkdir(parents=True, exist_ok=True)
        (BUILD / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
        assert not left, f"processes left running after the hub stopped: {left}"


# --------------------------------------------------------------------------------------------- the browser


def shot(page, name: str) -> None:
    page.screenshot(path=str(BUILD / f"{name}.png"))


def log_in(browser, hub: Hub, person: Person, step: str):
    """A browser (context) of its own for ``person``, logged in to the hub; returns the tab showing their lab."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{hub.url}hub/login")
    page.fill("#username_input", person.name)
    page.fill("#password_input", person.password)
    shot(page, f"{step}_login_{person.role}")
    page.click("#login_submit")
    page.wait_for_url(re.compile(rf"/user/{re.escape(person.name)}/lab"), timeout=SPAWN_TIMEOUT_MS)
    expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=SPAWN_TIMEOUT_MS)
    expect(page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$"))).to_be_visible(
        timeout=SPAWN_TIMEOUT_MS)
    return context, page


def open_assignment_list(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$")).click()
    page.locator('#jp-mainmenu-nbgrader li[data-command="nbgrader:open-assignment-list"]').click()
    expect(page.locator("#released_assignments_list")).to_be_visible()


def assignment_rows(page, kind: str, count: int):
    """The rows of the Assignment List's ``kind`` list (released, fetched, submitted), once it shows ``count``."""
    for what in ("loading", "placeholder", "error"):
        expect(page.locator(f"#{kind}_assignments_list_{what}")).not_to_be_visible()
    rows = page.locator(f"#{kind}_assignments_list > .list_item")
    expect(rows).to_have_count(count)
    return rows


def submissions(page):
    return page.locator(f'[id="nbgrader-{COURSE_ID}-{ASSIGNMENT}-submissions"] > .list_item')


def fetch_in_ui(page, person: Person, step: str) -> Path:
    open_assignment_list(page)
    rows = assignment_rows(page, "released", 1)
    expect(rows.first.locator(".item_name")).to_have_text(ASSIGNMENT)
    shot(page, f"{step}_released_{person.name.split('-')[1]}")
    rows.first.locator(".item_status button").click()
    rows = assignment_rows(page, "fetched", 1)
    expect(rows.first.locator(".item_name").first).to_have_text(ASSIGNMENT)
    notebook = person.home / COURSE_ID / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert notebook.is_file(), f"the fetched notebook is not at {notebook}"
    return notebook


def write_answers(person: Person, notebook: Path, grade_ids: list[str]) -> None:
    """The learner's work: the answer cells ``grade_ids`` of the fetched notebook get the reference answers
    (written as the learner, into their own copy; the rest of the notebook stays as released)."""
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4)
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in grade_ids:
            cell.source = solution_of(source, grade_id)
    nbformat.write(nb, str(notebook))
    os.chown(notebook, person.uid, person.gid)


def expand_fetched(page):
    item = page.locator(f'[id="nbgrader-{COURSE_ID}-{ASSIGNMENT}"]')
    if "in" not in (item.get_attribute("class") or "").split():
        page.locator("#fetched_assignments_list a", has_text=ASSIGNMENT).first.click()
    expect(page.locator(f'[id="nbgrader-{COURSE_ID}-{ASSIGNMENT}"].collapse.in')).to_be_visible()
    return item


def validate_in_ui(page, step: str, name: str) -> str:
    """Press Validate on the notebook in the Assignment List; returns "success" or "error" (the dialog shown)."""
    item = expand_fetched(page)
    item.locator(".list_item .item_status button", has_text="Validate").first.click()
    dialog = page.locator(".nbgrader-SuccessDialog, .nbgrader-ErrorDialog")
    expect(dialog).to_have_count(1, timeout=VALIDATE_TIMEOUT_MS)
    outcome = "success" if page.locator(".nbgrader-SuccessDialog").count() else "error"
    shot(page, f"{step}_validate_{name}_{outcome}")
    dialog.locator("button.jp-Dialog-button").first.click()
    expect(dialog).to_have_count(0)
    return outcome


def submit_in_ui(page, step: str, name: str, count: int) -> None:
    """Press Submit; the Submitted list then shows ``count`` submissions of the assignment."""
    rows = assignment_rows(page, "fetched", 1)
    rows.first.locator(".item_status button", has_text="Submit").first.click()
    assignment_rows(page, "submitted", 1)
    expect(submissions(page)).to_have_count(count + 1)  # a header row, then one row per submission
    shot(page, f"{step}_submitted_{name}")


def fetch_feedback_in_ui(page, person: Person, step: str, linked: bool = True) -> str:
    """Fetch Feedback in the Assignment List, open the page, and return its header (with the score).

    ``linked``: the list links the feedback ("view feedback"). nbgrader shows that link only when every notebook of
    the submission has feedback; a submission that carried a notebook of another assignment gets none, and the
    learner opens the fetched page from the file browser instead.
    """
    page.reload()
    expect(page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$"))).to_be_visible(
        timeout=SPAWN_TIMEOUT_MS)
    open_assignment_list(page)
    rows = assignment_rows(page, "submitted", 1)
    expect(rows.first.locator(".item_status button", has_text="Fetch Feedback")).to_be_visible()
    rows.first.locator(".item_status button", has_text="Fetch Feedback").click()
    folder = person.home / COURSE_ID / ASSIGNMENT / "feedback"
    if linked:
        link = page.locator("#submitted_assignments_list a", has_text="view feedback").first
        expect(link).to_be_visible()
        shot(page, f"{step}_feedback_fetched_{person.name.split('-')[1]}")
        link.click()  # the file browser goes to the feedback's folder; the learner opens the page in it
        open_in_file_browser(page, f"{ASSIGNMENT}.html")
    else:
        deadline = time.monotonic() + 30
        while not list(folder.glob(f"*/{ASSIGNMENT}.html")) and time.monotonic() < deadline:
            time.sleep(0.3)
        shot(page, f"{step}_feedback_fetched_{person.name.split('-')[1]}")
        fetched = max(folder.glob(f"*/{ASSIGNMENT}.html"))  # the newest submission's (timestamps sort)
        page.goto(f"{page.url.split('/lab')[0]}/lab/tree/{quote(str(fetched.relative_to(person.home)))}")
    frame = page.frame_locator(".jp-HTMLViewer iframe").first
    header = frame.locator("h4", has_text="Score:").first
    expect(header).to_be_visible()
    shot(page, f"{step}_feedback_{person.name.split('-')[1]}")
    return header.inner_text()


def score_of(header: str) -> tuple[float, float]:
    match = re.search(r"Score:\s*([\d.]+)\s*/\s*([\d.]+)", header)
    assert match, f"no score in the feedback header {header!r}"
    return float(match.group(1)), float(match.group(2))


# --------------------------------------------------------------------------------------------- the scenario


def _points(notebook) -> tuple[dict[str, float], dict[str, float], float]:
    """Points per autograded test cell, per hand-graded answer, and the total."""
    auto, manual = {}, {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            (auto if cell.cell_type == "code" else manual)[meta["grade_id"]] = meta["points"]
    return auto, manual, sum(auto.values()) + sum(manual.values())


def test_a_class_round_trip_through_the_exchange_on_jupyterhub(hub, browser):
    from nbgrader.api import Gradebook

    started = time.monotonic()
    source = nbformat.read(str(REPO / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"), as_version=4)
    auto, manual, total = _points(source)
    assert list(manual) == [WRITTEN], manual
    # learner 2's solved exercises are the answers tested by the test cell of the same name + "_tests"
    partial_points = sum(auto[f"{grade_id}_tests"] for grade_id in PARTIAL)
    l1, l2 = hub.learners

    # the hub refuses a second start on its port, with the reason and the way out
    busy = subprocess.run([sys.executable, str(START), "--port", str(hub.port), "--exchange", str(hub.exchange),
                           "--state", str(hub.base / "state-2")], capture_output=True, text=True, timeout=60)
    assert busy.returncode == 2 and f"port {hub.port} on 127.0.0.1 is already in use" in busy.stderr, busy.stderr
    assert "HUB_PORT=" in busy.stderr, busy.stderr

    # the instructor releases the assignment to the exchange
    out = instructor_runs(hub, "nbgrader", "release_assignment", ASSIGNMENT)
    assert (hub.exchange / COURSE_ID / "outbound" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file(), out
    assert oct(hub.exchange.stat().st_mode & 0o777) == "0o777"

    # a learner asks for an assignment that was not released: nbgrader says so, nothing is fetched
    proc = as_user(l1, ["nbgrader", "fetch_assignment", UNRELEASED], l1.home, hub)
    assert proc.returncode != 0 and "Assignment not found" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert not (l1.home / COURSE_ID / UNRELEASED).exists()

    # a Unix user outside the class's groups does not get in, password or not
    context0 = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page0 = context0.new_page()
        page0.goto(f"{hub.url}hub/login")
        page0.fill("#username_input", hub.outsider.name)
        page0.fill("#password_input", hub.outsider.password)
        page0.click("#login_submit")
        page0.wait_for_load_state()
        expect(page0.locator("#login_submit")).to_be_visible()  # still the login page, with nbgrader nowhere
        shot(page0, "00_login_refused_outsider")
        assert "/user/" not in page0.url, page0.url
        assert f"User '{hub.outsider.name}' not allowed" in hub.log.read_text(), "refused, but not for the group"
    finally:
        context0.close()

    # learner 1: fetch, answer everything, Validate (passes), Submit
    context1, page1 = log_in(browser, hub, l1, "01")
    try:
        shot(page1, "02_lab_learner1")
        notebook = fetch_in_ui(page1, l1, "03")
        write_answers(l1, notebook, answer_cells(source, ("code", "markdown")))
        assert validate_in_ui(page1, "04", "l1") == "success"
        submit_in_ui(page1, "05", "l1", count=1)
    finally:
        page1.close()

    # learner 2: fetch, submit the notebook as released (in a terminal, with a notebook of another assignment beside
    # it), then (after the due date) again in the Assignment List with some exercises solved
    context2, page2 = log_in(browser, hub, l2, "06")
    try:
        notebook = fetch_in_ui(page2, l2, "07")
        # a notebook of another assignment in the folder: nbgrader's submit names it and submits anyway
        extra = notebook.parent / f"{UNRELEASED}.ipynb"
        shutil.copy(REPO / "release" / UNRELEASED / f"{UNRELEASED}.ipynb", extra)
        os.chown(extra, l2.uid, l2.gid)
        proc = as_user(l2, ["nbgrader", "submit", ASSIGNMENT], l2.home, hub)
        said = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "extra notebooks" in said and f"{UNRELEASED}.ipynb: EXTRA" in said, said
        due = dt.datetime.now(dt.UTC)
        time.sleep(1.1)
        write_answers(l2, notebook, list(PARTIAL))
        assert validate_in_ui(page2, "09", "l2") == "error"  # some tests still fail: nbgrader says which
        submit_in_ui(page2, "10", "l2_second", count=2)
    finally:
        page2.close()
    inbound = sorted(p.name for p in (hub.exchange / COURSE_ID / "inbound").iterdir())
    assert len(inbound) == 3 and sum(name.startswith(f"{l2.name}+") for name in inbound) == 2, inbound

    # the instructor: due date, collect, grade in the sandbox, feedback, release
    instructor_runs(hub, "nbgrader", "db", "assignment", "add", ASSIGNMENT,
                    f"--duedate={due.strftime('%Y-%m-%d %H:%M:%S.%f')} UTC")
    out = instructor_runs(hub, "nbgrader", "collect", ASSIGNMENT)
    for learner in hub.learners:
        assert (hub.course / "submitted" / learner.name / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").is_file(), out
    newest = max(name for name in inbound if name.startswith(f"{l2.name}+")).split("+")[2]
    kept = (hub.course / "submitted" / l2.name / ASSIGNMENT / "timestamp.txt").read_text().strip()
    assert kept == newest, f"collect kept the timestamp {kept}, the newest submission is {newest}"

    assert (hub.course / "submitted" / l2.name / ASSIGNMENT / f"{UNRELEASED}.ipynb").is_file()
    graded = instructor_runs(hub, "lrlab", "grade", ASSIGNMENT, timeout=600)
    (BUILD / "lrlab-grade.txt").write_text(graded)
    # the instructor, in the formgrader: both learners with their scores, and learner 1's written answer graded by hand
    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}", COURSE_ID) as gb:
        l1_notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, l1.name).id
    context_i, page_i = log_in(browser, hub, hub.instructor, "11")
    try:
        # a terminal of the instructor's JupyterLab has the course's commands and the exchange
        page_i.locator('.jp-LauncherCard[title="Start a new terminal session"]').click()
        expect(page_i.locator(".jp-Terminal .xterm-screen").first).to_be_visible()
        page_i.locator(".jp-Terminal .xterm-screen").first.click()
        page_i.keyboard.type("cd ~/lrlab && command -v nbgrader lrlab > ../terminal.txt && echo $LRLAB_EXCHANGE >> "
                             "../terminal.txt && nbgrader list 2>&1 | tee -a ../terminal.txt; "
                             "echo listed >> ../terminal.txt\n")
        said = hub.instructor.home / "terminal.txt"
        deadline = time.monotonic() + 60
        while "listed" not in (said.read_text().splitlines() if said.exists() else []):
            if time.monotonic() > deadline:
                shot(page_i, "FAILED_terminal_instructor")
                pytest.fail("the terminal's commands did not finish", pytrace=False)
            time.sleep(0.3)
        time.sleep(0.5)  # the terminal draws what nbgrader printed
        shot(page_i, "12_terminal_instructor")
        lines = said.read_text().splitlines()
        # the course's commands, the exchange, and nbgrader list seeing the assignment released to it
        assert lines[:3] == [str(VENV / "bin" / "nbgrader"), str(VENV / "bin" / "lrlab"), str(hub.exchange)], lines
        assert any(line.endswith(f"{COURSE_ID} {ASSIGNMENT}") for line in lines[3:]), lines
        page_i.goto(f"{hub.url}user/{hub.instructor.name}/formgrader/manage_students")
        try:
            for learner in hub.learners:
                expect(page_i.locator("td", has_text=learner.name).first).to_be_visible()
        finally:
            shot(page_i, "13_formgrader_students")
        page_i.goto(f"{hub.url}user/{hub.instructor.name}/formgrader/submissions/{l1_notebook}/")
        page_i.wait_for_load_state("networkidle")  # the page loads its grades from the formgrader's API
        written = page_i.locator(f'input.score[id="{WRITTEN}"]')
        written.scroll_into_view_if_needed()
        written.fill(str(manual[WRITTEN]))
        written.press("Tab")  # the formgrader saves a score when its field loses the focus
        deadline = time.monotonic() + 30
        while True:
            with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}", COURSE_ID) as gb:
                if gb.find_submission(ASSIGNMENT, l1.name).score == total:
                    break
            if time.monotonic() > deadline:
                shot(page_i, "FAILED_formgrader_written_answer")
                pytest.fail("the formgrader did not save the written answer's score", pytrace=False)
            time.sleep(0.3)
        shot(page_i, "14_formgrader_written_answer")
    finally:
        context_i.close()

    # lrlab grade wrote feedback already; --force makes it again with the hand-graded score
    instructor_runs(hub, "nbgrader", "generate_feedback", "--force", ASSIGNMENT)
    out = instructor_runs(hub, "nbgrader", "release_feedback", ASSIGNMENT)
    released = sorted(p.name for p in (hub.course / "feedback").rglob("*.html"))
    assert released == [f"{ASSIGNMENT}.html"] * 2, released  # the other assignment's notebook is not graded
    assert len(list((hub.exchange / COURSE_ID / "feedback").glob("*.html"))) == 2, out

    with Gradebook(f"sqlite:///{hub.course / 'gradebook.db'}", COURSE_ID) as gb:
        scores = {s.student_id: (s.score, s.max_score) for s in gb.assignment_submissions(ASSIGNMENT)}
        late = {s.student_id: s.total_seconds_late for s in gb.assignment_submissions(ASSIGNMENT)}
        stamp = gb.find_submission(ASSIGNMENT, l2.name).timestamp
    assert scores[l1.name] == (total, total), f"{scores}\n{graded}"  # every point, the written one by hand
    assert scores[l2.name] == (partial_points, total), f"{scores}\n{graded}"
    assert late[l1.name] == 0 and late[l2.name] > 0, late
    assert stamp.strftime("%Y-%m-%d %H:%M:%S") in newest, (stamp, newest)

    # the learners fetch their feedback in the Assignment List and read their score
    page1 = context1.new_page()
    page1.goto(f"{hub.url}user/{l1.name}/lab")
    header1 = fetch_feedback_in_ui(page1, l1, "15")
    page2 = context2.new_page()
    page2.goto(f"{hub.url}user/{l2.name}/lab")
    header2 = fetch_feedback_in_ui(page2, l2, "16", linked=False)
    context1.close()
    context2.close()
    assert score_of(header1) == (total, total), header1
    assert score_of(header2) == (partial_points, total), header2
    TIMINGS["round_trip_s"] = round(time.monotonic() - started, 2)
