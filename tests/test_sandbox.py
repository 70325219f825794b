"""lrlab.course.grading.sandbox: what a box hides, what it forbids, the limits it sets, and the errors it gives."""

from __future__ import annotations

import os
import socket
import sys
import uuid
from pathlib import Path

import pytest

import lrlab
from lrlab.course.errors import SandboxUnavailable
from lrlab.course.grading import sandbox as sb

ROOT = Path(__file__).resolve().parents[1]
needs_box = pytest.mark.sandbox  # skipped where no sandbox can be made; a failure under LRLAB_REQUIRE_SANDBOX=1


def py(code: str, box: sb.Sandbox | None = None, **kwargs) -> sb.BoxResult:
    """Run Python code in a box (the course root hidden, as the grader does)."""
    box = box or sb.Sandbox(hidden=(ROOT, Path.home()), limits=sb.Limits(wall_s=30))
    return sb.run_in_box([sys.executable, "-c", code], sandbox=box, **kwargs)


# -- input validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("wall_s", 0), ("cpu_s", -1), ("processes", 0), ("file_bytes", 0),
                                          ("home_bytes", -5), ("output_bytes", 0)])
def test_limits_reject_non_positive_values(field, value):
    with pytest.raises(ValueError, match=f"Limits.{field} must be a positive number"):
        sb.Limits(**{field: value})


def test_limits_reject_too_little_memory():
    with pytest.raises(ValueError, match="at least 256 MiB"):
        sb.Limits(memory_bytes=100 * sb.MiB)
    assert ("RLIMIT_AS", 2 * sb.GiB) in sb.Limits(memory_bytes=2 * sb.GiB).rlimits()
    assert all(name != "RLIMIT_AS" for name, _ in sb.Limits(memory_bytes=0).rlimits())


def test_sandbox_rejects_relative_paths_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="must be absolute"):
        sb.Sandbox(hidden=(Path("relative"),))
    box = sb.Sandbox()
    with pytest.raises(ValueError, match="empty list"):
        box.wrap([])
    with pytest.raises(ValueError, match="relative folder name"):
        box.wrap(["true"], workdir="../escape")
    with pytest.raises(ValueError, match="must exist"):
        box.wrap(["true"], writable=[tmp_path / "missing"])
    with pytest.raises(ValueError, match="needs a writable folder"):
        sb.Sandbox(unsafe=True).wrap(["true"])


def test_missing_bwrap_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(sb, "bwrap_path", lambda: "")
    problem = sb.sandbox_problem.__wrapped__()
    assert "not installed" in problem and "apt-get install bubblewrap" in problem
    monkeypatch.setattr(sb, "sandbox_problem", lambda: problem)
    with pytest.raises(SandboxUnavailable, match="--unsafe"):
        sb.require_sandbox()


def test_a_bwrap_that_cannot_make_namespaces_is_reported(monkeypatch, tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sb, "bwrap_path", lambda: str(fake))
    monkeypatch.setattr(sb, "_bwrap_help", lambda: "--size BYTES")
    if not sys.platform.startswith("linux"):
        pytest.skip("the namespace check only runs on Linux")
    problem = sb.sandbox_problem.__wrapped__()
    assert "cannot make a sandbox here" in problem and "Permission denied" in problem


def test_a_bwrap_that_cannot_cap_tmpfs_sizes_is_refused(monkeypatch):
    """No box without size caps: an old bubblewrap (no --size) is a reason, not a silent unbounded tmpfs."""
    monkeypatch.setattr(sb, "bwrap_path", lambda: "/usr/bin/bwrap")
    monkeypatch.setattr(sb, "_bwrap_help", lambda: "--tmpfs DEST")
    if not sys.platform.startswith("linux"):
        pytest.skip("the bubblewrap check only runs on Linux")
    assert sb.sandbox_problem.__wrapped__() == sb.SIZE_PROBLEM
    with pytest.raises(sb.SandboxUnavailable, match="--size"):
        sb.Sandbox().wrap(["true"])


# -- isolation --------------------------------------------------------------------------------------

def _private_home_entry() -> Path | None:
    """Something in the instructor's home that is not part of the Python environment, if anything."""
    env = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    for entry in sorted(Path.home().iterdir()) if Path.home().is_dir() else []:
        if not any(entry == p or entry in p.parents for p in env):
            return entry
    return None


