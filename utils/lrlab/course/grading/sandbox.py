"""An operating-system sandbox for running code the course does not trust: learners' submissions.

Autograding executes every learner's notebook. Plain nbgrader does that with the instructor's own
privileges, so one submission could read the hidden tests in ``source/``, rewrite the gradebook, or
leave a process behind that keeps running. This module puts such code in a box built with
`bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``, Linux namespaces, no root needed):

* a fresh process tree (its own PID namespace: when the box ends, every process in it ends),
  its own session, no network (only a private loopback), no capabilities, no new user namespaces;
* an empty root file system with the operating system (``/usr``), a few ``/etc`` files, the Python
  environment and the learner library ``lrlab`` mounted **read-only** (its grading tools,
  ``lrlab.course``, are not there);
* a private, size-limited home folder (a ``tmpfs``) as the only writable place besides ``/tmp``
  (also a size-limited ``tmpfs``) and the folders the caller names; the course's ``source/``, the
  gradebook, other learners' files and the instructor's home are simply not there;
* resource limits set inside the box before the command starts (:class:`Limits`): CPU seconds,
  memory, processes, file size, open files; the caller adds a wall-clock limit and kills the box.

Two ways to use it:

* :func:`run_in_box` runs a command to completion in a box and returns its (capped) output;
* :meth:`Sandbox.wrap` returns the argument list that runs a command in a box, for callers that
  start the process themselves (the grader uses it to start a Jupyter kernel in a box while the
  trusted notebook client stays outside).

:func:`sandbox_problem` says why no box can be made on this machine (``None`` when one can), and
:func:`require_sandbox` raises :class:`~lrlab.course.errors.SandboxUnavailable` with that reason.

Imports: the standard library and :mod:`lrlab.course.errors`.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lrlab.course.errors import SandboxUnavailable

MiB = 1024 * 1024
GiB = 1024 * MiB

#: Where the box's private home lives (inside the box).
BOX_HOME = "/home/learner"

#: Environment variables passed from the caller into the box (everything else is dropped, so that
#: tokens and passwords in the instructor's environment never reach a submission).
PASSED_ENV = (
    "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONHASHSEED", "NBGRADER_EXECUTION",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
)
PASSED_ENV_PREFIXES = ("LC_", "LRLAB_")

# System folders mounted read-only (when they exist); merged-/usr symlinks are recreated as links.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC_FILES = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone",
    "nsswitch.conf", "passwd", "group", "hosts", "host.conf", "os-release", "mime.types", "fonts",
)




@dataclass(frozen=True)
class Limits:
    """Resource limits of one box.

    Attributes:
        wall_s: wall-clock seconds before the caller kills the whole box (used by :func:`run_in_box` and by
            the grader; the box itself cannot enforce it).
        cpu_s: CPU seconds per process (``RLIMIT_CPU``); past it the process gets ``SIGXCPU``/``SIGKILL``.
        memory_bytes: address space per process (``RLIMIT_AS``); an allocation past it fails with
            ``MemoryError`` instead of pushing the machine into swap. PyTorch reserves about 1 GiB of
            address space on import, so keep this at 2 GiB or more. ``0`` means no limit.
        processes: processes of the box's user (``RLIMIT_NPROC``); stops fork bombs. Linux does not
            apply it to root, so run grading as an ordinary user to get this protection.
        file_bytes: size of any single file the box writes (``RLIMIT_FSIZE``).
        open_files: open file descriptors per process (``RLIMIT_NOFILE``).
        home_bytes: size of the private home ``tmpfs`` (the working folder lives in it).
        tmp_bytes: size of the box's ``/tmp``.
        output_bytes: how much of the box's stdout/stderr :func:`run_in_box` keeps (the rest is dropped).
    """

    wall_s: float = 600.0
    cpu_s: int = 600
    memory_bytes: int = 4 * GiB
    processes: int = 256
    file_bytes: int = 64 * MiB
    open_files: int = 1024
    home_bytes: int = 512 * MiB
    tmp_bytes: int = 256 * MiB
    output_bytes: int = 4 * MiB

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "processes", "file_bytes", "open_files", "home_bytes",
                     "tmp_bytes", "output_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive number, got {value!r}")
        if not isinstance(self.memory_bytes, int) or self.memory_bytes < 0:
            raise ValueError(
                f"Limits.memory_bytes must be an int >= 0 (0 = no limit), got {self.memory_bytes!r}"
            )
        if 0 < self.memory_bytes < 256 * MiB:
            raise ValueError(
                f"Limits.memory_bytes ({self.memory_bytes}) must be at least 256 MiB: "
                "Python alone needs that much"
            )

    def rlimits(self) -> list[tuple[str, int]]:
        """The ``resource.RLIMIT_*`` names and values to set inside the box."""
        out = [
            ("RLIMIT_CPU", int(self.cpu_s)),
            ("RLIMIT_NPROC", int(self.processes)),
            ("RLIMIT_FSIZE", int(self.file_bytes)),
            ("RLIMIT_NOFILE", int(self.open_files)),
            ("RLIMIT_CORE", 0),
        ]
        if self.memory_bytes:
            out.append(("RLIMIT_AS", int(self.memory_bytes)))
        return out


# Runs inside the box (with `python -S`, so it starts in milliseconds): copy the prepared files into
# the private working folder, apply the resource limits, then become the real command.
_LAUNCHER = r"""
import json, os, resource, shutil, sys
spec = json.loads(sys.argv[1])
if "env" in spec:  # unsafe mode: no bwrap to clear the environment; keep the kernel's parent watch
    parent = os.environ.get("JPY_PARENT_PID")
    os.environ.clear()
    os.environ.update(spec["env"])
    if parent:
        os.environ["JPY_PARENT_PID"] = parent
