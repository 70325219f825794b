"""Autograding an instructor can trust: sandboxed, parallel, faithful to ``nbgrader autograde``.

How a batch is graded (``lrlab grade ASSIGNMENT``):

1. **Sanitize** (trusted, in this process): each submitted notebook goes through nbgrader's own
   sanitizing preprocessors (clear outputs, de-duplicate ids, restore the kernelspec, restore locked
   and test cells from the gradebook, check the metadata) plus two repairs of lrlab's: nbgrader
   metadata of known cells is rebuilt from the gradebook, and deleted test / read-only cells are put
   back. A learner who edits or deletes a test therefore gets the real test back.
2. **Execute** (untrusted, in parallel): each sanitized notebook runs in a Jupyter kernel started in
   a :mod:`lrlab.sandbox` box (no network, no course files, read-only environment, resource limits).
   The notebook client that talks to the kernel stays outside the box, so the submission can only
   produce cell outputs; it can never touch the notebook it is graded from, the gradebook, or the
   grading process. A kernel that dies, hangs or floods output loses the cells it did not finish.
3. **Score** (trusted, one student after another): nbgrader's own ``Autograde`` converter runs as
   usual, except that its execution step replays the outputs of step 2 (checked cell by cell against
   a fresh sanitize of the same file). So every score is computed by nbgrader's code, and only this
   process writes to the gradebook (SQLite does not like concurrent writers).
4. **Report**: feedback HTML (hidden tests removed, see :mod:`lrlab.feedback`), a grades CSV, and a
   table with a reason for every lost point that the grader, not the learner's answer, caused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import channel_socket_types
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor

from lrlab import sandbox as sb

#: Largest single message the grader accepts from a kernel (a bigger one is dropped by ZeroMQ).
MAX_MESSAGE_BYTES = 32 * sb.MiB
#: Total cell output kept per notebook; the rest is replaced by a note.
MAX_OUTPUT_BYTES = 8 * sb.MiB
#: Longest error message (and traceback line) kept from a kernel.
ERROR_TEXT_CHARS = 10_000


# -- a kernel in a box ---------------------------------------------------------------------------

class BoxKernelClient(AsyncKernelClient):
    """A kernel client that refuses oversized messages, so a kernel cannot flood the grader's memory."""

    def _create_connected_socket(self, channel, identity=None):
        url = self._make_url(channel)
        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if identity:
            sock.identity = identity
        sock.connect(url)
        return sock


class BoxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in a :class:`lrlab.sandbox.Sandbox`.

    The kernel talks over Unix-domain sockets in ``rundir`` (the box has no network, not even the
    host's loopback), is interrupted by a message (signals do not cross into the box's process
    tree), and starts in a private working folder filled from ``copy_from``. Its stderr goes to
    ``log_path`` (outside the box; its size is bounded by the box's file-size limit).
    """

    def __init__(self, *, box: sb.Sandbox, rundir: Path, copy_from: Path | None = None,
                 box_env: dict[str, str] | None = None, log_path: Path | None = None,
                 workdir: str = "work", **kwargs):
        super().__init__(**kwargs)
        self.box = box
        self.rundir = Path(rundir)
        self.copy_from = copy_from
        self.box_env = dict(box_env or {})
        self.log_path = log_path
        self.workdir = workdir
        self.transport = "ipc"
        self.ip = str(self.rundir / "k")
        self.connection_file = str(self.rundir / "kernel.json")
        self.client_factory = BoxKernelClient
        spec = self.kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        self._log_file = None

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        return self.box.wrap(cmd, workdir=self.workdir, copy_from=self.copy_from, writable=[self.rundir],
                             env=self.box_env)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["cwd"] = str(self.rundir)
        kw["stdin"] = None
        if self.log_path is not None:
            self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in cleanup_resources)
            kw["stdout"] = self._log_file
            kw["stderr"] = self._log_file
        await super()._async_launch_kernel(kernel_cmd, **kw)
        # keep the process object: jupyter_client forgets it on shutdown, we still want its status
        self.box_process = getattr(self.provisioner, "process", None)

    box_process = None

    def kill_box(self) -> None:
        """Kill the box and everything in it, now (used by the wall-clock watchdog and at the end)."""
        if self.box_process is not None and self.box_process.poll() is None:
            sb.kill_box(self.box_process)

    def exit_status(self) -> int | None:
        """The box's exit status (negative: killed by that signal), or None while it runs."""
        return self.box_process.poll() if self.box_process is not None else None

    async def cleanup_resources(self, restart=False):
        try:
            await AsyncKernelManager.cleanup_resources(self, restart=restart)
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


# -- executing a notebook in a box ---------------------------------------------------------------

def _cell_label(nb: NotebookNode, index: int) -> str:
    """How a reason names a cell: its nbgrader id when it has one, else its position."""
    cell = nb.cells[index]
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"cell '{grade_id}'" if grade_id else f"cell {index + 1}"


def _output_size(msg: dict) -> int:
    content = msg.get("content", {})
    if "text" in content:
        return len(content["text"])
    size = 0
    for value in content.get("data", {}).values():
        size += len(value) if isinstance(value, str) else len(json.dumps(value))
    if "traceback" in content:
        size += sum(len(line) for line in content["traceback"])
    return size


_SIGNALS = {9: "SIGKILL", 24: "SIGXCPU", 25: "SIGXFSZ", 11: "SIGSEGV", 6: "SIGABRT", 15: "SIGTERM"}


class BoxExecute(Execute):
    """nbgrader's ``Execute`` preprocessor with the kernel in a box, limits, and a graceful end.

    Everything nbgrader configures on ``Execute`` (per-cell ``timeout``, ``interrupt_on_timeout``,
    ``allow_errors``, ``error_on_timeout``, ...) applies unchanged. In addition:

    * ``wall_s`` bounds the whole notebook: past it the box is killed;
    * outputs past ``MAX_OUTPUT_BYTES`` per notebook are dropped (a note says so);
    * when the kernel dies, hangs past its interrupt, or cannot start, the cell that was running and
      every later code cell get an error output naming the reason (so their tests score 0 and no
      later test passes by not running), and the reason is kept in :attr:`problems`.
      :attr:`started` says whether the kernel ever answered (if not, the grader, not the
      submission, failed, and the grader does not score the notebook).

    Set the attributes ``box``, ``rundir`` (a private empty folder), ``copy_from`` (files for the
    working folder), ``box_env`` and ``log_path`` before calling :meth:`preprocess`.
    """

    box: sb.Sandbox | None = None
    rundir: Path | None = None
    copy_from: Path | None = None
    box_env: dict | None = None
    log_path: Path | None = None
    wall_s: float = 600.0

    def create_kernel_manager(self):
        if self.box is None or self.rundir is None:
            raise ValueError("BoxExecute needs .box (a lrlab.sandbox.Sandbox) and .rundir (a private folder)")
        if not self.kernel_name:
            self.kernel_name = self.nb.metadata.get("kernelspec", {}).get("name") or "python3"
        self.km = BoxKernelManager(box=self.box, rundir=self.rundir, copy_from=self.copy_from,
                                   box_env=self.box_env, log_path=self.log_path,
                                   kernel_name=self.kernel_name, config=self.config)
        self._box_km = self.km  # nbclient drops self.km at cleanup; the status is read afterwards
        return self.km

    # nbclient calls this for every output message of the kernel
    def output(self, outs, msg, display_id, cell_index):
        if msg.get("msg_type") == "error":  # errors decide scores: always kept, at a bounded size
            content = msg.get("content", {})
            content["evalue"] = str(content.get("evalue", ""))[:ERROR_TEXT_CHARS]
            content["traceback"] = [str(line)[:ERROR_TEXT_CHARS] for line in content.get("traceback", [])[:200]]
            return super().output(outs, msg, display_id, cell_index)
        size = _output_size(msg)
        self._output_bytes = getattr(self, "_output_bytes", 0) + size
        if self._output_bytes > MAX_OUTPUT_BYTES:
            if not getattr(self, "_output_capped", False):
                self._output_capped = True
                self.problems.append(
                    f"{_cell_label(self.nb, cell_index)} printed more than {MAX_OUTPUT_BYTES // sb.MiB} MB; "
                    "the rest of the notebook's output was dropped"
                )
                outs.append(nbformat.v4.new_output(
                    "stream", name="stderr",
                    text=f"\n... output truncated by the grader (more than {MAX_OUTPUT_BYTES // sb.MiB} MB) ...\n",
                ))
            return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):
        self._cell_timed_out = True  # a later iopub timeout then means: the interrupt did not work
        return await super()._async_handle_timeout(timeout, cell)

    def preprocess_cell(self, cell, resources, index):
        self._cell_timed_out = False
        return super().preprocess_cell(cell, resources, index)

    def _kill_for_wall_time(self) -> None:
        self._wall_killed = True
        if self._box_km is not None:
            self._box_km.kill_box()

    def _why_dead(self) -> str:
        if getattr(self, "_wall_killed", False):
            return f"the notebook ran past the grader's wall-clock limit of {self.wall_s:.0f} s and was stopped"
        code = self._box_km.exit_status() if self._box_km is not None else None
        tail = ""
        if self.log_path is not None and Path(self.log_path).exists():
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, Path(self.log_path).stat().st_size - 2000))
                tail = fh.read().decode("utf-8", "replace")
        if "MemoryError" in tail or code in (-9, 137) and "memory" in tail.lower():
            return "the kernel ran out of memory and died"
        if code is None:
            return "the kernel stopped responding"
        signum = -code if code < 0 else code - 128 if code > 128 else None
        if signum == 24:
            return f"the kernel used up its CPU-time limit ({self.box.limits.cpu_s} s) and was killed"
        if signum in _SIGNALS:
            return f"the kernel was killed by {_SIGNALS[signum]}"
        return f"the kernel exited (status {code}): the code called exit(), os._exit() or crashed"

    def _mark_not_run(self, start: int, reason: str) -> None:
        """Give the interrupted cell and every later code cell an error output."""
        first = True
        for index in range(max(start, 0), len(self.nb.cells)):
            cell = self.nb.cells[index]
            if cell.cell_type != "code":
                continue
            if first:
                evalue = f"{reason} while running this cell."
                first = False
            else:
                evalue = f"not run: {reason} in an earlier cell."
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename="GraderStopped", evalue=evalue, traceback=[f"GraderStopped: {evalue}"],
            ))

    def preprocess(self, nb, resources=None, km=None):
        from nbclient.client import NotebookClient

        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self.problems: list[str] = []
        self._output_bytes = 0
        self._output_capped = False
        self._wall_killed = False
        self._cell_timed_out = False
        self._box_km = None
        self.started = False
        current = -1
        watchdog = threading.Timer(self.wall_s, self._kill_for_wall_time)
        watchdog.daemon = True
        try:
            watchdog.start()
            with self.setup_kernel():
                try:
                    info_msg = self.wait_for_reply(self.kc.kernel_info())
                    self.started = True
                    self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
                    for index, cell in enumerate(self.nb.cells):
                        current = index
                        self.preprocess_cell(cell, resources, index)
                    current = -1
                except CellTimeoutError:
                    self._box_km.kill_box()  # a hung kernel would only delay the shutdown that follows
                    raise
        except DeadKernelError:
            self._record_stop(current, self._why_dead())
        except CellTimeoutError:
            if getattr(self, "_cell_timed_out", False):
                reason = "the kernel ignored the interrupt after the per-cell time limit and was stopped"
            else:
                reason = (f"the kernel's output did not arrive (more than {MAX_MESSAGE_BYTES // sb.MiB} MB at "
                          "once?) and the kernel was stopped")
            self._record_stop(current, reason)
        except Exception as exc:  # the kernel could not start, or the client failed: same outcome
            if current < 0:
                reason = f"the kernel could not start in the sandbox ({type(exc).__name__}: {exc})"
                current = 0
            else:
                reason = self._why_dead() if self._box_km is not None and not self._kernel_alive() else (
                    f"grading stopped ({type(exc).__name__}: {exc})")
            self._record_stop(current, reason)
        finally:
            watchdog.cancel()
            if self._box_km is not None:
                self._box_km.kill_box()
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _kernel_alive(self) -> bool:
        km = self._box_km
        return km is not None and km.box_process is not None and km.exit_status() is None

    def _record_stop(self, current: int, reason: str) -> None:
        where = _cell_label(self.nb, current) if 0 <= current < len(self.nb.cells) else "the notebook"
        self.problems.append(f"{reason} ({where}); later cells were not run")
        self._mark_not_run(current, reason)


# -- sanitizing: nbgrader's steps plus two repairs ------------------------------------------------

def _gradebook_cells(gb, notebook: str, assignment: str) -> dict[str, dict]:
    """What the gradebook knows about every cell of a notebook, by grade id."""
    nb = gb.find_notebook(notebook, assignment)
    cells: dict[str, dict] = {}
    for cell in nb.source_cells:
        cells[cell.name] = {"cell_type": cell.cell_type, "locked": bool(cell.locked), "source": cell.source,
                            "checksum": cell.checksum, "grade": False, "solution": False, "task": False}
    for cell in nb.grade_cells:
        cells.setdefault(cell.name, {}).update(grade=True, points=float(cell.max_score))
    for cell in nb.solution_cells:
        cells.setdefault(cell.name, {}).update(solution=True)
    for cell in nb.task_cells:
        cells.setdefault(cell.name, {}).update(task=True, points=float(cell.max_score))
    return cells


def _expected_metadata(known: dict, grade_id: str) -> dict:
    meta = {"grade": known["grade"], "grade_id": grade_id, "locked": known["locked"], "schema_version": 3,
            "solution": known["solution"], "task": known["task"]}
    if known["grade"] or known["task"]:
        meta["points"] = known["points"]
    return meta


def _release_source(source: str) -> str:
    """What a learner receives of a cell: the source without its hidden test region (as nbgrader releases it)."""
    from lrlab.feedback import BEGIN, END, hidden_regions

    lines = source.split("\n")
    for first, last in reversed(hidden_regions(source, BEGIN, END)):
        del lines[first - 1:last]
    return "\n".join(lines)


def _reasons(resources: dict) -> list[str]:
    return resources.setdefault("lrlab", {}).setdefault("reasons", [])


