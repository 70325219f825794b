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
* every writable place has a size cap: the root file system and ``/dev`` are read-only, and the
  only writable places are the private home, ``/tmp``, ``/dev/shm`` and the kernel's runtime folder
  (each a ``tmpfs`` with its own size, :class:`Limits`), plus host folders the caller names
  explicitly (``writable``). Hitting a cap is an ``ENOSPC`` inside the box, which
  :func:`cap_reason` turns into a sentence. Nothing else of the host's disk or memory is reachable.
  The course's ``source/``, the gradebook, other learners' files and the instructor's home are
  simply not there;
* the learner's code never runs as root: when the grader itself runs as root, the box is built
  without a user namespace and the command drops to an unprivileged uid of its own
  (:func:`box_uid`) before it starts, so ``RLIMIT_NPROC`` (which Linux does not apply to root)
  holds and the box's processes cannot touch another box's;
* no new user namespace can be made in the box (in one, code could mount a tmpfs of any size):
  bubblewrap's ``--disable-userns``, or, when root starts the box or bubblewrap lacks that option,
  a seccomp filter the launcher installs (x86-64 and arm64);
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
import itertools
import json
import os
import re
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
            apply it to root, which is why a box started by root runs its command as a uid of its own.
        file_bytes: size of any single file the box writes (``RLIMIT_FSIZE``).
        open_files: open file descriptors per process (``RLIMIT_NOFILE``).
        home_bytes: size of the private home ``tmpfs`` (the working folder lives in it).
        tmp_bytes: size of the box's ``/tmp``.
        shm_bytes: size of the box's ``/dev/shm`` (shared memory; PyTorch's data loader workers use it).
        runtime_bytes: size of the kernel's runtime folder inside the box (``runtime`` of :meth:`Sandbox.wrap`).
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
    shm_bytes: int = 64 * MiB
    runtime_bytes: int = 16 * MiB
    output_bytes: int = 4 * MiB

    def __post_init__(self) -> None:
        for name in ("wall_s", "cpu_s", "processes", "file_bytes", "open_files", "home_bytes",
                     "tmp_bytes", "shm_bytes", "runtime_bytes", "output_bytes"):
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
if spec.get("runtime"):
    shutil.copytree(spec["runtime_seed"], spec["runtime"], symlinks=True, dirs_exist_ok=True)
drop = spec.get("drop")
if drop:  # started by root: hand the writable places to the box's own uid, then become it
    uid = drop["uid"]
    for top in drop["tree"]:
        for folder, dirs, files in os.walk(top):
            for name in [folder] + [os.path.join(folder, n) for n in dirs + files]:
                os.lchown(name, uid, uid)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if os.getuid() == 0 or os.geteuid() == 0:
        sys.exit("lrlab sandbox: could not drop root")