@needs_box
def test_course_home_and_secrets_are_invisible(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    private = _private_home_entry()
    result = py(
        "import os, pathlib\n"
        f"root = pathlib.Path({str(ROOT)!r})\n"
        "print('config', (root / 'nbgrader_config.py').exists())\n"
        "print('source', (root / 'source').exists())\n"
        f"print('home', {str(private)!r} != 'None' and os.path.lexists({str(private)!r}))\n"
        "print('secret', 'AWS_SECRET_ACCESS_KEY' in os.environ)\n"
        "print('cwd', os.getcwd())\n"
    )
    assert result.returncode == 0, result.stderr
    assert "config False" in result.stdout and "source False" in result.stdout
    assert "home False" in result.stdout and "secret False" in result.stdout
    assert f"cwd {sb.BOX_HOME}/work" in result.stdout


@needs_box
def test_environment_and_lrlab_are_read_only_and_importable():
    lrlab_init = Path(lrlab.__file__)
    result = py(
        "import lrlab.checks, sys\n"
        f"try:\n    open({str(lrlab_init)!r}, 'a')\n    print('WRITABLE')\nexcept OSError as e:\n    print(e)\n"
        f"try:\n    open({str(Path(sys.prefix) / 'x.txt')!r}, 'w')\n    print('WRITABLE')\nexcept OSError as e:\n"
        "    print(e)\n"
        "open('answer.txt', 'w').write('ok')\nprint(open('answer.txt').read())\n"
    )
    assert result.returncode == 0, result.stderr
    # read-only mounts (EROFS), or, when root started the box, files the box's own uid does not own (EACCES)
    refused = result.stdout.count("Read-only file system") + result.stdout.count("Permission denied")
    assert "WRITABLE" not in result.stdout and refused == 2
    assert result.stdout.strip().endswith("ok")


@needs_box
def test_the_box_has_the_learner_library_but_not_the_grading_tools():
    library = Path(lrlab.__file__).resolve().parent
    result = py(
        "import os, lrlab, lrlab.tables\n"
        "print('LIBRARY', os.path.dirname(lrlab.__file__))\n"
        "for name in ('lrlab.course', 'lrlab.course.grading.sandbox'):\n"
        "    try:\n        __import__(name)\n        print('TOOLING-VISIBLE', name)\n"
        "    except ModuleNotFoundError as e:\n        print('TOOLING-HIDDEN', e.name)\n"
        f"print('LISTED', 'course' in os.listdir({str(library)!r}))\n"
        f"try:\n    open(os.path.join({str(library)!r}, 'planted.py'), 'w')\n    print('WRITABLE')\n"
        "except OSError as e:\n    print('READ-ONLY', e)\n"
    )
    assert result.returncode == 0, result.stderr
    assert f"LIBRARY {library}" in result.stdout
    assert result.stdout.count("TOOLING-HIDDEN lrlab.course") == 2 and "TOOLING-VISIBLE" not in result.stdout
    assert "LISTED False" in result.stdout
    assert "READ-ONLY" in result.stdout and "WRITABLE" not in result.stdout
    assert not (library / "planted.py").exists()


@needs_box
def test_no_network_not_even_the_hosts_loopback():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        result = py(
            "import socket\n"
            f"for addr in [('127.0.0.1', {port}), ('1.1.1.1', 53)]:\n"
            "    try:\n        socket.create_connection(addr, timeout=2)\n        print('OPEN')\n"
            "    except OSError as e:\n        print('BLOCKED', e)\n"
        )
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.stdout.count("BLOCKED") == 2 and "OPEN" not in result.stdout


@needs_box
def test_own_process_tree_and_nothing_survives_the_box(tmp_path):
    token = f"lrlab-survivor-{uuid.uuid4().hex}"
    result = py(
        "import os, subprocess, sys\n"
        "print('pid', os.getpid())\n"
        "print('procs', len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', {token!r}], start_new_session=True)\n"
    )
    assert result.returncode == 0, result.stderr
    pid = int(result.stdout.split("pid ")[1].split()[0])
    procs = int(result.stdout.split("procs ")[1].split()[0])
    assert pid < 10 and procs < 10  # a fresh PID namespace, not the machine's processes
    alive = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, token)]
    assert alive == []


def _cmdline_has(pid: str, token: str) -> bool:
    try:
        return token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# -- limits -----------------------------------------------------------------------------------------

@needs_box
def test_wall_time_kills_the_whole_box():
    token = f"lrlab-loop-{uuid.uuid4().hex}"
    box = sb.Sandbox(limits=sb.Limits(wall_s=2))
    code = (f"import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'while True: pass', {token!r}])\n"
            "while True:\n    pass\n")
    result = sb.run_in_box([sys.executable, "-c", code], sandbox=box)
    assert result.timed_out and result.returncode != 0
    assert 1.5 < result.seconds < 15
    assert [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, token)] == []