work = spec["workdir"]
if spec.get("home_from"):
    shutil.copytree(spec["home_from"], os.environ["HOME"], symlinks=True, dirs_exist_ok=True)
os.makedirs(work, exist_ok=True)
if spec.get("copy_from"):
    shutil.copytree(spec["copy_from"], work, symlinks=True, dirs_exist_ok=True)
os.chdir(work)
for name, value in spec["rlimits"]:
    kind = getattr(resource, name, None)
    if kind is None:
        continue
    soft, hard = resource.getrlimit(kind)
    if hard != resource.RLIM_INFINITY and value > hard:
        value = hard
    resource.setrlimit(kind, (value, value))
argv = sys.argv[2:]
os.execvpe(argv[0], argv, os.environ)
"""


def _pth_dirs(site_dir: Path) -> list[Path]:
    """Folders that ``.pth`` files of a site-packages folder add to the import path (editable installs)."""
    out = []
    for pth in sorted(site_dir.glob("*.pth")):
        try:
            lines = pth.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.strip()
            if not line or line.startswith(("#", "import ", "import\t")):
                continue
            path = (site_dir / line).resolve()
            if path.is_dir():
                out.append(path)
    return out


def _python_dirs() -> list[Path]:
    """Folders the Python environment needs: the venv/conda prefix, the base interpreter and the
    folders that ``.pth`` files add (editable installs), minus the system folders mounted anyway.

    ``sys.path`` itself is not used: it may hold the current directory (the course root)."""
    import site

    candidates = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.base_exec_prefix),
                  Path(sys.executable).resolve().parent.parent]
    for site_dir in site.getsitepackages():
        candidates += _pth_dirs(Path(site_dir))
    out = []
    for path in candidates:
        path = Path(os.path.abspath(path))
        if path == Path("/") or any(path == Path(d) or Path(d) in path.parents for d in _SYSTEM_DIRS):
            continue
        out.append(path)
    return out


def _inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies inside it."""
    return path == folder or folder in path.parents


def _lrlab_dir() -> Path:
    """The folder of the learner library ``lrlab`` (this module lies in its ``course/grading/``)."""
    return Path(__file__).resolve().parents[2]


#: The part of the ``lrlab`` folder a box never sees: the grading tools.
TOOLING = "course"


def _library_only() -> list[str]:
    """bwrap arguments that leave the learner library visible and hide its tooling (``lrlab/course``): an empty
    folder in place of the library's, every entry but the tooling bound back into it, then made read-only.
    (An empty folder over ``course/`` alone would still import, as a namespace package.)"""
    library = _lrlab_dir()
    args = ["--tmpfs", str(library)]
    for entry in sorted(library.iterdir()):
        if entry.name != TOOLING:
            args += ["--ro-bind", str(entry), str(entry)]
    return [*args, "--remount-ro", str(library)]


