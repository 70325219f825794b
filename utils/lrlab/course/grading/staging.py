"""Staging: every submission of an assignment copied, without trusting it, into a private folder in nbgrader's
layout (``submitted/<student>/<assignment>/``), and the files a kernel finds in its working folder (none of
them shadows an importable module).

Accepted: nbgrader's folder layout, a folder of ``<student>_<assignment>.ipynb`` files, or a zip of either (an
LMS export). Only regular files are copied, within a size limit; a notebook that is not valid JSON scores 0.

Imports: :mod:`lrlab.course.errors`, :mod:`~lrlab.course.grading.gradebook`, :mod:`~lrlab.course.grading.sandbox`
(sizes), nbformat; nbgrader inside the functions.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from lrlab.course.errors import GradingError
from lrlab.course.grading import sandbox as sb
from lrlab.course.grading.gradebook import coursedir

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
#: Largest submission folder staged for grading (notebooks plus data files), and largest zip accepted.
MAX_SUBMISSION_BYTES = 200 * sb.MiB


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


def flat_pattern(assignment: str, notebooks: list[str]) -> re.Pattern:
    """How a flat submission file is named: ``<student>_<assignment>[_<notebook>].ipynb`` (groups student, notebook)."""
    names = "|".join(re.escape(n) for n in sorted(notebooks, key=len, reverse=True))
    return re.compile(rf"^(?P<student>.+?)_{re.escape(assignment)}(?:_(?P<notebook>{names}))?\.ipynb$")


_ZIP_KINDS = {0o120000: "a symbolic link", 0o010000: "a FIFO", 0o020000: "a device", 0o060000: "a device",
              0o140000: "a socket"}


def safe_extract(zip_path: Path, dest: Path) -> list[tuple[str, str]]:
    """Extract an LMS export without trusting it; return the members left out, each with the reason.

    Left out (the rest is extracted): absolute paths and '..', links, FIFOs, devices and sockets, a member whose
    name clashes with another (a file and a folder of the same name, the same name twice), and a member that cannot
    be read. Only what is extracted counts toward the size limit of the whole export (``10 *
    MAX_SUBMISSION_BYTES``), past which the export is refused."""
    import zipfile
    import zlib

    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise GradingError(f"{zip_path} is not a readable zip file ({exc})") from exc
    skipped: list[tuple[str, str]] = []
    dest = Path(dest)
    with archive:
        total = 0
        for info in archive.infolist():
            name = info.filename
            parts = Path(name).parts
            kind = _ZIP_KINDS.get((info.external_attr >> 16) & 0o170000)
            if name.startswith(("/", "\\")) or ".." in parts or not parts or "\x00" in name or \
                    any(p in ("", ".") for p in name.rstrip("/").split("/")):
                skipped.append((name, "an unsafe path"))
                continue
            if kind is not None:
                skipped.append((name, kind))
                continue
            target = dest.joinpath(*parts)
            bad_parent = any(p.is_symlink() or (p.exists() and not p.is_dir())
                             for p in target.parents if p != dest and _inside(p, dest))
            if info.is_dir():
                if bad_parent or (target.exists() and not target.is_dir()):
                    skipped.append((name, "a file and a folder of the same name"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                continue
            if bad_parent or target.is_dir():
                skipped.append((name, "a file and a folder of the same name"))
                continue
            if target.exists():
                skipped.append((name, "the same name appears twice in the zip"))
                continue
            if total + info.file_size > MAX_SUBMISSION_BYTES * 10:
                raise GradingError(f"{zip_path} unpacks to more than {MAX_SUBMISSION_BYTES * 10 // sb.MiB} MB")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                target.unlink(missing_ok=True)
                skipped.append((name, f"unreadable ({type(exc).__name__}: {str(exc)[:80]})"))
                continue
            total += target.stat().st_size
    return skipped


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def check_notebook(path: Path) -> str | None:
    """Why a submitted notebook cannot be graded (not JSON, not a notebook), or None when it can."""
    try:
        with open(path, encoding="utf-8") as fh:
            nbformat.read(fh, as_version=4)
    except Exception as exc:  # json, nbformat and unicode errors all mean the same for grading
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"{path.name} is not a valid notebook ({detail}); it scores 0"
    return None


def copy_regular_files(src: Path, dest: Path, ignore: list[str]) -> list[str]:
    """Copy regular files only (no links, devices or fifos), within MAX_SUBMISSION_BYTES; return skips."""
    from nbgrader.utils import is_ignored

    skipped, total = [], 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        rel_dir = Path(dirpath).relative_to(src)
        dirnames[:] = [d for d in dirnames if not is_ignored(os.path.join(dirpath, d), ignore)
                       and not os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_ignored(str(path), ignore):
                continue
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                skipped.append(f"{rel_dir / name} (not a regular file)")
                continue
            if total + st.st_size > MAX_SUBMISSION_BYTES:  # a skipped file does not count toward the limit
                skipped.append(f"{rel_dir / name} (submission larger than {MAX_SUBMISSION_BYTES // sb.MiB} MB)")
                continue
            total += st.st_size
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

    folders = coursedir(config)
    if source is None:
        source = Path(folders.format_path(folders.submitted_directory, ".", ".")).resolve()
    source = Path(source).resolve()
    if not source.exists():
        raise GradingError(f"no submissions at {source}; pass --submissions with a folder or a zip")
    staged_root = staging / "submitted"
    staged_root.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    pending: dict[str, list[str]] = {}  # reasons for a student, found before their submission is staged
    if source.is_file():
        if source.suffix.lower() != ".zip":
            raise GradingError(f"--submissions {source} must be a folder or a .zip file")
        unpacked = staging / "unzipped"
        unpacked.mkdir()
        left_out = safe_extract(source, unpacked)
        entries = [p for p in unpacked.iterdir() if not p.name.startswith(("__MACOSX", "."))]
        source = entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked
        top = source.relative_to(unpacked).parts
        for member, why in left_out:
            parts = Path(member).parts
            parts = parts[len(top):] if parts[:len(top)] == top else parts
            owner = _owner(parts, assignment, notebooks)
            if owner is None:
                notes.append(f"skipped {member} in the zip: {why}")
            else:
                pending.setdefault(owner, []).append(f"skipped {'/'.join(parts)} in the zip: {why}")

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
    pattern = flat_pattern(assignment, notebooks)
    flat: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(p for p in source.iterdir() if not p.is_dir() and not p.name.startswith(".")):
        if path.suffix != ".ipynb":
            notes.append(f"skipped {path.name}: not a notebook")
            continue
        m = pattern.match(path.name)
        if not m:
            notes.append(f"skipped {path.name}: not named <student>_{assignment}.ipynb")
            continue
        student = m.group("student")
        if not STUDENT_ID.match(student):
            notes.append(f"skipped {path.name}: {student!r} is not a usable student id")
            continue
        kind = _special_kind(path)
        if kind is not None:
            pending.setdefault(student, []).append(f"skipped {path.name}: {kind}, not a regular file")
            continue
        notebook = m.group("notebook")
        if notebook is None:
            if len(notebooks) != 1:
                pending.setdefault(student, []).append(
                    f"skipped {path.name}: {assignment} has several notebooks; name the file "
                    f"<student>_{assignment}_<notebook>.ipynb")
                continue
            notebook = notebooks[0]
        flat.setdefault(student, []).append((notebook, path))

    submissions: dict[str, Submission] = {}
    for student, folder in found.items():
        dest = staged_root / student / assignment
        dest.mkdir(parents=True)
        skipped = copy_regular_files(folder, dest, list(folders.ignore))
        submissions[student] = Submission(student, dest, [f"skipped {s}" for s in skipped])
    for student, files in flat.items():
        if student in submissions:
            submissions[student].reasons.append("both a folder and flat files were found; graded the folder")
            continue
        dest = staged_root / student / assignment
        dest.mkdir(parents=True)
        sub = submissions[student] = Submission(student, dest)
        by_notebook: dict[str, list[Path]] = {}
        for notebook, path in files:
            by_notebook.setdefault(notebook, []).append(path)
        for notebook, paths in by_notebook.items():
            if len(paths) > 1:
                names = ", ".join(p.name for p in paths)
                sub.reasons.append(f"{names} are all {notebook}.ipynb of this student; none of them is graded")
                continue
            try:
                shutil.copyfile(paths[0], dest / f"{notebook}.ipynb")
            except OSError as exc:
                sub.reasons.append(f"skipped {paths[0].name}: it cannot be read ({type(exc).__name__})")
    for student, reasons in pending.items():
        if student not in submissions:
            submissions[student] = Submission(student, None)
        submissions[student].reasons[:0] = reasons
    for sub in submissions.values():
        if sub.folder is None:
            sub.reasons.append("no submission found")
            continue
        for name in notebooks:
            path = sub.folder / f"{name}.ipynb"
            if not path.exists():
                sub.reasons.append(f"{name}.ipynb is missing from the submission; it scores 0")
                continue
            problem = check_notebook(path)
            if problem:
                sub.reasons.append(problem)
                path.unlink()  # nbgrader grades a missing notebook as 0
    with Gradebook(folders.db_url) as gb:
        roster = [s.id for s in gb.students]
    for student in roster:
        if student not in submissions:
            submissions[student] = Submission(student, None, ["no submission found"])
    return staged_root, [submissions[s] for s in sorted(submissions)], notes


@functools.lru_cache(maxsize=1)
def importable_names() -> frozenset[str]:
    """Top-level modules a kernel could import: the standard library, everything installed in this environment
    (the box runs the same one), ``lrlab``, and the names Python imports on its own at start-up."""
    import pkgutil

    installed = {m.name for m in pkgutil.iter_modules() if m.name.isidentifier()}
    return frozenset(set(sys.stdlib_module_names) | installed | {"lrlab", "sitecustomize", "usercustomize"})


_MODULE_SUFFIXES = (".py", ".pyc", ".pyw", ".pyd", ".so")
#: Appended to a submitted file or folder that would shadow an importable module.
SHADOW_SUFFIX = ".shadowing"


def _shadowed_module(path: Path) -> str | None:
    """The importable module a top-level entry of a working folder would shadow, or None."""
    name = path.name
    if path.is_symlink():
        return None
    if path.is_dir():
        if not any(p.suffix in _MODULE_SUFFIXES for p in path.iterdir()):
            return None  # a folder of data files is no package
        module = name
    elif name.endswith(".pth"):
        return f"the site configuration ({name} is a .pth file)"
    elif name.endswith(_MODULE_SUFFIXES):
        module = name.split(".", 1)[0]
    else:
        return None
    return f"the module {module}" if module in importable_names() else None


def rename_shadowing(folder: Path) -> list[str]:
    """Rename every top-level file or folder in ``folder`` that would shadow an importable module (``torch.py``,
    ``numpy/``, ``lrlab/__init__.py``, ``sitecustomize.py``, a ``.pth`` file, ...) to ``<name>.shadowing``; return
    a reason for each. (The kernel also puts its working folder last on ``sys.path``.)"""
    reasons = []
    for path in sorted(folder.iterdir()):
        what = _shadowed_module(path)
        if what is None:
            continue
        target = path.with_name(path.name + SHADOW_SUFFIX)
        if target.exists() or target.is_symlink():
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        path.rename(target)
        kind = "folder" if target.is_dir() else "file"
        reasons.append(f"the submitted {kind} {path.name} would shadow {what}; renamed to {target.name}")
    return reasons


def _special_kind(path: Path) -> str | None:
    """What a path is when it is not a regular file (a link, a FIFO, ...), or None for a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "unreadable"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _owner(parts: tuple[str, ...], assignment: str, notebooks: list[str]) -> str | None:
    """The student a path inside a submissions folder belongs to (nbgrader layout or a flat file), or None."""
    if len(parts) >= 2 and parts[1] == assignment and STUDENT_ID.match(parts[0]):
        return parts[0]
    if len(parts) == 1:
        m = flat_pattern(assignment, notebooks).match(parts[0])
        if m and STUDENT_ID.match(m.group("student")):
            return m.group("student")
    return None


def working_files(config, assignment: str, submitted: Path, dest: Path) -> list[str]:
    """The files a kernel finds in its working folder, as in nbgrader's autograded folder: the
    submission's non-notebook files, then the source's (which win), minus ``exclude_overwriting``.

    Submitted files that would shadow an importable module are renamed; returns a reason for each."""
    folders = coursedir(config)
    ignore = [*folders.ignore, "*.ipynb"]
    dest.mkdir(parents=True, exist_ok=True)
    copy_regular_files(submitted, dest, ignore)
    reasons = rename_shadowing(dest)
    source = Path(folders.format_path(folders.source_directory, ".", assignment))
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
    return reasons