@needs_box
def test_memory_cpu_and_file_size_limits():
    box = sb.Sandbox(limits=sb.Limits(wall_s=30, memory_bytes=1 * sb.GiB, cpu_s=1, file_bytes=1 * sb.MiB))
    memory = py("x = bytearray(4 * 2**30)", box)
    assert memory.returncode != 0 and "MemoryError" in memory.stderr
    big_file = py("open('big', 'wb').write(b'x' * (2 * 2**20))", box)
    assert big_file.returncode != 0 and "File too large" in big_file.stderr
    cpu = py("while True:\n    pass", box)
    assert not cpu.timed_out and cpu.returncode != 0 and cpu.seconds < 20  # SIGXCPU after ~1 s of CPU


@needs_box
def test_output_is_capped():
    box = sb.Sandbox(limits=sb.Limits(wall_s=30, output_bytes=1000))
    result = py("import sys\nsys.stdout.write('x' * 10_000_000)", box)
    assert result.returncode == 0 and result.truncated and len(result.stdout) == 1000


def test_unsafe_mode_still_applies_limits_and_a_private_folder():
    box = sb.Sandbox(unsafe=True, limits=sb.Limits(wall_s=30, memory_bytes=1 * sb.GiB))
    code = "import os, resource\nprint(resource.getrlimit(resource.RLIMIT_AS)[0])\nprint(os.getcwd())\n"
    result = sb.run_in_box([sys.executable, "-c", code + "x = bytearray(4 * 2**30)"], sandbox=box)
    assert str(1 * sb.GiB) in result.stdout and "MemoryError" in result.stderr
    cwd = result.stdout.split()[1]
    assert cwd.endswith("/home/work") and not Path(cwd).exists()  # removed after the run


@needs_box
def test_copy_from_fills_the_working_folder(tmp_path):
    (tmp_path / "data.csv").write_text("1,2,3")
    result = py("print(open('data.csv').read())", copy_from=tmp_path)
    assert result.stdout.strip() == "1,2,3"