class RepairGradeMetadata(NbGraderPreprocessor):
    """Make every cell's nbgrader metadata agree with the gradebook before nbgrader sanitizes.

    nbgrader trusts the metadata it finds: a learner who flips ``grade`` to false, renames a test's
    ``grade_id`` or removes it makes ``nbgrader autograde`` skip the test or fail on the notebook.
    Here a cell whose ``grade_id`` the gradebook knows gets the gradebook's flags and points back,
    and a cell whose nbgrader metadata names no known cell becomes an ordinary cell (its code still
    runs). Honest notebooks are left untouched. Runs first in the sanitize chain.
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            known = _gradebook_cells(gb, info["notebook"], info["assignment"])
        reasons = _reasons(resources)
        for index, cell in enumerate(nb.cells):
            meta = cell.get("metadata", {}).get("nbgrader")
            if meta is None:
                continue
            grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
            if isinstance(grade_id, str) and grade_id in known:
                expected = _expected_metadata(known[grade_id], grade_id)
                current = {k: meta.get(k, False if k == "task" else None) for k in expected}
                if isinstance(current.get("points"), int | float) and not isinstance(current["points"], bool):
                    current["points"] = float(current["points"])
                if current != expected:
                    checksum = meta.get("checksum")
                    cell.metadata["nbgrader"] = NotebookNode(expected)
                    if checksum is not None:
                        cell.metadata["nbgrader"]["checksum"] = checksum
                    reasons.append(f"the nbgrader metadata of cell '{grade_id}' was changed; "
                                   "restored from the gradebook")
                info_cell = known[grade_id]
                honest = (info_cell["source"], _release_source(info_cell["source"]))
                if info_cell["locked"] and cell.source not in honest:
                    reasons.append(f"cell '{grade_id}' was edited; the original was restored")
            elif isinstance(meta, dict) and not any(meta.get(k) for k in ("grade", "solution", "locked", "task")):
                continue
            else:
                del cell.metadata["nbgrader"]
                name = f"'{grade_id}'" if isinstance(grade_id, str) else f"{index + 1} (no grade id)"
                reasons.append(f"cell {name} carries nbgrader metadata the gradebook does not know; "
                               "graded as an ordinary cell")
        return nb, resources


def _source_order(path: Path) -> list[str]:
    """grade ids in the order of a (trusted) notebook file, or [] when it cannot be read."""
    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # a missing or unreadable source only costs the placement of restored cells
        return []
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if isinstance(c.get("metadata", {}).get("nbgrader"), dict) and "grade_id" in c.metadata["nbgrader"]]


class RestoreLockedCells(NbGraderPreprocessor):
    """Put back read-only and test cells that a learner deleted, at their place in the source.

    nbgrader (with its default ``add_missing_cells = False``) simply does not grade a deleted test;
    with ``add_missing_cells = True`` it adds it back commented out, which passes. Here the original
    cell comes back, runs and is scored like everyone else's. Answer cells are not restored: a
    deleted answer scores 0 on its tests. Runs right after nbgrader's ``OverwriteCells``.
    """

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook
        from nbgrader.utils import compute_checksum

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            known = _gradebook_cells(gb, info["notebook"], info["assignment"])
        present = {c.metadata["nbgrader"].get("grade_id") for c in nb.cells
                   if isinstance(c.get("metadata", {}).get("nbgrader"), dict)}
        order = _source_order(_source_notebook(self.config, info["assignment"], info["notebook"]))
        reasons = _reasons(resources)
        for grade_id, cell_info in known.items():
            if grade_id in present or "cell_type" not in cell_info:
                continue
            if not cell_info["locked"]:
                reasons.append(f"answer cell '{grade_id}' was deleted; it scores 0")
                continue
            if cell_info["cell_type"] == "code":
                cell = nbformat.v4.new_code_cell(cell_info["source"])
            else:
                cell = nbformat.v4.new_markdown_cell(cell_info["source"])
            cell.metadata["deletable"] = False
            cell.metadata["editable"] = False
            cell.metadata["nbgrader"] = NotebookNode(_expected_metadata(cell_info, grade_id))
            cell.metadata["nbgrader"]["checksum"] = compute_checksum(cell)
            nb.cells.insert(self._position(nb, grade_id, order), cell)
            present.add(grade_id)
            kind = "test" if cell_info["grade"] else "read-only"
            reasons.append(f"{kind} cell '{grade_id}' was deleted; restored from the source and run")
        return nb, resources

    @staticmethod
    def _position(nb, grade_id: str, order: list[str]) -> int:
        if grade_id not in order:
            return len(nb.cells)
        before = order[: order.index(grade_id)]
        for index in range(len(nb.cells) - 1, -1, -1):
            meta = nb.cells[index].get("metadata", {}).get("nbgrader")
            if isinstance(meta, dict) and meta.get("grade_id") in before:
                return index + 1
        return 0


def sanitize_chain(config) -> list[type]:
    """The preprocessors that sanitize a submission: nbgrader's (as configured for ``Autograde``)
    with :class:`RepairGradeMetadata` first and :class:`RestoreLockedCells` after ``OverwriteCells``."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import OverwriteCells
    from traitlets.utils.importstring import import_item

    configured = config.Autograde.get("sanitize_preprocessors") if "Autograde" in config else None
    chain = list(configured) if configured else list(Autograde.class_traits()["sanitize_preprocessors"].default())
    chain = [import_item(c) if isinstance(c, str) else c for c in chain]
    chain = [c for c in chain if c not in (RepairGradeMetadata, RestoreLockedCells)]
    out: list[type] = [RepairGradeMetadata]
    for cls in chain:
        out.append(cls)
        if issubclass(cls, OverwriteCells):
            out.append(RestoreLockedCells)
    if RestoreLockedCells not in out:
        out.append(RestoreLockedCells)
    return out


# -- the course and its submissions --------------------------------------------------------------

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
#: Largest submission folder staged for grading (notebooks plus data files), and largest zip accepted.
MAX_SUBMISSION_BYTES = 200 * sb.MiB


class GradingError(Exception):
    """A problem the instructor can fix (bad input, missing course files); printed without traceback."""


def load_config(root: Path):
    """The course's nbgrader configuration (``root/nbgrader_config.py``) as a traitlets ``Config``."""
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    if not (root / "nbgrader_config.py").is_file():
        raise GradingError(f"{root} has no nbgrader_config.py; run grading from the course folder or pass --root")
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    config.CourseDirectory.root = str(root)
    return config


def _coursedir(config):
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(config=config)


def _notebook_names(db_url: str, assignment: str) -> list[str]:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            return sorted(nb.name for nb in gb.find_assignment(assignment).notebooks)
        except MissingEntry:
            return []


