"""The instructor's and CI's command line: ``lrlab release | run | validate | grade``.

``lrlab --help`` and ``lrlab COMMAND --help`` describe every option. The commands work on the course
folder that holds ``nbgrader_config.py`` and ``source/`` (found from the current directory upwards,
or given with ``--root``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nbformat takes seconds to import; the commands import it when they need it
    import nbformat

ASSIGNMENT_PATTERN = "[0-9][0-9]_*"


class CourseError(Exception):
    """A problem the user of the command line can fix; printed without a traceback."""


# --------------------------------------------------------------------------------------------- course layout
def find_root(start: str | os.PathLike | None = None) -> Path:
    """The course root: the nearest folder (from ``start`` upwards) holding nbgrader_config.py and source/."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "nbgrader_config.py").is_file() and (folder / "source").is_dir():
            return folder
    package_root = Path(__file__).resolve().parents[2]
    if (package_root / "nbgrader_config.py").is_file():
        return package_root
    raise CourseError(f"no course found: no folder from {here} upwards holds nbgrader_config.py and source/")


def assignments(root: Path, names: Sequence[str] = ()) -> list[str]:
    """Assignment names in source/ (``NN_name``), or the given ones after checking they exist."""
    found = sorted(p.name for p in (root / "source").glob(ASSIGNMENT_PATTERN) if p.is_dir())
    if not names:
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise CourseError(f"unknown assignment(s) {', '.join(unknown)}; the course has: {', '.join(found) or 'none'}")
    return list(names)


def course_notebooks(root: Path) -> list[Path]:
    """Every notebook `lrlab run` executes: source/NN_*/**.ipynb, then notebooks/*.ipynb."""
    nbs = []
    for name in assignments(root):
        nbs += sorted((root / "source" / name).glob("*.ipynb"))
    nbs += sorted((root / "notebooks").glob("*.ipynb"))
    return [p for p in nbs if ".ipynb_checkpoints" not in p.parts]


# ----------------------------------------------------------------------------------------------- normalising
def normalize_notebook_text(text: str) -> str:
    """Canonical bytes of a notebook: no outputs or execution counts, sorted keys, indent 1, final newline."""
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def parameters_cell(nb: nbformat.NotebookNode) -> int | None:
    """Index of the cell tagged ``parameters`` (papermill's convention), or None."""
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    return None


# ------------------------------------------------------------------------------------------------- release
def _generate(root: Path, names: list[str]) -> None:
    """Run nbgrader generate_assignment for each name in the course at ``root``."""
    for name in names:
        cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force", "--log-level=WARN"]
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CourseError(f"nbgrader generate_assignment {name} failed:\n{proc.stdout}{proc.stderr}")
        for nb_path in (root / "release" / name).rglob("*.ipynb"):
            text = nb_path.read_text(encoding="utf-8")
            nb_path.write_text(normalize_notebook_text(text), encoding="utf-8")


def _tree(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts}