@needs_box
def test_home_from_seeds_the_home_and_matplotlib_cache_seed(tmp_path):
    seed = sb.matplotlib_cache_seed(tmp_path / "seed")
    (seed / "marker.txt").write_text("seeded")
    result = py("import os\nprint(open(os.path.expanduser('~/marker.txt')).read())\n"
                "print(sorted(os.listdir(os.environ['MPLCONFIGDIR'])))", home_from=seed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("seeded")
    assert str(sorted(p.name for p in (seed / ".config" / "matplotlib").iterdir())) in result.stdout


# -- size caps on every writable place, the runtime folder, an unprivileged user -------------------

SMALL = sb.Limits(wall_s=60, tmp_bytes=8 * sb.MiB, shm_bytes=4 * sb.MiB, home_bytes=12 * sb.MiB,
                  runtime_bytes=2 * sb.MiB)

FILL = """
import os, sys
for folder in sys.argv[1:]:
    written, error = 0, None
    try:
        with open(os.path.join(folder, "fill.bin"), "wb") as fh:
            for _ in range(64):  # at most 64 MiB: bounded even if no cap held
                fh.write(b"x" * 2**20)
                fh.flush()
                written += 2**20
    except OSError as exc:
        error = exc.errno
    print(folder, written // 2**20, error)
    try:
        os.remove(os.path.join(folder, "fill.bin"))
    except OSError:
        pass
"""


@needs_box
def test_every_writable_place_has_a_size_cap():
    result = sb.run_in_box([sys.executable, "-c", FILL, "/tmp", "/dev/shm", sb.BOX_HOME, "/", "/dev", "/etc"],
                    sandbox=sb.Sandbox(limits=SMALL))
    assert result.returncode == 0, result.stderr
    got = {line.split()[0]: (int(line.split()[1]), line.split()[2]) for line in result.stdout.splitlines()}
    assert got["/tmp"][0] <= 8 and got["/tmp"][1] == "28"  # ENOSPC at the cap
    assert got["/dev/shm"][0] <= 4 and got["/dev/shm"][1] == "28"
    assert got[sb.BOX_HOME][0] <= 12 and got[sb.BOX_HOME][1] == "28"
    for folder in ("/", "/dev", "/etc"):  # not writable at all (EROFS, or EACCES for an unprivileged uid)
        assert got[folder][0] == 0 and got[folder][1] in ("13", "30"), folder


@needs_box
def test_the_box_has_no_writable_mount_without_a_size():
    """Read the box's own mount table: every read-write file system is a tmpfs with a size."""
    result = py("print(open('/proc/self/mountinfo').read())", sb.Sandbox(limits=SMALL))
    assert result.returncode == 0, result.stderr
    writable = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        mount_point, options = fields[4], fields[5].split(",")
        fstype, super_options = fields[fields.index("-") + 1], fields[fields.index("-") + 3]
        if "rw" not in options or fstype in ("proc", "devpts") or mount_point.startswith("/dev/") and \
                fstype == "devtmpfs":
            continue  # /proc (no files can be made), pty devices, and the device nodes /dev/null etc.
        writable.append(mount_point)
        assert fstype == "tmpfs" and "size=" in super_options, line
    assert sorted(writable) == sorted(["/tmp", "/dev/shm", sb.BOX_HOME])


def test_cap_reason_names_the_cap():
    limits = sb.Limits()
    assert sb.cap_reason("OSError: [Errno 28] No space left on device: '/tmp/x.bin'", limits) == (
        "the code filled /tmp of its sandbox (capped at 256 MB)")
    assert "/dev/shm" in sb.cap_reason("[Errno 28] No space left on device: '/dev/shm/t'")
    assert "home folder" in sb.cap_reason(f"[Errno 28] No space left on device: '{sb.BOX_HOME}/work/a'")
    assert "runtime folder" in sb.cap_reason("[Errno 28] No space left on device: '/r/k/x'", runtime="/r/k")
    assert "size-capped" in sb.cap_reason("write failed: No space left on device")
    assert "(/usr/x)" in sb.cap_reason("[Errno 30] Read-only file system: '/usr/x'")
    assert "64 MB" in sb.cap_reason("died of SIGXFSZ")
    assert sb.cap_reason("ValueError: bad") is None
    with pytest.raises(ValueError, match="must be a str"):
        sb.cap_reason(None)


@needs_box
def test_a_full_cap_is_the_reason_of_a_run():
    result = py("open('/tmp/big', 'wb').write(b'x' * 20 * 2**20)", sb.Sandbox(limits=SMALL))
    assert result.returncode != 0 and "No space left on device" in result.stderr
    assert result.limit_reason == "the code filled a size-capped folder of its sandbox (no space left on device)"
    result = py("import shutil\nshutil.copyfile('/dev/zero', '/dev/shm/z')", sb.Sandbox(limits=SMALL))
    assert result.limit_reason == "the code filled /dev/shm of its sandbox (capped at 4 MB)", result.stderr


SERVE = """
import os, socket, sys
runtime = sys.argv[1]
print(sorted(os.listdir(runtime)), flush=True)
written = 0
try:
    with open(os.path.join(runtime, "fill"), "wb") as fh:
        for _ in range(16):
            fh.write(b"x" * 2**20); fh.flush(); written += 1
except OSError as exc:
    print("full", written, exc.errno, flush=True)
os.remove(os.path.join(runtime, "fill"))
server = socket.socket(socket.AF_UNIX)
server.bind(os.path.join(runtime, "k-1"))
server.listen(1)
print("listening", flush=True)
server.settimeout(20)
conn, _ = server.accept()
conn.sendall(b"hello from the box " + open(os.path.join(runtime, "kernel.json"), "rb").read())
conn.close()
"""


@needs_box
def test_runtime_folder_is_a_capped_tmpfs_inside_the_box_reached_through_box_path(tmp_path):
    import subprocess

    runtime = tmp_path / "run"
    runtime.mkdir()
    (runtime / "kernel.json").write_text('{"ip": "k"}')
    box = sb.Sandbox(limits=SMALL, hidden=(ROOT, Path.home()))
    cmd = box.wrap([sys.executable, "-c", SERVE, str(runtime)], runtime=runtime)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, text=True)
    try:
        assert proc.stdout.readline().strip() == "['kernel.json']"  # the host's files, copied in
        full = proc.stdout.readline().split()
        assert full[0] == "full" and int(full[1]) <= 2 and full[2] == "28"  # capped at 2 MiB
        assert proc.stdout.readline().strip() == "listening"
        path = sb.box_path(proc.pid, runtime / "k-1")
        assert str(path).startswith("/proc/")
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(10)
        client.connect(str(path))
        assert client.recv(100) == b'hello from the box {"ip": "k"}'
        client.close()
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
    finally:
        sb.kill_box(proc)
        proc.wait()
    assert sorted(p.name for p in runtime.iterdir()) == ["kernel.json"]  # nothing reached the host folder
    with pytest.raises(ValueError, match="must be absolute"):
        sb.box_path(os.getpid(), "relative")
    with pytest.raises(ValueError, match="no box process"):
        sb.box_path(os.getpid(), "/x", timeout=0.1)