def ensure_in_gradebook(config, assignment: str, log=None) -> list[str]:
    """Make sure the gradebook knows ``assignment`` (its cells, points, checksums) and return its notebooks.

    The gradebook (``gradebook.db``) is not under version control, so on a fresh clone it is empty;
    nbgrader's ``generate_assignment`` records an assignment in it. When the assignment is missing
    it is generated into a throwaway folder, so ``release/`` is not touched.
    """
    import tempfile

    from nbgrader.converters import GenerateAssignment
    from traitlets.config import Config

    coursedir = _coursedir(config)
    names = _notebook_names(coursedir.db_url, assignment)
    if names:
        return names
    source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
    if not source.is_dir():
        raise GradingError(f"assignment {assignment!r} is neither in the gradebook nor in {source}")
    with tempfile.TemporaryDirectory(prefix="lrlab-release-") as tmp:
        cfg = Config(config)
        cfg.merge(Config({"CourseDirectory": {"release_directory": tmp, "assignment_id": assignment},
                          "GenerateAssignment": {"force": True, "create_assignment": True}}))
        converter = GenerateAssignment(coursedir=_coursedir(cfg), config=cfg, **({"log": log} if log else {}))
        converter.start()
    names = _notebook_names(coursedir.db_url, assignment)
    if not names:
        raise GradingError(f"nbgrader could not record assignment {assignment!r} in the gradebook")
    return names


@dataclass
class Submission:
    """One learner's submission, staged for grading.

    Attributes:
        student: the student id.
        folder: the staged copy (``<staging>/submitted/<student>/<assignment>``), or None when missing.
        reasons: problems found while staging (an invalid notebook, a skipped file, ...).
    """

    student: str
    folder: Path | None
    reasons: list[str] = field(default_factory=list)


def _flat_pattern(assignment: str, notebooks: list[str]) -> re.Pattern:
    names = "|".join(re.escape(n) for n in sorted(notebooks, key=len, reverse=True))
    return re.compile(rf"^(?P<student>.+?)_{re.escape(assignment)}(?:_(?P<notebook>{names}))?\.ipynb$")


def _safe_extract(zip_path: Path, dest: Path) -> None:
    """Extract an LMS export without trusting it: no absolute paths or '..', no links, bounded size."""
    import zipfile

    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise GradingError(f"{zip_path} is not a readable zip file ({exc})") from exc
    with archive:
        total = 0
        for info in archive.infolist():
            parts = Path(info.filename).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts or not parts:
                raise GradingError(f"{zip_path} contains an unsafe path {info.filename!r}; refusing to extract it")
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                continue  # a symbolic link: skipped
            total += info.file_size
            if total > MAX_SUBMISSION_BYTES * 10:
                raise GradingError(f"{zip_path} unpacks to more than {MAX_SUBMISSION_BYTES * 10 // sb.MiB} MB")
            if info.is_dir():
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)


def _check_notebook(path: Path) -> str | None:
    """Why a submitted notebook cannot be graded (not JSON, not a notebook), or None when it can."""
    try:
        with open(path, encoding="utf-8") as fh:
            nbformat.read(fh, as_version=4)
    except Exception as exc:  # json, nbformat and unicode errors all mean the same for grading
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"{path.name} is not a valid notebook ({detail}); it scores 0"
    return None


def _copy_regular_files(src: Path, dest: Path, ignore: list[str]) -> list[str]:
    """Copy regular files only (no links, devices or fifos), within MAX_SUBMISSION_BYTES; return skips."""
    from nbgrader.utils import is_ignored

    skipped, total = [], 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel_dir = Path(dirpath).relative_to(src)
        dirnames[:] = [d for d in dirnames if not is_ignored(os.path.join(dirpath, d), ignore)
                       and not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            path = Path(dirpath) / name
            if is_ignored(str(path), ignore):
                continue
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                skipped.append(f"{rel_dir / name} (not a regular file)")
                continue
            total += st.st_size
            if total > MAX_SUBMISSION_BYTES:
                skipped.append(f"{rel_dir / name} (submission larger than {MAX_SUBMISSION_BYTES // sb.MiB} MB)")
                continue
            (dest / rel_dir).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel_dir / name)
    return skipped


def stage_submissions(config, assignment: str, notebooks: list[str], source: Path | None,
                      staging: Path) -> tuple[Path, list[Submission], list[str]]:
    """Copy every submission of ``assignment`` into ``staging/submitted/<student>/<assignment>/``.

    ``source`` may be (a) a folder in nbgrader's layout, ``<student>/<assignment>/*.ipynb`` (default:
    the course's ``submitted/``), (b) a folder of files named ``<student>_<assignment>.ipynb`` (or
    ``<student>_<assignment>_<notebook>.ipynb`` for assignments with several notebooks), or (c) a
    zip of either, as a learning-management system exports it. Only regular files are copied (a
    submitted symbolic link could otherwise make the grader copy a file of the instructor's), and
    a notebook that is not valid JSON is left out, so nbgrader grades it as missing (0 points).

    Returns the staged ``submitted`` folder, the submissions (students of the gradebook without
    one are listed with ``folder=None``) and notes about files that were skipped.
    """
    from nbgrader.api import Gradebook

    coursedir = _coursedir(config)
    if source is None:
        source = Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()
    source = Path(source).resolve()
    if not source.exists():
        raise GradingError(f"no submissions at {source}; pass --submissions with a folder or a zip")
    staged_root = staging / "submitted"
    staged_root.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if source.is_file():
        if source.suffix.lower() != ".zip":
            raise GradingError(f"--submissions {source} must be a folder or a .zip file")
        unpacked = staging / "unzipped"
        unpacked.mkdir()
        _safe_extract(source, unpacked)
        entries = [p for p in unpacked.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        source = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked

    found: dict[str, Path] = {}
    # (a) nbgrader layout
    for student_dir in sorted(p for p in source.iterdir() if p.is_dir() and not p.is_symlink()):
        folder = student_dir / assignment
        if folder.is_dir() and not folder.is_symlink():
            if not STUDENT_ID.match(student_dir.name):
                notes.append(f"skipped {student_dir.name}/: not a usable student id")
                continue
            found[student_dir.name] = folder
    # (b) flat files
    pattern = _flat_pattern(assignment, notebooks)
    flat: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(p for p in source.iterdir() if not p.is_dir() and not p.name.startswith(".")):
        if path.suffix != ".ipynb":
            notes.append(f"skipped {path.name}: not a notebook")
            continue
        m = pattern.match(path.name)
        if not m or path.is_symlink():
            notes.append(f"skipped {path.name}: not named <student>_{assignment}.ipynb")
            continue
        student = m.group("student")
        if not STUDENT_ID.match(student):
            notes.append(f"skipped {path.name}: {student!r} is not a usable student id")
            continue
        notebook = m.group("notebook")
        if notebook is None:
            if len(notebooks) != 1:
                notes.append(f"skipped {path.name}: {assignment} has several notebooks; name the file "
                             f"<student>_{assignment}_<notebook>.ipynb")
                continue
            notebook = notebooks[0]
        flat.setdefault(student, []).append((notebook, path))

    submissions: dict[str, Submission] = {}
    for student, folder in found.items():
        dest = staged_root / student / assignment
        dest.mkdir(parents=True)
        skipped = _copy_regular_files(folder, dest, list(coursedir.ignore))
        submissions[student] = Submission(student, dest, [f"skipped {s}" for s in skipped])
    for student, files in flat.items():
        if student in submissions:
            notes.append(f"{student}: both a folder and flat files were found; graded the folder")
            continue
        dest = staged_root / student / assignment
        dest.mkdir(parents=True)
        for notebook, path in files:
            shutil.copyfile(path, dest / f"{notebook}.ipynb")
        submissions[student] = Submission(student, dest)
    for sub in submissions.values():
        for name in notebooks:
            path = sub.folder / f"{name}.ipynb"
            if not path.exists():
                sub.reasons.append(f"{name}.ipynb is missing from the submission; it scores 0")
                continue
            problem = _check_notebook(path)
            if problem:
                sub.reasons.append(problem)
                path.unlink()  # nbgrader grades a missing notebook as 0
    with Gradebook(coursedir.db_url) as gb:
        roster = [s.id for s in gb.students]
    for student in roster:
        if student not in submissions:
            submissions[student] = Submission(student, None, ["no submission found"])
    return staged_root, [submissions[s] for s in sorted(submissions)], notes


# -- phase 1: sanitize (trusted) -----------------------------------------------------------------

class _Collect(logging.Handler):
    """Turns nbgrader's warnings about a submission into reasons a person can read."""

    PATTERNS = (
        (re.compile(r"Attribute 'points' for cell (\S+) has changed"),
         "the points of cell '{0}' were changed; restored"),
        (re.compile(r"Attribute 'locked' for cell (\S+) has changed"), "cell '{0}' was unlocked; restored"),
        (re.compile(r"Attribute 'cell_type' for cell (\S+) has changed"),
         "the type of cell '{0}' was changed; restored"),
        (re.compile(r"Cell with id '(\S+)' exists multiple times"),
         "cell '{0}' appears more than once; only its last copy is graded"),
    )

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.reasons: list[str] = []
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for pattern, text in self.PATTERNS:
            m = pattern.search(message)
            if m:
                reason = text.format(m.group(1))
                if reason not in self.reasons:
                    self.reasons.append(reason)
                return
        if record.levelno >= logging.ERROR:
            self.errors.append(message)


def _collecting_logger(name: str) -> tuple[logging.Logger, _Collect]:
    logger = logging.getLogger(f"lrlab.grading.{name}")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.WARNING)
    handler = _Collect()
    logger.addHandler(handler)
    return logger, handler