@dataclass(frozen=True)
class Sandbox:
    """How to build a box. Immutable; :meth:`with_limits` returns a changed copy.

    Attributes:
        limits: the resource limits (:class:`Limits`).
        readonly: extra host folders to mount read-only at the same path (besides the system,
            the Python environment and the learner library ``lrlab``, which are always there).
        hidden: host folders that must not be visible even when they lie inside a mounted folder
            (the course root, the instructor's home); mounted over with an empty ``tmpfs``.
            The Python environment and ``lrlab`` are mounted again on top, so they stay visible.
        unsafe: no box at all, only the resource limits and a private working folder. For machines
            without bubblewrap, on the instructor's explicit request (``--unsafe``).
        env: extra environment variables for the command inside the box.
        home_from: a host folder copied into the box's home before the command starts (default for
            :meth:`wrap`'s argument of the same name).
    """

    limits: Limits = field(default_factory=Limits)
    readonly: tuple[Path, ...] = ()
    hidden: tuple[Path, ...] = ()
    unsafe: bool = False
    env: tuple[tuple[str, str], ...] = ()
    home_from: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.limits, Limits):
            raise ValueError(f"limits must be a lrlab.course.grading.sandbox.Limits, got {type(self.limits).__name__}")
        for name in ("readonly", "hidden"):
            for path in getattr(self, name):
                if not Path(path).is_absolute():
                    raise ValueError(f"Sandbox.{name} paths must be absolute, got {str(path)!r}")

    def with_limits(self, **changes: float) -> Sandbox:
        """A copy with some limits changed, e.g. ``box.with_limits(wall_s=30)``."""
        return replace(self, limits=replace(self.limits, **changes))

    # -- building the command ------------------------------------------------------------------

    def environment(self, extra: Mapping[str, str] | None = None, home: str = BOX_HOME) -> dict[str, str]:
        """The complete environment of the command in the box: a few safe variables of the caller,
        a private HOME, a PATH with the Python environment first, and ``extra``."""
        env = {k: v for k, v in os.environ.items()
               if k in PASSED_ENV or k.startswith(PASSED_ENV_PREFIXES)}
        env.setdefault("LANG", "C.UTF-8")
        env["HOME"] = home
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin",
                                       "/bin"])
        env["PYTHONNOUSERSITE"] = "1"
        env["MPLCONFIGDIR"] = f"{home}/.config/matplotlib"
        env["XDG_CACHE_HOME"] = f"{home}/.cache"
        env["TMPDIR"] = "/tmp"
        env.update(dict(self.env))
        env.update(dict(extra or {}))
        return env

    def wrap(self, argv: Sequence[str], *, workdir: str = "work", copy_from: Path | None = None,
             home_from: Path | None = None, writable: Sequence[Path] = (),
             env: Mapping[str, str] | None = None) -> list[str]:
        """The argument list that runs ``argv`` in a box.

        Args:
            argv: the command (its first element an absolute path or a name on the box's PATH).
            workdir: the working folder, relative to the box's private home (created; the command
                starts in it). In unsafe mode it is made under the first ``writable`` folder.
            copy_from: a host folder whose contents are copied into the working folder before the
                command starts (mounted read-only for the copy).
            home_from: a host folder whose contents are copied into the box's home first (e.g. a
                matplotlib font cache, so that every box does not rebuild it).
            writable: host folders mounted read-write at the same path (e.g. a folder for a kernel's
                sockets). Keep them private to this box.
            env: extra environment variables (see :meth:`environment`).
        """
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("argv must name a command, got an empty list")
        if not workdir or Path(workdir).is_absolute() or ".." in Path(workdir).parts:
            raise ValueError(f"workdir must be a relative folder name inside the box's home, got {workdir!r}")
        writable = [Path(p).resolve() for p in writable]
        for path in writable:
            if not path.is_dir():
                raise ValueError(f"writable folder {str(path)!r} must exist and be a folder")
        sources = {}
        home_from = home_from if home_from is not None else self.home_from
        for name, folder in (("copy_from", copy_from), ("home_from", home_from)):
            if folder is not None:
                folder = Path(folder).resolve()
                if not folder.is_dir():
                    raise ValueError(f"{name} {str(folder)!r} must be an existing folder")
                sources[name] = str(folder)
        if self.unsafe:
            if not writable:
                raise ValueError("unsafe mode needs a writable folder to hold the working folder")
            home = str(writable[0] / "home")
            spec = {"workdir": str(Path(home) / workdir), **sources, "rlimits": self.limits.rlimits(),
                    "env": self.environment(env, home=home)}
            return [sys.executable, "-S", "-c", _LAUNCHER, json.dumps(spec), *argv]

        home = BOX_HOME
        spec = {"workdir": f"{home}/{workdir}", **sources, "rlimits": self.limits.rlimits()}
        args = [bwrap_path(), *_isolation_flags()]
        args += _system_mounts()
        # The box's own /proc, /dev and /tmp come first: the environment may itself live under /tmp
        # (a course cloned there), and a tmpfs mounted after its binds would hide it.
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += [*_size_flag(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        binds = sorted({Path(p) for p in [*_python_dirs(), _lrlab_dir(), *self.readonly]},
                       key=lambda p: (len(p.parts), str(p)))
        for path in binds:
            args += ["--ro-bind", str(path), str(path)]
        # Hide what must stay invisible even inside a mounted folder (an empty tmpfs over a folder,
        # /dev/null over a file), then mount again the parts of the environment that lie inside it.
        for hidden in sorted({Path(h) for h in self.hidden}, key=lambda p: len(p.parts)):
            if not any(_inside(hidden, b) for b in binds) or not hidden.exists():
                continue
            if hidden.is_dir():
                args += ["--tmpfs", str(hidden)]
            else:
                args += ["--ro-bind", "/dev/null", str(hidden)]
            for path in binds:
                if path != hidden and _inside(path, hidden):
                    args += ["--ro-bind", str(path), str(path)]
        args += _library_only()
        args += [*_size_flag(self.limits.home_bytes), "--tmpfs", home]
        for folder in sources.values():
            args += ["--ro-bind", folder, folder]
        for path in writable:
            args += ["--bind", str(path), str(path)]
        args += ["--clearenv"]
        for key, value in self.environment(env, home=home).items():
            args += ["--setenv", key, value]
        args += ["--chdir", home, "--", sys.executable, "-S", "-c", _LAUNCHER, json.dumps(spec), *argv]
        return args


@functools.cache
def bwrap_path() -> str:
    """The path of the ``bwrap`` program, or ``""`` when it is not installed."""
    return shutil.which("bwrap") or ""


@functools.cache
def _bwrap_help() -> str:
    if not bwrap_path():
        return ""
    proc = subprocess.run([bwrap_path(), "--help"], capture_output=True, text=True, timeout=10)
    return proc.stdout + proc.stderr


def _isolation_flags() -> list[str]:
    flags = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if "--disable-userns" in _bwrap_help():
        flags.append("--disable-userns")
    return flags


def _size_flag(size: int) -> list[str]:
    return ["--size", str(int(size))] if "--size" in _bwrap_help() else []


def _system_mounts() -> list[str]:
    args: list[str] = []
    for name in _SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    for name in _ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def matplotlib_cache_seed(dest: Path) -> Path:
    """Fill ``dest`` with a copy of this machine's matplotlib font cache, laid out as a box home.

    Pass the result as ``home_from``: matplotlib in the box then finds its font list instead of
    spending seconds rebuilding it in every box. Nothing is copied when there is no cache yet."""
    dest = Path(dest)
    target = dest / ".config" / "matplotlib"
    target.mkdir(parents=True, exist_ok=True)
    home = Path.home()
    candidates = [os.environ.get("MPLCONFIGDIR"), os.path.join(os.environ.get("XDG_CACHE_HOME", ""), "matplotlib"),
                  home / ".cache" / "matplotlib", home / ".matplotlib"]
    for folder in candidates:
        if folder and Path(folder).is_dir():
            found = sorted(Path(folder).glob("fontlist-v*.json"))
            for path in found:
                shutil.copyfile(path, target / path.name)
            if found:
                break
    return dest


# -- availability --------------------------------------------------------------------------------

INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`, Fedora: `sudo dnf install "
    "bubblewrap`, Arch: `sudo pacman -S bubblewrap`)"
)


@functools.cache
def sandbox_problem() -> str | None:
    """Why no sandbox can be made here, as a sentence; ``None`` when a trial box works.

    The trial starts the real box (same mounts and flags) around ``python -S -c pass``, so a
    machine that has ``bwrap`` but forbids user namespaces (some containers, Ubuntu's AppArmor
    restriction) is caught here and not in the middle of grading.
    """
    if not sys.platform.startswith("linux"):
        return f"the sandbox needs Linux namespaces (bubblewrap), and this machine runs {sys.platform}"
    if not bwrap_path():
        return f"bubblewrap (`bwrap`) is not installed; {INSTALL_HINT}"
    box = Sandbox(limits=Limits(wall_s=30))
    try:
        result = run_in_box([sys.executable, "-S", "-c", "pass"], sandbox=box)
    except (OSError, subprocess.SubprocessError) as exc:  # pragma: no cover - depends on the machine
        return f"bubblewrap is installed but could not be started: {exc}"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        detail = lines[-1] if lines else f"exit {result.returncode}"
        return (
            f"bubblewrap is installed but cannot make a sandbox here ({detail}); user namespaces are "
            "probably disabled (sysctl kernel.unprivileged_userns_clone=0, Ubuntu's "
            "kernel.apparmor_restrict_unprivileged_userns=1, or a container without namespace support)"
        )
    return None


def require_sandbox() -> None:
    """Raise :class:`SandboxUnavailable` naming the reason when no sandbox can be made."""
    problem = sandbox_problem()
    if problem:
        raise SandboxUnavailable(
            f"Cannot sandbox learners' code: {problem}. Grading without a sandbox runs every submission "
            "with your own privileges; pass --unsafe only if you trust every submission."
        )


# -- running a command to completion -------------------------------------------------------------

@dataclass
class BoxResult:
    """What :func:`run_in_box` observed.

    Attributes:
        returncode: the exit status (negative: killed by that signal).
        stdout, stderr: the output, each capped at ``Limits.output_bytes`` (decoded as UTF-8).
        timed_out: the wall-clock limit was reached and the box was killed.
        truncated: some output was dropped because of the cap.
        seconds: wall-clock duration.
    """

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0


def _drain(stream, cap: int, sink: list[bytes], flags: dict) -> None:
    """Read a pipe to its end, keeping the first ``cap`` bytes (reading on, so the writer never blocks)."""
    kept = 0
    while chunk := stream.read(65536):
        room = cap - kept
        if len(chunk) > room:
            flags["truncated"] = True
        if room > 0:
            sink.append(chunk[:room])
            kept += min(room, len(chunk))
    stream.close()


def wait_unreaped(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``proc`` to end WITHOUT reaping it; True when it ended.

    Leaving it unreaped keeps its pid (the box's process group id) reserved, so a later
    :func:`kill_box` can never hit an unrelated process that reused the number.
    """
    if not hasattr(os, "waitid"):  # macOS: no way to wait without reaping; fine for unsafe mode
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def kill_box(proc: subprocess.Popen) -> None:
    """Kill a box started with :meth:`Sandbox.wrap` and everything in it.

    The box leads its own process group (start it with ``start_new_session=True``); killing the
    group kills ``bwrap``, and ``--die-with-parent`` plus the PID namespace take every process of
    the box with it. In unsafe mode the same group kill reaches the command and its children
    (except ones that started a new session themselves: unsafe mode cannot catch those).
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def run_in_box(argv: Sequence[str], *, sandbox: Sandbox | None = None, workdir: str = "work",
        copy_from: Path | None = None, home_from: Path | None = None, stdin: bytes | None = None,
        env: Mapping[str, str] | None = None) -> BoxResult:
    """Run ``argv`` in a box until it ends or its wall-clock limit passes, and return what happened.

    stdout and stderr are read while the command runs and capped at ``limits.output_bytes`` each,
    so a command that prints gigabytes cannot fill the caller's memory. At the end the whole box is
    killed (nothing it started survives). In unsafe mode a private temporary folder holds the
    working folder and is removed afterwards.
    """
    box = sandbox if sandbox is not None else Sandbox()
    if not isinstance(box, Sandbox):
        raise ValueError(f"sandbox must be a lrlab.course.grading.sandbox.Sandbox, got {type(box).__name__}")
    scratch = tempfile.mkdtemp(prefix="lrlab-box-")
    try:
        writable = [Path(scratch)] if box.unsafe else []
        cmd = box.wrap(argv, workdir=workdir, copy_from=copy_from, home_from=home_from, writable=writable, env=env)
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                cwd=scratch)
        out: list[bytes] = []
        err: list[bytes] = []
        flags: dict = {}
        readers = [threading.Thread(target=_drain, args=(proc.stdout, box.limits.output_bytes, out, flags)),
                   threading.Thread(target=_drain, args=(proc.stderr, box.limits.output_bytes, err, flags))]
        for reader in readers:
            reader.daemon = True
            reader.start()
        if stdin is not None:
            try:
                proc.stdin.write(stdin)
                proc.stdin.close()
            except BrokenPipeError:
                pass
        timed_out = not wait_unreaped(proc, box.limits.wall_s)
        kill_box(proc)
        proc.wait()
        for reader in readers:
            reader.join(timeout=5)
        return BoxResult(
            returncode=proc.returncode,
            stdout=b"".join(out).decode("utf-8", "replace"),
            stderr=b"".join(err).decode("utf-8", "replace"),
            timed_out=timed_out,
            truncated=bool(flags.get("truncated")),
            seconds=time.monotonic() - start,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