def release(root: Path, names: Sequence[str] = (), check: bool = False) -> list[str]:
    """Generate release/ from source/ (or, with check=True, report what is out of sync).

    Returns the list of out-of-sync paths (empty when in sync or after a successful release).
    """
    restricted = bool(names)
    names = assignments(root, names)
    if not names:
        raise CourseError("source/ holds no assignments (folders named NN_name)")
    if not check:
        _generate(root, names)
        for name in names:  # remove files nbgrader no longer generates
            expected = set(_tree(root / "source" / name))
            for rel in _tree(root / "release" / name):
                if rel not in expected:
                    (root / "release" / name / rel).unlink()
        return []
    with tempfile.TemporaryDirectory(prefix="lrlab-release-") as tmp:
        copy = Path(tmp) / "course"
        (copy / "source").mkdir(parents=True)
        shutil.copy2(root / "nbgrader_config.py", copy / "nbgrader_config.py")
        for name in names:
            shutil.copytree(root / "source" / name, copy / "source" / name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        _generate(copy, names)
        stale = []
        for name in names:
            want, have = _tree(copy / "release" / name), _tree(root / "release" / name)
            for rel in sorted(set(want) | set(have)):
                if want.get(rel) != have.get(rel):
                    if rel not in have:
                        state = "missing"
                    else:
                        state = "not generated by source" if rel not in want else "differs"
                    stale.append(f"release/{name}/{rel} ({state})")
        known = set(names)
        for extra in sorted((root / "release").glob(ASSIGNMENT_PATTERN)):
            if extra.is_dir() and extra.name not in known and not restricted:
                stale.append(f"release/{extra.name} (no such assignment in source/)")
        return stale


# ----------------------------------------------------------------------------------------------------- run
@dataclass
class RunResult:
    notebook: str
    device: str
    seconds: float
    status: str
    output: str


def _parse_value(text: str):
    """A -p value: a Python literal when it parses as one (1, 0.5, True, 'x'), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _execute_one(args: tuple[str, str, str, dict, str]) -> RunResult:
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
    return RunResult(rel, device_label, time.perf_counter() - start, status, out)


def run(root: Path, *, device: str = "auto", jobs: int = 1, params: Sequence[tuple[str, str]] = (),
        notebooks: Sequence[str] = (), out_dir: Path | None = None) -> list[RunResult]:
    """Execute notebooks headless with papermill; every problem with the request is raised before anything runs."""
    import nbformat

    from lrlab.device import DEVICES, pick_device

    if device not in DEVICES:
        raise CourseError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    try:
        resolved = pick_device(device)
    except ValueError as err:
        raise CourseError(str(err)) from None
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise CourseError(f"--jobs must be a positive integer, got {jobs!r}")
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
            problems.append(f"{_rel(p, root)}: no cell tagged 'parameters' (papermill needs one to inject "
                            "SEED, DEVICE and sizes)")
    if problems:
        raise CourseError("cannot run:\n  " + "\n  ".join(problems))
    values = {"DEVICE": device}
    for name, value in params:
        if not name.isidentifier():
            raise CourseError(f"-p NAME must be a Python identifier, got {name!r}")
        values[name] = _parse_value(value)
    out_dir = out_dir or root / "build" / "executed"
    work = [(str(p), str(out_dir / _rel(p, root)), _rel(p, root), values, resolved.type) for p in paths]
    if jobs == 1:
        return [_execute_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_execute_one, work))


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (first column left-aligned, numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[f"{c:.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if (n and c.replace(".", "").isdigit()) else c.ljust(w)
                               for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ validate
EXPECTED_RELEASE_ERRORS = ("NotImplementedError", "NameError", "CheckFailure", "AssertionError")


@dataclass
class ValidateResult:
    notebook: str
    kind: str  # "source" or "release"
    ok: bool
    detail: str
    seconds: float


def _grade_test_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


def _validate_one(args: tuple[str, str, str]) -> ValidateResult:
    path, kind, rel = args
    import nbformat
    from nbgrader.validator import Validator
    from traitlets.config import Config

    cfg = Config()
    cfg.Execute.timeout = 120
    start = time.perf_counter()
    results = Validator(config=cfg).validate(path)
    seconds = time.perf_counter() - start
    if "type_changed" in results or "changed" in results:
        return ValidateResult(rel, kind, False, "cells were changed or changed type: " + json.dumps(
            list(results)), seconds)
    failed = results.get("failed", [])
    if kind == "source":
        if failed:
            first = failed[0]["raw_error"].strip().splitlines()
            return ValidateResult(rel, kind, False, f"{len(failed)} test cell(s) fail, first: "
                                  f"{first[-1] if first else '?'}", seconds)
        return ValidateResult(rel, kind, True, "all tests pass", seconds)
    nb = nbformat.read(path, as_version=4)
    tests = _grade_test_cells(nb)
    failed_by_source = {f["source"]: f["raw_error"] for f in failed}
    problems = []
    for cell in tests:
        gid = cell.metadata["nbgrader"]["grade_id"]
        err = failed_by_source.get(cell.source.strip())
        if err is None:
            problems.append(f"{gid} passes on the unanswered notebook")
        elif not any(name in err for name in EXPECTED_RELEASE_ERRORS):
            last = err.strip().splitlines()[-1] if err.strip() else "?"
            problems.append(f"{gid} fails in an unexpected way: {last}")
    if problems:
        return ValidateResult(rel, kind, False, "; ".join(problems), seconds)
    return ValidateResult(rel, kind, True, f"all {len(tests)} test cells fail as expected", seconds)


def validate(root: Path, names: Sequence[str] = (), jobs: int = 1) -> list[ValidateResult]:
    """Source notebooks pass every test; release notebooks fail every autograded test in the expected way."""
    work = []
    for name in assignments(root, names):
        for kind in ("source", "release"):
            for p in sorted((root / kind / name).glob("*.ipynb")):
                work.append((str(p), kind, _rel(p, root)))
        if not list((root / "release" / name).glob("*.ipynb")):
            raise CourseError(f"release/{name} has no notebooks: run `lrlab release {name}` first")
    if jobs == 1:
        return [_validate_one(w) for w in work]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(_validate_one, work))


# --------------------------------------------------------------------------------------------------- CLI
def _cmd_release(args: argparse.Namespace) -> int:
    root = find_root(args.root)
    if args.check:
        stale = release(root, args.assignments, check=True)
        if stale:
            print("release/ is out of sync with source/ (run `lrlab release`):", file=sys.stderr)
            for s in stale:
                print(f"  {s}", file=sys.stderr)
            return 1
        print("release/ is in sync with source/")
        return 0
    names = assignments(root, args.assignments)
    release(root, names)
    print(f"released {len(names)} assignment(s) into release/: {', '.join(names)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    root = find_root(args.root)
    out_dir = Path(args.out).resolve() if args.out else root / "build" / "executed"
    results = run(root, device=args.device, jobs=args.jobs, params=args.param or (), notebooks=args.notebooks,
                  out_dir=out_dir)
    print(format_table(["notebook", "device", "seconds", "status"],
                       [(r.notebook, r.device, round(r.seconds, 1), r.status) for r in results]))
    failed = [r for r in results if r.status != "ok"]
    total = sum(r.seconds for r in results)
    print(f"\n{len(results) - len(failed)} of {len(results)} notebooks ran ({total:.1f} s of notebook time); "
          f"executed copies in {_rel(out_dir, root)}/")
    return 1 if failed else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    root = find_root(args.root)
    results = validate(root, args.assignments, jobs=args.jobs)
    print(format_table(["notebook", "kind", "seconds", "result"],
                       [(r.notebook, r.kind, round(r.seconds, 1), ("ok: " if r.ok else "FAIL: ") + r.detail)
                        for r in results]))
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)} of {len(results)} notebooks validated as expected")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lrlab", description="The lrlab course's command line: release, run, validate and grade notebooks.")
    parser.add_argument("--root", help="course folder (default: found from the current directory upwards)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("release", help="generate release/ from source/ with nbgrader (byte-stable)",
                       description="Run nbgrader generate_assignment for each assignment into release/, "
                       "normalised so that unchanged sources give unchanged bytes.")
    p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="assignment names (default: all)")
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 and name each notebook whose release is out of sync")
    p.set_defaults(func=_cmd_release)

    p = sub.add_parser("run", help="execute every notebook headless with papermill and print a table",
                       description="Execute the notebooks of source/ and notebooks/ with papermill; executed "
                       "copies go to build/executed/. Exit 1 if any notebook fails.")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="notebook paths (default: all of the course)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default: auto)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks executed in parallel processes (default: 1)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameter of the notebooks' parameters cell (repeatable)")
    p.add_argument("--out", help="folder for executed copies (default: build/executed)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="source notebooks pass; release notebooks fail as expected",
                       description="Check with nbgrader's Validator that every source notebook passes all its "
                       "tests and every release notebook fails each autograded test in the expected way.")
    p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="assignment names (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks validated in parallel processes (default: 1)")
    p.set_defaults(func=_cmd_validate)

    try:
        from lrlab.grading import add_grade_command
    except ModuleNotFoundError as err:
        if err.name != "lrlab.grading":
            raise
    else:
        add_grade_command(sub)
    return parser


def use_environment_bin() -> None:
    """Put this interpreter's bin/ first on PATH: nbgrader runs `alembic` and kernels by name from PATH,
    and a course run from `.venv/bin/lrlab` without activating the venv must still find them."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def main(argv: Sequence[str] | None = None) -> int:
    use_environment_bin()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CourseError as err:
        print(f"lrlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
