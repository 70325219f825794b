"""The instructor's and CI's command line: ``lrlab release | run | validate | grade``.

``lrlab --help`` and ``lrlab COMMAND --help`` describe every option. The commands work on the course folder that
holds ``nbgrader_config.py`` and ``source/`` (found from the current directory upwards, or given with ``--root``).
This module only parses arguments, calls the tooling's functions and prints what they return;
:class:`~lrlab.course.errors.CourseError` is caught here, once (``error: ...``, exit status 2).

Imports: the standard library and :mod:`lrlab.course.errors` at module level; every other module (the commands,
and through them nbgrader, Jupyter, PyTorch) inside the command functions, so that ``--help`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lrlab.course.errors import CourseError


# ------------------------------------------------------------------------------------------- argument types
def _number(text: str, convert: type, ok, allowed: str):
    """``text`` as a ``convert`` number when ``ok`` accepts it; otherwise argparse's error naming ``allowed``."""
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def _positive_float(text: str) -> float:
    return _number(text, float, lambda v: 0 < v < float("inf"), "a positive number")


def _memory_gb(text: str) -> float:
    return _number(text, float, lambda v: v == 0 or 0.25 <= v < float("inf"), "0 (no limit) or at least 0.25 (GB)")


def _assignment_name(text: str) -> str:
    if not text or "/" in text or "\\" in text or text.startswith("."):
        raise argparse.ArgumentTypeError(f"must be the name of a folder in source/, got {text!r}")
    return text


# ---------------------------------------------------------------------------------------------- commands
def _cmd_release(args: argparse.Namespace) -> int:
    from lrlab.course.layout import assignments, find_root
    from lrlab.course.release import release

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
    from lrlab.course.layout import find_root, relative_path
    from lrlab.course.run import run_notebooks
    from lrlab.tables import format_table

    root = find_root(args.root)
    out_dir = Path(args.out).resolve() if args.out else root / "build" / "executed"
    results = run_notebooks(root, device=args.device, jobs=args.jobs, params=args.param or (),
                            notebooks=args.notebooks, out_dir=out_dir)
    print(format_table(["notebook", "device", "seconds", "status"],
                       [(r.notebook, r.device, round(r.seconds, 1), r.status) for r in results]))
    failed = [r for r in results if r.status != "ok"]
    total = sum(r.seconds for r in results)
    print(f"\n{len(results) - len(failed)} of {len(results)} notebooks ran ({total:.1f} s of notebook time); "
          f"executed copies in {relative_path(out_dir, root)}/")
    return 1 if failed else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from lrlab.course.layout import find_root
    from lrlab.course.validate import validate
    from lrlab.tables import format_table

    root = find_root(args.root)
    results = validate(root, args.assignments, jobs=args.jobs)
    print(format_table(["notebook", "kind", "seconds", "result"],
                       [(r.notebook, r.kind, round(r.seconds, 1), ("ok: " if r.ok else "FAIL: ") + r.detail)
                        for r in results]))
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)} of {len(results)} notebooks validated as expected")
    return 1 if bad else 0


def _cmd_grade(args: argparse.Namespace) -> int:
    from lrlab.course.grading.batch import grade
    from lrlab.course.grading.sandbox import GiB, Limits
    from lrlab.course.layout import find_root

    limits = Limits(wall_s=args.time_limit, cpu_s=max(1, int(args.time_limit)), memory_bytes=int(args.memory * GiB))
    report = grade(args.assignment, root=find_root(args.root),
                   submissions=Path(args.submissions) if args.submissions else None, jobs=args.jobs,
                   unsafe=args.unsafe, limits=limits, feedback=not args.no_feedback,
                   csv_path=Path(args.csv) if args.csv else None, progress=print)
    print()
    print(report.table())
    print()
    print(report.summary())
    return 1 if any(r.status == "error" for r in report.results) else 0


# ------------------------------------------------------------------------------------------------ parser
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
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="notebooks executed in parallel processes (default: 1)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="override a parameter of the notebooks' parameters cell (repeatable)")
    p.add_argument("--out", help="folder for executed copies (default: build/executed)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="source notebooks pass; release notebooks fail as expected",
                       description="Check with nbgrader's Validator that every source notebook passes all its "
                       "tests and every release notebook fails each autograded test in the expected way.")
    p.add_argument("assignments", nargs="*", metavar="ASSIGNMENT", help="assignment names (default: all)")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="notebooks validated in parallel processes (default: 1)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "grade", help="autograde all submissions of an assignment: sandboxed, in parallel",
        description="Autograde every submission of ASSIGNMENT with nbgrader, each learner's code in an OS "
        "sandbox (bubblewrap), several learners at once; write scores to the gradebook, feedback HTML "
        "without hidden tests to feedback/, and a grades CSV; print a table and a summary.")
    p.add_argument("assignment", metavar="ASSIGNMENT", type=_assignment_name,
                   help="assignment name, e.g. 00_pytorch_warmup")
    p.add_argument("--submissions", metavar="DIR",
                   help="submitted/<student>/<assignment>/ folders, a folder of <student>_<assignment>.ipynb "
                   "files, or a zip of either (default: the course's submitted/)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="notebooks executed at once (default: CPU cores)")
    p.add_argument("--unsafe", action="store_true",
                   help="grade without a sandbox where none can be made (learners' code runs as you!)")
    p.add_argument("--time-limit", type=_positive_float, default=600.0, metavar="SECONDS",
                   help="wall-clock limit per notebook (default: 600)")
    p.add_argument("--memory", type=_memory_gb, default=4.0, metavar="GB",
                   help="address-space limit per process in the sandbox, 0 for none (default: 4)")
    p.add_argument("--no-feedback", action="store_true", help="do not generate feedback HTML")
    p.add_argument("--csv", metavar="PATH", help="grades CSV (default: grades/<ASSIGNMENT>.csv)")
    p.set_defaults(func=_cmd_grade)
    return parser


def use_environment_bin() -> None:
    """Put this interpreter's bin/ first on PATH: nbgrader runs `alembic` and kernels by name from PATH,
    and a course run from `.venv/bin/lrlab` without activating the venv must still find them."""
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lrlab`` command line; return its exit status (0 ok, 1 something failed, 2 an error to fix)."""
    use_environment_bin()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CourseError as err:
        print(f"lrlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
