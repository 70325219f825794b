"""Executing one sanitized notebook in a box (untrusted code), and many of them in parallel threads.

:class:`BoxExecute` is nbgrader's ``Execute`` preprocessor with its kernel in a :mod:`~lrlab.course.grading.sandbox`
box, bounded output and a graceful end when the kernel dies or hangs; :func:`execute_in_box` runs one notebook,
:func:`run_jobs` one learner's notebooks, :func:`kill_all_boxes` stops every box of this process (on Ctrl-C).
The notebook client stays outside the box: a submission can only produce cell outputs.

Every test cell runs between two checks of :mod:`~lrlab.course.grading.guard`: a submission that tampered with the
kernel's machinery scores 0 on that test and every later one, and the reason is kept in :attr:`BoxExecute.tampered`.

Imports: :mod:`lrlab.course.grading.guard`, :mod:`~lrlab.course.grading.kernel` and
:mod:`~lrlab.course.grading.sandbox`, nbformat, nbclient, nbgrader.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

from lrlab.course.grading import guard as gd
from lrlab.course.grading import sandbox as sb
from lrlab.course.grading.kernel import MAX_MESSAGE_BYTES, BoxKernelManager

#: Total cell output kept per notebook; the rest is replaced by a note.
MAX_OUTPUT_BYTES = 8 * sb.MiB
#: Longest error message (and traceback line) kept from a kernel.
ERROR_TEXT_CHARS = 10_000
#: The learner library, as the box sees it (read-only, at the same path): the guard checks the modules tests use.
LRLAB_DIR = Path(__file__).resolve().parents[2]


def cell_label(nb: NotebookNode, index: int) -> str:
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
            raise ValueError("BoxExecute needs .box (a lrlab.course.grading.sandbox.Sandbox) and .rundir "
                             "(a private folder)")
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
                    f"{cell_label(self.nb, cell_index)} printed more than {MAX_OUTPUT_BYTES // sb.MiB} MB; "
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

    # -- the guard around test cells ---------------------------------------------------------------------------

    async def _user_expression(self, expression: str) -> dict | None:
        """Evaluate one expression in the kernel without IPython's transformers (a silent request)."""
        msg_id = self.kc.execute("", silent=True, store_history=False, user_expressions={"g": expression},
                                 stop_on_error=False)
        reply = await self.async_wait_for_reply(msg_id)
        if not reply:
            return None
        return reply.get("content", {}).get("user_expressions", {}).get("g")

    async def _install_guard(self) -> None:
        self._guard = gd.Guard(str(LRLAB_DIR))
        answer = await self._user_expression(self._guard.install_expression())
        if not isinstance(answer, dict) or answer.get("status") != "ok":
            detail = answer.get("evalue", "") if isinstance(answer, dict) else "no answer"
            self.problems.append(f"the grader's guard could not be installed in the kernel ({detail})")
            self._guard = None

    async def _check_guard(self, cell, index: int, when: str) -> None:
        if self._guard is None:
            return
        challenge = gd.new_challenge()
        answer = await self._user_expression(self._guard.check_expression(challenge, gd.builtin_names(cell.source)))
        found = self._guard.verdict(answer, challenge)
        if found:
            where = f"{'before' if when == 'before' else 'while running'} {cell_label(self.nb, index)}"
            self._tamper(f"{'; '.join(found)} ({where})")

    def _tamper(self, why: str) -> None:
        if not self.tampered:
            self.problems.append(f"tampered with the grader: {why}; this test and every later one score 0")
        self.tampered.append(why)

    def _limit_reasons(self, cell, index: int) -> None:
        """Name the sandbox's limit behind an error of a cell (a full size cap, the process limit)."""
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                text = f"{output.get('ename')}: {output.get('evalue')}"
            elif output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = str(output.get("text", ""))
            else:
                continue
            reason = sb.cap_reason(text, self.box.limits, runtime=self.rundir)
            if reason is None and ("[Errno 11] Resource temporarily unavailable" in text
                                   or "can't start new thread" in text):
                reason = f"the code hit the sandbox's process limit ({self.box.limits.processes} processes)"
            if reason is not None:
                reason = f"{cell_label(self.nb, index)}: {reason}"
                if reason not in self.problems:
                    self.problems.append(reason)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        test = gd.is_test_cell(cell) and bool(cell.source.strip())
        if test:
            await self._check_guard(cell, cell_index, "before")
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if cell.cell_type == "code" and self.box is not None:
            self._limit_reasons(cell, cell_index)
        if test:
            await self._check_guard(cell, cell_index, "after")
            if gd.credit_outputs(cell):
                self._tamper(f"{cell_label(self.nb, cell_index)} showed a result its test did not produce "
                             "(a forged partial credit)")
            if self.tampered:
                gd.withhold(cell, "the submission tampered with the grader (" + self.tampered[0] + ")")
            else:
                line = gd.stderr_only_loss(cell)
                if line is not None:
                    self.problems.append(f"{cell_label(self.nb, cell_index)} lost its points only because it wrote "
                                         f"to stderr ({line!r})")
        return cell

    execute_cell = run_sync(async_execute_cell)

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
        self._guard = None
        self.tampered: list[str] = []
        self.flags = gd.scan(self.nb)
        self.problems += self.flags
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
                    run_sync(self._install_guard)()
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
        where = cell_label(self.nb, current) if 0 <= current < len(self.nb.cells) else "the notebook"
        self.problems.append(f"{reason} ({where}); later cells were not run")
        self._mark_not_run(current, reason)


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


# -- many notebooks, in parallel threads -------------------------------------------------------------

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
    # PYTHONSAFEPATH: the working folder is not put first on sys.path (the guard appends it last)
    executor.box_env = {"NBGRADER_EXECUTION": "autograde", "PYTHONSAFEPATH": "1"}
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


def run_jobs(config, jobs: list[Job], box: sb.Sandbox, wall_s: float) -> list[Job]:
    for job in jobs:
        start = time.monotonic()
        job.executed, job.problems, job.started = execute_in_box(config, job.nb, box=box, files=job.files,
                                                                 rundir=job.rundir, wall_s=wall_s)
        job.seconds = time.monotonic() - start
    return jobs