def _source_notebook(config, assignment: str, notebook: str) -> Path:
    coursedir = _coursedir(config)
    return Path(coursedir.format_path(coursedir.source_directory, ".", assignment)) / f"{notebook}.ipynb"


def signature(nb: NotebookNode) -> str:
    """What execution depends on: the kernel and every cell's type, source and nbgrader metadata."""
    cells = [(c.cell_type, c.source, c.get("metadata", {}).get("nbgrader")) for c in nb.cells]
    kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
    return json.dumps([kernel, cells], sort_keys=True, default=str)


def sanitize(config, path: Path, student: str, assignment: str, notebook: str) -> tuple[NotebookNode, list[str]]:
    """Run the sanitize chain (:func:`sanitize_chain`) on one submitted notebook, the way nbgrader's
    ``Autograde`` does before it executes, and return the notebook and the reasons it logged.

    Raises whatever nbgrader raises for a notebook it cannot grade (e.g. broken metadata)."""
    coursedir = _coursedir(config)
    logger, collect = _collecting_logger(f"{student}.{notebook}")
    resources = {
        "unique_key": notebook, "output_files_dir": f"{notebook}_files",
        "nbgrader": {"student": student, "assignment": assignment, "notebook": notebook,
                     "db_url": coursedir.db_url},
        "metadata": {"path": str(path.parent), "name": notebook},
    }
    with open(path, encoding="utf-8") as fh:
        nb = nbformat.read(fh, as_version=4)
    for cls in sanitize_chain(config):
        pre = cls(config=config, log=logger)
        nb, resources = pre(nb, resources)
    # nbgrader writes the sanitized notebook and reads it back before executing it
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)
    return nb, _reasons(resources) + collect.reasons


def _working_files(config, assignment: str, submitted: Path, dest: Path) -> None:
    """The files a kernel finds in its working folder, as in nbgrader's autograded folder: the
    submission's non-notebook files, then the source's (which win), minus ``exclude_overwriting``."""
    coursedir = _coursedir(config)
    ignore = [*coursedir.ignore, "*.ipynb"]
    dest.mkdir(parents=True, exist_ok=True)
    _copy_regular_files(submitted, dest, ignore)
    source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment))
    excluded = set(config.Autograde.get("exclude_overwriting", {}).get(assignment, [])) \
        if "Autograde" in config else set()
    if source.is_dir():
        from nbgrader.utils import find_all_files

        for filename in find_all_files(str(source), ignore):
            rel = os.path.relpath(filename, source)
            if rel in excluded:
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                target.unlink()
            shutil.copyfile(filename, target)


@dataclass
class Job:
    """One notebook of one learner, sanitized and ready to run in a box."""

    student: str
    notebook: str
    nb: NotebookNode
    files: Path
    rundir: Path
    executed: NotebookNode | None = None
    problems: list[str] = field(default_factory=list)
    started: bool = False
    seconds: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.student, self.notebook)


# -- phase 2: execute (untrusted code, in boxes, in parallel) -------------------------------------

_ACTIVE: set[BoxExecute] = set()
_ACTIVE_LOCK = threading.Lock()


def kill_all_boxes() -> None:
    """Kill every box this process is running (on Ctrl-C)."""
    with _ACTIVE_LOCK:
        for executor in list(_ACTIVE):
            if executor._box_km is not None:
                executor._box_km.kill_box()


def execute_in_box(config, nb: NotebookNode, *, box: sb.Sandbox, files: Path, rundir: Path,
                   wall_s: float) -> tuple[NotebookNode, list[str], bool]:
    """Execute ``nb`` (a copy is made) with its kernel in ``box``; return the executed notebook, the
    problems the grader ran into (a dead or hung kernel, truncated output) and whether the kernel started."""
    import copy

    rundir.mkdir(parents=True, exist_ok=True)
    log_dir = rundir.parent / f"{rundir.name}.log"
    log_dir.mkdir(exist_ok=True)
    executor = BoxExecute(config=config)
    executor.box = box
    executor.rundir = rundir
    executor.copy_from = files
    executor.box_env = {"NBGRADER_EXECUTION": "autograde"}
    executor.log_path = log_dir / "kernel.log"
    executor.wall_s = wall_s
    with _ACTIVE_LOCK:
        _ACTIVE.add(executor)
    try:
        executed, _ = executor.preprocess(copy.deepcopy(nb), {"metadata": {"path": str(files)}})
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(executor)
        shutil.rmtree(rundir, ignore_errors=True)
        _close_thread_loop()
    return executed, list(executor.problems), executor.started


def _close_thread_loop() -> None:
    """Close the event loop nbclient made for this thread (a new one is made when needed again)."""
    import asyncio
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            return
    if not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


def _run_jobs(config, jobs: list[Job], box: sb.Sandbox, wall_s: float) -> list[Job]:
    for job in jobs:
        start = time.monotonic()
        job.executed, job.problems, job.started = execute_in_box(config, job.nb, box=box, files=job.files,
                                                                 rundir=job.rundir, wall_s=wall_s)
        job.seconds = time.monotonic() - start
    return jobs


# -- phase 3: score with nbgrader (trusted, sequential) ------------------------------------------

