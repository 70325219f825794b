"""``lrlab run``: execute notebooks headless with papermill, each request checked before anything runs.

Imports: the standard library, :mod:`lrlab.args`, :mod:`lrlab.course.layout` / :mod:`lrlab.course.errors`, and inside
the functions nbformat, papermill and the library's :mod:`lrlab.device` (PyTorch).
"""

from __future__ import annotations

import ast
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lrlab.args import check_int
from lrlab.course.errors import CourseError
from lrlab.course.layout import course_notebooks, relative_path

if TYPE_CHECKING:  # nbformat takes seconds to import; the functions import it when they need it
    import nbformat


@dataclass
class NotebookRun:
    """One notebook executed by :func:`run_notebooks`: its path, the device, seconds, ``ok`` or ``FAILED: ...``,
    and where the executed copy is."""

    notebook: str
    device: str
    seconds: float
    status: str
    output: str


def parameters_cell(nb: nbformat.NotebookNode) -> int | None:
    """Index of the cell tagged ``parameters`` (papermill's convention), or None."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def parse_value(text: str):
    """A -p value: a Python literal when it parses as one (1, 0.5, True, 'x'), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _execute_one(args: tuple[str, str, str, dict, str]) -> NotebookRun:
    src, out, rel, params, device_label = args
    import papermill as pm

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        pm.execute_notebook(src, out, parameters=params, kernel_name="python3", cwd=str(Path(src).parent),
                            progress_bar=False, log_output=False, report_mode=False)
        status = "ok"
    except pm.PapermillExecutionError as err:
        status = f"FAILED: {err.ename}: {str(err.evalue).splitlines()[0] if err.evalue else ''}"[:160]
    except Exception as err:  # noqa: BLE001 - a kernel that dies is a failed notebook, not a crash of the run
        status = f"FAILED: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:160]
    return NotebookRun(rel, device_label, time.perf_counter() - start, status, out)


def run_notebooks(root: Path, *, device: str = "auto", jobs: int = 1, params: Sequence[tuple[str, str]] = (),
                  notebooks: Sequence[str] = (), out_dir: Path | None = None) -> list[NotebookRun]:
    """Execute notebooks headless with papermill; every problem with the request is raised before anything runs."""
    import nbformat

    from lrlab.device import DEVICES, pick_device

    if device not in DEVICES:
        raise CourseError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    try:
        resolved = pick_device(device)
    except ValueError as err:
        raise CourseError(str(err)) from None
    try:
        check_int(jobs, "--jobs", low=1)
    except ValueError as err:
        raise CourseError(str(err)) from None
    paths = [Path(n).resolve() for n in notebooks] if notebooks else course_notebooks(root)
    if not paths:
        raise CourseError("no notebooks to run")
    problems = []
    for p in paths:
        if not p.is_file():
            problems.append(f"{p}: no such notebook")
            continue
        try:
            nb = nbformat.read(p, as_version=4)
        except Exception as err:  # noqa: BLE001
            problems.append(f"{p}: not a readable notebook ({err})")
            continue
        if parameters_cell(nb) is None:
            problems.append(f"{relative_path(p, root)}: no cell tagged 'parameters' (papermill needs one to inject "
                            "SEED, DEVICE and sizes)")
    if problems:
        raise CourseError("cannot run:\n  " + "\n  ".join(problems))
    values = {"DEVICE": device}
    for name, value in params:
        if not name.isidentifier():
            raise CourseError(f"-p NAME must be a Python identifier, got {name!r}")
        values[name] = parse_value(value)
    out_dir = out_dir or root / "build" / "executed"
    work = [(str(p), str(out_dir / relative_path(p, root)), relative_path(p, root), values, resolved.type)
            for p in paths]
    if jobs == 1:
        return [_execute_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_execute_one, work))