FORK_PROBE = """
import os, time
made, error = 0, None
deadline = time.monotonic() + 5
for _ in range(300):  # bounded whatever the limits: 300 forks, 5 s, children exit after 3 s
    if time.monotonic() > deadline:
        break
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc.errno
        break
    if pid == 0:
        time.sleep(3)
        os._exit(0)
    made += 1
print(os.getuid(), os.geteuid(), made, error, flush=True)
"""


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            line = next((ln for ln in status.splitlines() if ln.startswith("Uid:")), "")
            if line and int(line.split()[1]) == uid:
                found.append(int(entry))
    return found


@needs_box
def test_fork_probe_is_bounded_and_learner_code_is_never_root():
    """As root (the grader in a container), the box's command runs as a uid of its own, so the process
    limit holds; as an ordinary user the limit holds anyway. Every probe process ends with the box."""
    limits = sb.Limits(wall_s=30, processes=16)
    result = py(FORK_PROBE, sb.Sandbox(limits=limits, hidden=(ROOT, Path.home())))
    assert result.returncode == 0, result.stderr
    uid, euid, made, error = result.stdout.split()
    assert int(made) < 16 and error == "11"  # EAGAIN: RLIMIT_NPROC stopped the probe
    assert uid == euid and int(uid) != 0
    if os.geteuid() == 0:
        assert sb.BOX_UID_BASE <= int(uid) < sb.BOX_UID_BASE + sb.BOX_UID_SPAN
        assert _processes_of(int(uid)) == []  # the box is gone, and its probe processes with it
    else:
        assert int(uid) == os.getuid()


USERNS_PROBE = """
import ctypes, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
pid = os.fork()
if pid == 0:  # in a child, so that a success changes nothing of the probe itself
    rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
    os._exit(0 if rc == 0 else 100 + ctypes.get_errno())
print("unshare", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
seen = []
thread = threading.Thread(target=seen.append, args=("thread",))
thread.start()
thread.join()
print(seen[0], subprocess.run(["true"]).returncode)
"""


@needs_box
def test_no_user_namespace_can_be_made_in_the_box():
    """In a user namespace of its own, code could mount a tmpfs of any size: the box forbids making one
    (bubblewrap's --disable-userns, or a seccomp filter), while threads and subprocesses still work."""
    result = py(USERNS_PROBE, sb.Sandbox(limits=sb.Limits(wall_s=30)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] in ("unshare 101", "unshare 128")  # EPERM, or ENOSPC (bubblewrap's user namespace limit)
    assert lines[1] == "thread 0"


@needs_box
def test_a_jupyter_kernel_keeps_its_sockets_in_the_runtime_folder_inside_the_box(tmp_path):
    """How the grader's kernel manager uses ``runtime``: the connection file is written to a host folder,
    the kernel binds its sockets in the box's private copy of it, and the client connects through a
    link to :func:`box_path`. Nothing the kernel writes lands in the host folder."""
    from jupyter_client import KernelManager

    rundir = tmp_path / "r"
    rundir.mkdir()
    box = sb.Sandbox(limits=sb.Limits(wall_s=120), hidden=(ROOT, Path.home()))

    class BoxKM(KernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return box.wrap(super().format_kernel_cmd(extra_arguments), runtime=rundir)

    km = BoxKM(kernel_name="python3", transport="ipc", ip=str(rundir / "k"),
               connection_file=str(rundir / "kernel.json"))
    km.start_kernel()
    process = km.provisioner.process
    try:
        link = rundir / "box"
        link.symlink_to(sb.box_path(process.pid, rundir))
        km.ip = str(link / "k")  # the client side only: the kernel already read its connection file
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        printed = []
        reply = kc.execute_interactive(
            f"import os\nopen({str(rundir / 'junk')!r}, 'wb').write(b'x' * 1000)\n"
            f"print(os.getuid(), sorted(n for n in os.listdir({str(rundir)!r}) if n.startswith('k')))",
            timeout=60, output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        uid, sockets = "".join(printed).split(" ", 1)
        assert "k-" in sockets and (int(uid) != 0 or os.geteuid() != 0)
        kc.stop_channels()
    finally:
        km.shutdown_kernel(now=True)
        sb.kill_box(process)
    assert {p.name for p in rundir.iterdir()} <= {"box", "kernel.json"}  # no socket, no junk on the host