class ReplayExecute(NbGraderPreprocessor):
    """Stands in for nbgrader's ``Execute`` in ``Autograde``: hands back the notebook executed in a
    box, after checking that it was executed from exactly this sanitized notebook. If it was not
    (which would be a bug), the notebook is executed again, in a box, right here."""

    jobs: dict = {}
    box: sb.Sandbox | None = None
    wall_s: float = 600.0
    replayed: list = []
    rerun: list = []

    def preprocess(self, nb, resources):
        import copy

        info = resources["nbgrader"]
        job = self.jobs.get((info["student"], info["notebook"]))
        if job is not None and job.executed is not None and signature(job.nb) == signature(nb):
            self.replayed.append(job.key)
            return copy.deepcopy(job.executed), resources
        self.log.warning("Executing %s/%s again: no matching run in the box", info["student"], info["notebook"])
        self.rerun.append((info["student"], info["notebook"]))
        tmp = Path(tempfile.mkdtemp(prefix="lrlab-rerun-"))
        try:
            files = tmp / "files"
            files.mkdir()
            _working_files(self.config, info["assignment"], Path(resources["metadata"]["path"]), files)
            executed, problems, _ = execute_in_box(self.config, nb, box=self.box, files=files,
                                                   rundir=tmp / "r", wall_s=self.wall_s)
            if job is not None:
                job.problems = problems
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return executed, resources


def _autograde_config(config, assignment: str, student: str, staged_root: Path, replay: type):
    """The course config, changed so that nbgrader's Autograde grades one staged student with replay."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute as NbExecute
    from traitlets.config import Config
    from traitlets.utils.importstring import import_item

    configured = config.Autograde.get("autograde_preprocessors") if "Autograde" in config else None
    steps = list(configured) if configured else list(Autograde.class_traits()["autograde_preprocessors"].default())
    steps = [import_item(s) if isinstance(s, str) else s for s in steps]
    steps = [replay if isinstance(s, type) and issubclass(s, NbExecute) else s for s in steps]
    cfg = Config(config)
    cfg.merge(Config({
        "CourseDirectory": {"submitted_directory": str(staged_root), "assignment_id": assignment,
                            "student_id": student, "notebook_id": "*"},
        "Autograde": {"force": True, "create_student": True, "sanitize_preprocessors": sanitize_chain(config),
                      "autograde_preprocessors": steps},
    }))
    return cfg


def zero_submission(db_url: str, assignment: str, student: str) -> None:
    """Record a submission whose notebooks are all missing or unreadable: every autograded cell 0.

    nbgrader does the same for a missing notebook of a submission it grades, but refuses to grade a
    submission with no notebook at all; this gives that learner the same result."""
    from nbgrader.api import Gradebook

    with Gradebook(db_url) as gb, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="nbgrader.api")
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                grade.auto_score = 0
                grade.needs_manual_grade = False
        gb.db.commit()


def autograde_student(config, assignment: str, student: str, staged_root: Path, replay: type) -> list[str]:
    """Run nbgrader's own ``Autograde`` for one student (execution replayed); return its errors."""
    from nbgrader.converters import Autograde

    cfg = _autograde_config(config, assignment, student, staged_root, replay)
    logger, collect = _collecting_logger(f"autograde.{student}")
    converter = Autograde(coursedir=_coursedir(cfg), config=cfg, log=logger)
    try:
        with warnings.catch_warnings():
            # nbgrader's gradebook code triggers SQLAlchemy "not in session" warnings on every run
            warnings.filterwarnings("ignore", module="nbgrader.api")
            converter.start()
    except Exception as exc:  # nbgrader reports per-student failures by raising at the end
        errors = [e for e in collect.errors if not e.startswith(("There was an error", "Please see"))]
        return errors[-1:] or [str(exc)]
    return []


def diagnose(nb: NotebookNode, limits: sb.Limits) -> tuple[list[str], list[str]]:
    """Read a graded notebook: (reasons, hidden_failures).

    reasons: cells that hit a limit of the grader (per-cell time limit, memory), in words;
    hidden_failures: test cells whose visible tests pass but a hidden test fails (often a
    hard-coded answer), as grade ids.
    """
    from lrlab.feedback import failing_line, hidden_regions

    reasons, hidden = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        names = {o.get("ename") for o in cell.get("outputs", []) if o.get("output_type") == "error"}
        label = _cell_label(nb, index)
        if "CellTimeoutError" in names:
            reasons.append(f"{label} ran past the per-cell time limit and was interrupted")
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            text = f"{output.get('ename')}: {output.get('evalue')}"
            if output.get("ename") == "MemoryError" or "can't allocate memory" in text:
                gb = limits.memory_bytes / sb.GiB
                reasons.append(f"{label} ran out of memory (the sandbox allows {gb:g} GB per process)")
                break
        meta = cell.get("metadata", {}).get("nbgrader", {})
        regions = hidden_regions(cell.source)
        if meta.get("grade") and regions and names and not names & {"GraderStopped", "CellTimeoutError"}:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    line = failing_line(output.get("traceback", []), cell.get("execution_count"))
                    if line is not None and any(a <= line <= b for a, b in regions):
                        hidden.append(meta.get("grade_id", label))
                    break
    return reasons, hidden


# -- phase 4: feedback, grades CSV, the report ---------------------------------------------------

def feedback_config(config, assignment: str, student: str):
    """The course config for nbgrader's GenerateFeedback, with lrlab's HideHiddenTests guaranteed."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.preprocessors import ClearHiddenTests, GetGrades
    from traitlets.config import Config
    from traitlets.utils.importstring import import_item

    from lrlab.feedback import HideHiddenTests

    configured = config.GenerateFeedback.get("preprocessors") if "GenerateFeedback" in config else None
    steps = list(configured) if configured else list(GenerateFeedback.class_traits()["preprocessors"].default())
    steps = [import_item(s) if isinstance(s, str) else s for s in steps]
    steps = [s for s in steps if not (isinstance(s, type) and issubclass(s, ClearHiddenTests | HideHiddenTests))]
    at = next((i + 1 for i, s in enumerate(steps) if isinstance(s, type) and issubclass(s, GetGrades)), 0)
    steps.insert(at, HideHiddenTests)
    cfg = Config(config)
    cfg.merge(Config({
        "CourseDirectory": {"assignment_id": assignment, "student_id": student, "notebook_id": "*"},
        "GenerateFeedback": {"force": True, "preprocessors": steps},
    }))
    return cfg


class FeedbackWriter:
    """nbgrader's GenerateFeedback for one student at a time, with hidden tests removed.

    One HTML exporter serves every student: nbgrader would build (and compile the templates of) a
    new one per run, which costs more than rendering a notebook."""

    def __init__(self, config, assignment: str) -> None:
        from nbconvert.writers import FilesWriter
        from nbgrader.converters import GenerateFeedback

        self.assignment = assignment
        self.config = feedback_config(config, assignment, "*")
        logger, self.collect = _collecting_logger(f"feedback.{assignment}")

        class _Feedback(GenerateFeedback):
            exporter_cache = None

            def start(self) -> None:
                self.init_notebooks()
                self.writer = FilesWriter(parent=self, config=self.config)
                if self.exporter_cache is None:
                    self.exporter_cache = self.exporter_class(parent=self, config=self.config)
                    for pre in self.preprocessors:
                        self.exporter_cache.register_preprocessor(pre)
                self.exporter = self.exporter_cache
                cwd = os.getcwd()
                os.chdir(self.coursedir.root)
                try:
                    self.convert_notebooks()
                finally:
                    os.chdir(cwd)

        self.coursedir = _coursedir(self.config)
        self.converter = _Feedback(coursedir=self.coursedir, config=self.config, log=logger)

    def write(self, student: str) -> list[Path]:
        """Generate (again) the feedback of ``student``; return the HTML files."""
        self.coursedir.student_id = student
        self.converter.start()
        folder = Path(self.coursedir.format_path(self.coursedir.feedback_directory, student, self.assignment))
        return sorted(folder.glob("*.html"))


def generate_feedback(config, assignment: str, student: str) -> list[Path]:
    """nbgrader's GenerateFeedback for one student (hidden tests removed); return the HTML files."""
    return FeedbackWriter(config, assignment).write(student)


