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
    monkeypatch.setattr(sb, "_bwrap_help", lambda: "")
    if not sys.platform.startswith("linux"):
        pytest.skip("the namespace check only runs on Linux")
    problem = sb.sandbox_problem.__wrapped__()
    assert "cannot make a sandbox here" in problem and "Permission denied" in problem


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
    assert "WRITABLE" not in result.stdout and result.stdout.count("Read-only file system") == 2
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