if spec.get("no_userns"):  # no new user namespace (in one, a tmpfs of any size could be mounted)
    import ctypes, platform, struct
    known = {"x86_64": (0xC000003E, 272, 56), "aarch64": (0xC00000B7, 97, 220)}
    if platform.machine() not in known:
        sys.exit(f"lrlab sandbox: cannot forbid user namespaces on {platform.machine()}; grade as an "
                 "ordinary user with bubblewrap 0.8 or later (--disable-userns)")
    arch, unshare_nr, clone_nr = known[platform.machine()]
    def op(code, k, jt=0, jf=0):
        return struct.pack("HBBI", code, jt, jf, k)
    ret, ld, jeq, jge, jset = 0x06, 0x20, 0x15, 0x35, 0x45
    allow, eperm, enosys = 0x7FFF0000, 0x00050001, 0x00050026
    prog = b"".join([
        op(ld, 4), op(jeq, arch, 1, 0), op(ret, eperm),           # another ABI: refuse everything
        op(ld, 0), op(jge, 0x40000000, 0, 1), op(ret, enosys),    # x32 system calls
        op(jeq, 435, 0, 1), op(ret, enosys),                      # clone3: flags unreadable; libc falls back
        op(jeq, unshare_nr, 1, 0), op(jeq, clone_nr, 0, 3),
        op(ld, 16), op(jset, 0x10000000, 0, 1), op(ret, eperm),   # CLONE_NEWUSER
        op(ret, allow),
    ])
    buf = ctypes.create_string_buffer(prog)
    fprog = struct.pack("HxxxxxxQ", len(prog) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.c_char_p(fprog), 0, 0) != 0:
        sys.exit(f"lrlab sandbox: could not forbid user namespaces (errno {ctypes.get_errno()})")
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
             env: Mapping[str, str] | None = None, runtime: Path | None = None) -> list[str]:
        """The argument list that runs ``argv`` in a box.

        Args:
            argv: the command (its first element an absolute path or a name on the box's PATH).
            workdir: the working folder, relative to the box's private home (created; the command
                starts in it). In unsafe mode it is made under the first ``writable`` folder.
            copy_from: a host folder whose contents are copied into the working folder before the
                command starts (mounted read-only for the copy).
            home_from: a host folder whose contents are copied into the box's home first (e.g. a
                matplotlib font cache, so that every box does not rebuild it).
            writable: host folders mounted read-write at the same path. Keep them private to this
                box: what the box writes there lands on the host with no size cap (only the file-size
                limit). When root starts the box, each is handed to the box's uid (``chown``, with
                its contents). Prefer ``runtime`` for a kernel's sockets.
            env: extra environment variables (see :meth:`environment`).
            runtime: a host folder (e.g. holding a kernel's connection file) that the box sees at the
                same path as a private ``tmpfs`` of ``Limits.runtime_bytes``, filled with a copy of
                the folder's files. What the box writes there stays in the box; the host reaches
                it (the kernel's sockets) through :func:`box_path`.
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
        if runtime is not None:
            runtime = Path(runtime).resolve()
            if not runtime.is_dir():
                raise ValueError(f"runtime folder {str(runtime)!r} must exist and be a folder")
        sources = {}
        home_from = home_from if home_from is not None else self.home_from
        for name, folder in (("copy_from", copy_from), ("home_from", home_from)):
            if folder is not None:
                folder = Path(folder).resolve()
                if not folder.is_dir():
                    raise ValueError(f"{name} {str(folder)!r} must be an existing folder")
                sources[name] = str(folder)
        if self.unsafe:
            if runtime is not None:
                writable = [*writable, runtime]
            if not writable:
                raise ValueError("unsafe mode needs a writable folder to hold the working folder")
            home = str(writable[0] / "home")
            spec = {"workdir": str(Path(home) / workdir), **sources, "rlimits": self.limits.rlimits(),
                    "env": self.environment(env, home=home)}
            return [sys.executable, "-S", "-c", _LAUNCHER, json.dumps(spec), *argv]

        home = BOX_HOME
        spec = {"workdir": f"{home}/{workdir}", **sources, "rlimits": self.limits.rlimits()}
        as_root = os.geteuid() == 0
        args = [bwrap_path(), *_isolation_flags(as_root)]
        args += _system_mounts()
        # The box's own /proc, /dev and /tmp come first: the environment may itself live under /tmp
        # (a course cloned there), and a tmpfs mounted after its binds would hide it.
        args += ["--proc", "/proc", "--dev", "/dev"]
        args += ["--perms", "1777", *_size_flag(self.limits.shm_bytes), "--tmpfs", "/dev/shm"]
        args += ["--perms", "1777", *_size_flag(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        binds = sorted({Path(p) for p in [*_python_dirs(), _lrlab_dir(), *self.readonly]},
                       key=lambda p: (len(p.parts), str(p)))
        for path in binds:
            args += [*_parents(path), "--ro-bind", str(path), str(path)]
        # Hide what must stay invisible even inside a mounted folder (an empty tmpfs over a folder,
        # /dev/null over a file), then mount again the parts of the environment that lie inside it.
        read_only = ["/dev"]
        for hidden in sorted({Path(h) for h in self.hidden}, key=lambda p: len(p.parts)):
            if not any(_inside(hidden, b) for b in binds) or not hidden.exists():
                continue
            if hidden.is_dir():
                args += ["--perms", "0755", *_size_flag(MiB), "--tmpfs", str(hidden)]
                read_only.append(str(hidden))
            else:
                args += ["--ro-bind", "/dev/null", str(hidden)]
            for path in binds:
                if path != hidden and _inside(path, hidden):
                    args += [*_parents(path), "--ro-bind", str(path), str(path)]
        args += _library_only()
        args += [*_parents(Path(home)), *_size_flag(self.limits.home_bytes), "--tmpfs", home]
        for folder in sources.values():
            args += [*_parents(Path(folder)), "--ro-bind", folder, folder]
        for path in writable:
            args += [*_parents(path), "--bind", str(path), str(path)]
        if runtime is not None:
            args += [*_parents(Path(RUNTIME_SEED)), "--ro-bind", str(runtime), RUNTIME_SEED]
            args += [*_parents(runtime), "--perms", "0700", *_size_flag(self.limits.runtime_bytes),
                     "--tmpfs", str(runtime)]
            spec |= {"runtime": str(runtime), "runtime_seed": RUNTIME_SEED}
        if as_root or "--disable-userns" not in _bwrap_help():
            spec["no_userns"] = True
        if as_root:
            tree = [home] + ([str(runtime)] if runtime is not None else [])
            spec["drop"] = {"uid": box_uid(), "tree": tree + [str(p) for p in writable]}
        for folder in read_only:  # the tmpfs over a hidden folder holds only mount points
            args += ["--remount-ro", folder]
        # nothing else is writable: the root file system and /dev (whose /dev/shm is its own tmpfs)
        args += ["--remount-ro", "/"]
        args += ["--clearenv"]
        for key, value in self.environment(env, home=home).items():
            args += ["--setenv", key, value]
        args += ["--chdir", home, "--", sys.executable, "-S", "-c", _LAUNCHER, json.dumps(spec), *argv]
        return args


def _parents(path: Path) -> list[str]:
    """Make the folders above a mount point readable for everyone (bubblewrap run by root makes
    them private, which would lock the box's own unprivileged user out of its environment)."""
    args: list[str] = []
    for parent in reversed(Path(path).parents):
        if parent != Path("/"):
            args += ["--perms", "0755", "--dir", str(parent)]
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


def _isolation_flags(as_root: bool = False) -> list[str]:
    if as_root:
        # A user namespace made by root maps the box to uid 0, where RLIMIT_NPROC does not apply.
        # So: no user namespace; the launcher keeps only what it needs to hand the writable places
        # to the box's uid and become it (which clears these capabilities too).
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--cap-add", "CAP_CHOWN",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    flags = ["--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    if "--disable-userns" in _bwrap_help():
        flags.append("--disable-userns")
    return flags


def _size_flag(size: int) -> list[str]:
    if "--size" not in _bwrap_help():
        raise SandboxUnavailable(SIZE_PROBLEM)
    return ["--size", str(int(size))]


#: Where the box sees the host's runtime folder before the launcher copies it into its tmpfs.
RUNTIME_SEED = "/run/lrlab-runtime-seed"
#: The box uids (used when root starts a box) are taken from here, one per box.
BOX_UID_BASE = 1_800_000_000
BOX_UID_SPAN = 1_000_000
_uid_counter = itertools.count()
SIZE_PROBLEM = ("this bubblewrap cannot cap the size of the box's tmpfs folders (no --size option; it needs "
                "bubblewrap 0.7.0 or later), and without caps one submission could fill the machine's memory")


def box_uid() -> int:
    """A uid for the next box started by root: unprivileged, used by no account, different for every
    box of this process (and, with high probability, of other grading processes)."""
    return BOX_UID_BASE + (os.getpid() * 4099 + next(_uid_counter)) % BOX_UID_SPAN


def box_path(pid: int, path: str | Path, timeout: float = 5.0) -> Path:
    """Where the host reaches ``path`` as the box started as process ``pid`` sees it.

    ``pid`` is the process that :meth:`Sandbox.wrap`'s command started (``bwrap``). The result goes
    through ``/proc/<box process>/root``; use it to connect to a socket the box made in its runtime
    folder. Waits up to ``timeout`` seconds for the box to be set up.
    """
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise ValueError(f"pid must be a positive int, got {pid!r}")
    path = Path(path)
    if not path.is_absolute():
        raise ValueError(f"path must be absolute (as the box sees it), got {str(path)!r}")
    try:
        outer = os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError as exc:
        raise ValueError(f"no process {pid} to find a box under ({exc})") from None
    deadline = time.monotonic() + timeout
    while True:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    ppid = int(fh.read().rsplit(b")", 1)[1].split()[1])
                if ppid == pid and os.readlink(f"/proc/{entry}/ns/mnt") != outer:
                    return Path(f"/proc/{entry}/root") / path.relative_to("/")
            except (OSError, ValueError, IndexError):
                continue
        if time.monotonic() >= deadline:
            raise ValueError(f"process {pid} has no box process (is it a box started from Sandbox.wrap?)")
        time.sleep(0.01)


_ENOSPC = re.compile(r"(?:\[Errno 28\]|No space left on device)[^\n]*?['\"](/[^'\"]*)['\"]")
_EROFS = re.compile(r"(?:\[Errno 30\]|Read-only file system)[^\n]*?['\"](/[^'\"]*)['\"]")


def cap_reason(text: str, limits: Limits | None = None, runtime: str | Path | None = None) -> str | None:
    """A sentence naming the size cap or write restriction behind an error in ``text``, or None.

    ``text`` is what the box printed or an error message (``OSError: [Errno 28] No space left on
    device: '/tmp/x'``, ``Read-only file system``, ``File too large``/``SIGXFSZ``)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    limits = limits or Limits()
    m = _ENOSPC.search(text)
    if m or "No space left on device" in text or "[Errno 28]" in text:
        # the last path of the line: the destination of a copy ('src' -> 'dst')
        where = re.findall(r"['\"](/[^'\"]*)['\"]", text[m.start():].split("\n", 1)[0])[-1] if m else ""
        places = [("/dev/shm", "/dev/shm", limits.shm_bytes), ("/tmp", "/tmp", limits.tmp_bytes),
                  (BOX_HOME, "the home folder", limits.home_bytes)]
        if runtime is not None:
            places.insert(0, (str(runtime), "the kernel's runtime folder", limits.runtime_bytes))
        for prefix, name, size in places:
            if where == prefix or where.startswith(prefix.rstrip("/") + "/"):
                return f"the code filled {name} of its sandbox (capped at {size // MiB} MB)"
        return "the code filled a size-capped folder of its sandbox (no space left on device)"
    m = _EROFS.search(text)
    if m or "Read-only file system" in text:
        where = f" ({m.group(1)})" if m else ""
        return (f"the code wrote outside the writable folders of its sandbox{where}; only the home folder, "
                "/tmp and /dev/shm are writable")
    if "File too large" in text or "SIGXFSZ" in text or "[Errno 27]" in text:
        return f"the code wrote a file larger than the sandbox's limit ({limits.file_bytes // MiB} MB)"
    return None


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
    if "--size" not in _bwrap_help():
        return SIZE_PROBLEM
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
        limit_reason: the size cap or write restriction the command ran into (:func:`cap_reason`
            of its stderr), or None.
    """

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False
    seconds: float = 0.0
    limit_reason: str | None = None


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
        stderr = b"".join(err).decode("utf-8", "replace")
        return BoxResult(
            returncode=proc.returncode,
            stdout=b"".join(out).decode("utf-8", "replace"),
            stderr=stderr,
            timed_out=timed_out,
            truncated=bool(flags.get("truncated")),
            seconds=time.monotonic() - start,
            limit_reason=cap_reason(stderr, box.limits),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