@dataclass
class StudentResult:
    """How one learner's submission was graded.

    Attributes:
        student: the student id.
        status: ``graded``; ``problems`` (graded, but the grader had to step in: see reasons);
            ``missing`` (no submission); ``error`` (nbgrader could not grade it at all).
        score, max_score: total points and maximum from the gradebook (manual points included).
        needs_manual: some answers still wait for a person to grade them.
        reasons: every intervention of the grader, in words (an edited test restored, a kernel
            that died, a notebook that was not JSON, a cell past a limit, ...).
        hidden_failures: test cells whose visible tests pass and a hidden test fails (typical of
            answers hard-coded to the visible examples).
        seconds: time spent executing in the box.
        feedback: the feedback HTML files.
    """

    student: str
    status: str
    score: float = 0.0
    max_score: float = 0.0
    needs_manual: bool = False
    reasons: list[str] = field(default_factory=list)
    hidden_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    feedback: list[Path] = field(default_factory=list)


@dataclass
class GradeReport:
    """The outcome of :func:`grade`: one :class:`StudentResult` per learner, plus notes."""

    assignment: str
    results: list[StudentResult]
    notes: list[str] = field(default_factory=list)
    csv_path: Path | None = None
    sandboxed: bool = True
    seconds: float = 0.0
    reexecuted: list[tuple[str, str]] = field(default_factory=list)

    def by_student(self) -> dict[str, StudentResult]:
        return {r.student: r for r in self.results}

    def table(self) -> str:
        rows = [("student", "score", "status", "reasons")]
        for r in self.results:
            notes = r.reasons + [f"hidden tests fail in '{g}'" for g in r.hidden_failures]
            reason = notes[0] if notes else ""
            if len(notes) > 1:
                reason += f" (+{len(notes) - 1} more)"
            manual = " +manual" if r.needs_manual else ""
            rows.append((r.student, f"{r.score:g}/{r.max_score:g}{manual}", r.status, reason))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 7)
        return "\n".join(line.rstrip() for line in lines)

    def summary(self) -> str:
        graded = [r for r in self.results if r.status in ("graded", "problems")]
        mean = sum(r.score for r in graded) / len(graded) if graded else 0.0
        top = max((r.max_score for r in graded), default=0.0)
        counts = {s: sum(r.status == s for r in self.results) for s in ("graded", "problems", "missing", "error")}
        lines = [
            f"{self.assignment}: {len(self.results)} students ({counts['graded']} graded, {counts['problems']} "
            f"graded with problems, {counts['missing']} missing, {counts['error']} not gradable)",
            f"mean score of graded submissions: {mean:.2f} / {top:g}",
            f"{'sandboxed' if self.sandboxed else 'NOT sandboxed (--unsafe)'}, {self.seconds:.1f} s",
        ]
        troubled = [r for r in self.results if r.reasons]
        if troubled:
            lines.append("problems:")
            for r in troubled:
                for reason in r.reasons:
                    lines.append(f"  {r.student}: {reason}")
        hidden = [r for r in self.results if r.hidden_failures]
        if hidden:
            lines.append("visible tests pass but hidden tests fail (hard-coded answers?):")
            for r in hidden:
                lines.append(f"  {r.student}: {', '.join(r.hidden_failures)}")
        lines += [f"note: {n}" for n in self.notes]
        if self.csv_path:
            lines.append(f"grades written to {self.csv_path}")
        return "\n".join(lines)


def write_csv(report: GradeReport, path: Path) -> Path:
    """Write one row per student: id, assignment, score, max score, manual grading pending, status, reasons."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student_id", "assignment", "score", "max_score", "needs_manual_grade", "status", "reasons",
                         "hidden_test_failures"])
        for r in report.results:
            writer.writerow([r.student, report.assignment, f"{r.score:g}", f"{r.max_score:g}", r.needs_manual,
                             r.status, "; ".join(r.reasons), " ".join(r.hidden_failures)])
    return path


def _gradebook_score(db_url: str, assignment: str, student: str) -> tuple[float, float, bool]:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url) as gb:
        try:
            sub = gb.find_submission(assignment, student)
        except MissingEntry:
            return 0.0, float(gb.find_assignment(assignment).max_score), False
        return float(sub.score), float(sub.max_score), bool(sub.needs_manual_grade)


def default_jobs() -> int:
    """One job per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def grade(assignment: str, *, root: Path | None = None, submissions: Path | None = None, jobs: int | None = None,
          unsafe: bool = False, limits: sb.Limits | None = None, feedback: bool = True,
          csv_path: Path | None = None, progress=None) -> GradeReport:
    """Grade every submission of ``assignment``: sandboxed, in parallel, scored by nbgrader.

    Args:
        assignment: the assignment name (a folder of ``source/``).
        root: the course folder (holding ``nbgrader_config.py``); default: found from the current folder.
        submissions: where the submissions are (see :func:`stage_submissions`); default ``submitted/``.
        jobs: notebooks executed at the same time (default: the number of CPU cores).
        unsafe: run without a sandbox (only the resource limits apply). Without it, grading refuses
            to start where no sandbox can be made (:class:`lrlab.sandbox.SandboxUnavailable`).
        limits: resource limits per notebook (:class:`lrlab.sandbox.Limits`; ``wall_s`` bounds a notebook).
        feedback: also generate feedback HTML (``feedback/<student>/<assignment>/``).
        csv_path: where to write the grades CSV (default ``<root>/grades/<assignment>.csv``).
        progress: called with a line of text as students finish (e.g. ``print``); None for silence.

    Returns:
        A :class:`GradeReport`. Scores are in the gradebook (``db_url`` of ``nbgrader_config.py``).
    """
    from concurrent.futures import ThreadPoolExecutor, as_completed

    if not isinstance(assignment, str) or not assignment or "/" in assignment or assignment.startswith("."):
        raise ValueError(f"assignment must be the name of a folder in source/, got {assignment!r}")
    if jobs is None:
        jobs = default_jobs()
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    limits = limits if limits is not None else sb.Limits()
    if not isinstance(limits, sb.Limits):
        raise ValueError(f"limits must be a lrlab.sandbox.Limits, got {type(limits).__name__}")
    if root is None:
        from lrlab.course import find_root

        root = find_root()
    root = Path(root).resolve()
    config = load_config(root)
    if not unsafe:
        sb.require_sandbox()
    say = progress or (lambda line: None)
    start = time.monotonic()
    notebooks = ensure_in_gradebook(config, assignment)
    coursedir = _coursedir(config)
    db_url = coursedir.db_url

    with tempfile.TemporaryDirectory(prefix="lrlab-grade-") as tmp:
        workspace = Path(tmp)
        hidden = (root, Path.home().resolve(), workspace)
        seed = sb.matplotlib_cache_seed(workspace / "home")
        box = sb.Sandbox(limits=limits, hidden=hidden, unsafe=unsafe, home_from=seed)
        staged_root, subs, notes = stage_submissions(config, assignment, notebooks, submissions, workspace)
        results: dict[str, StudentResult] = {}
        student_jobs: dict[str, list[Job]] = {}
        all_jobs: dict[tuple[str, str], Job] = {}
        replay = type("BatchReplay", (ReplayExecute,), {
            "jobs": all_jobs, "box": box, "wall_s": limits.wall_s, "replayed": [], "rerun": []})

        def finish(student: str) -> None:
            result = results[student]
            for job in student_jobs[student]:
                result.seconds += job.seconds
            broken = [job for job in student_jobs[student] if not job.started]
            if broken:  # the grader failed, not the learner: leave the gradebook as it was
                result.status = "error"
                result.reasons += [p for job in broken for p in job.problems]
                result.reasons.append("not scored: no kernel could be started for it (the gradebook is unchanged)")
                say(f"{student}: not graded ({result.reasons[-2] if len(result.reasons) > 1 else ''})")
                return
            if student_jobs[student]:
                errors = autograde_student(config, assignment, student, staged_root, replay)
            else:  # no notebook of the submission can be graded
                zero_submission(db_url, assignment, student)
                errors = []
            for job in student_jobs[student]:
                result.reasons += [p for p in job.problems if p not in result.reasons]
                graded = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
                graded = graded / f"{job.notebook}.ipynb"
                if graded.exists():
                    more, hidden = diagnose(nbformat.read(str(graded), as_version=4), limits)
                    result.reasons += [m for m in more if m not in result.reasons]
                    result.hidden_failures += hidden
            if errors:
                result.status = "error"
                result.reasons.append(f"nbgrader could not grade it: {errors[0]}")
            elif result.reasons:
                result.status = "problems"
            result.score, result.max_score, result.needs_manual = _gradebook_score(db_url, assignment, student)
            if feedback and result.status != "error":
                try:
                    result.feedback = feedback_writer.write(student)
                except Exception as exc:  # feedback is a courtesy; the grade stands without it
                    result.reasons.append(f"feedback could not be generated ({type(exc).__name__}: {exc})")
            say(f"{student}: {result.score:g}/{result.max_score:g} {result.status}"
                + (f" ({result.reasons[0]})" if result.reasons else ""))

        feedback_writer = FeedbackWriter(config, assignment) if feedback else None

        # phase 1 (sanitize, this thread) feeds phase 2 (execute in boxes, `jobs` at a time), which
        # feeds phase 3 (score and feedback, this thread, one student at a time)
        pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="lrlab-grade")
        futures = {}
        try:
            for number, sub in enumerate(subs):
                if sub.folder is None:
                    results[sub.student] = StudentResult(sub.student, "missing", reasons=list(sub.reasons))
                    continue
                result = results[sub.student] = StudentResult(sub.student, "graded", reasons=list(sub.reasons))
                files = workspace / f"f{number}"
                _working_files(config, assignment, sub.folder, files)
                student_jobs[sub.student] = []
                for k, name in enumerate(notebooks):
                    path = sub.folder / f"{name}.ipynb"
                    if not path.exists():
                        continue
                    try:
                        nb, reasons = sanitize(config, path, sub.student, assignment, name)
                    except Exception as exc:  # nbgrader refuses the notebook: grade it as missing
                        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                        result.reasons.append(f"{name}.ipynb cannot be graded ({detail}); it scores 0")
                        path.unlink()
                        continue
                    result.reasons += [r for r in reasons if r not in result.reasons]
                    job = Job(sub.student, name, nb, files, workspace / f"r{number}-{k}")
                    student_jobs[sub.student].append(job)
                    all_jobs[job.key] = job
                futures[pool.submit(_run_jobs, config, student_jobs[sub.student], box, limits.wall_s)] = sub.student
            for future in as_completed(futures):
                student = futures[future]
                try:
                    future.result()
                except Exception as exc:  # a bug in the grader must not take the batch down
                    results[student].reasons.append(
                        f"execution failed in the grader ({type(exc).__name__}: {exc})")
                finish(student)
        except BaseException:
            kill_all_boxes()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    report = GradeReport(assignment, [results[s] for s in sorted(results)], notes=notes, sandboxed=not unsafe,
                         seconds=time.monotonic() - start, reexecuted=list(replay.rerun) if student_jobs else [])
    report.csv_path = write_csv(report, Path(csv_path) if csv_path else root / "grades" / f"{assignment}.csv")
    return report


# -- the command line ----------------------------------------------------------------------------

def add_grade_command(subparsers) -> None:
    """Add ``lrlab grade`` to the ``lrlab`` command line (``subparsers`` from argparse)."""
    p = subparsers.add_parser(
        "grade", help="autograde all submissions of an assignment: sandboxed, in parallel",
        description="Autograde every submission of ASSIGNMENT with nbgrader, each learner's code in an OS "
        "sandbox (bubblewrap), several learners at once; write scores to the gradebook, feedback HTML "
        "without hidden tests to feedback/, and a grades CSV; print a table and a summary.")
    p.add_argument("assignment", metavar="ASSIGNMENT", help="assignment name, e.g. 00_pytorch_warmup")
    p.add_argument("--submissions", metavar="DIR",
                   help="submitted/<student>/<assignment>/ folders, a folder of <student>_<assignment>.ipynb "
                   "files, or a zip of either (default: the course's submitted/)")
    p.add_argument("--jobs", type=int, default=None, help="notebooks executed at once (default: CPU cores)")
    p.add_argument("--unsafe", action="store_true",
                   help="grade without a sandbox where none can be made (learners' code runs as you!)")
    p.add_argument("--time-limit", type=float, default=600.0, metavar="SECONDS",
                   help="wall-clock limit per notebook (default: 600)")
    p.add_argument("--memory", type=float, default=4.0, metavar="GB",
                   help="address-space limit per process in the sandbox (default: 4)")
    p.add_argument("--no-feedback", action="store_true", help="do not generate feedback HTML")
    p.add_argument("--csv", metavar="PATH", help="grades CSV (default: grades/<ASSIGNMENT>.csv)")
    p.set_defaults(func=_cmd_grade)


def _cmd_grade(args) -> int:
    from lrlab.course import CourseError, find_root

    try:
        limits = sb.Limits(wall_s=args.time_limit, cpu_s=max(1, int(args.time_limit)),
                           memory_bytes=int(args.memory * sb.GiB))
        report = grade(args.assignment, root=find_root(getattr(args, "root", None)),
                       submissions=Path(args.submissions) if args.submissions else None, jobs=args.jobs,
                       unsafe=args.unsafe, limits=limits, feedback=not args.no_feedback,
                       csv_path=Path(args.csv) if args.csv else None, progress=print)
    except (GradingError, sb.SandboxUnavailable, ValueError) as exc:
        raise CourseError(str(exc)) from exc
    print()
    print(report.table())
    print()
    print(report.summary())
    return 1 if any(r.status == "error" for r in report.results) else 0
