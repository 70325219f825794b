"""The launcher of the class hub (deploy/jupyterhub/start.py, ``make hub``): it refuses to start with a reason and
the way out, and starts nothing, when the port is taken, when it is not root, or when other users could not reach
the course's Python. (The hub itself, with users, runs in tests/browser/test_browser_7_hub.py.)"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys

import pytest

from coursecopy import ROOT

START = ROOT / "deploy" / "jupyterhub" / "start.py"


@pytest.fixture(scope="module")
def launcher():
    spec = importlib.util.spec_from_file_location("lrlab_hub_start", START)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def busy_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def test_a_busy_port_is_named(launcher, busy_port):
    assert launcher.port_problem("127.0.0.1", busy_port) == (
        f"port {busy_port} on 127.0.0.1 is already in use (Address already in use)")
    assert launcher.port_problem("127.0.0.1", launcher.free_port()) is None


def test_the_hub_does_not_start_on_a_busy_port_or_without_root(busy_port, tmp_path):
    proc = subprocess.run([sys.executable, str(START), "--port", str(busy_port), "--exchange", str(tmp_path / "x"),
                           "--state", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    if os.geteuid() == 0:
        assert f"port {busy_port} on 127.0.0.1 is already in use" in proc.stderr, proc.stderr
        assert f"make hub HUB_PORT={busy_port + 1}" in proc.stderr, proc.stderr
    else:
        assert "the hub must run as root" in proc.stderr, proc.stderr
    assert not (tmp_path / "state").exists() and not (tmp_path / "x").exists(), "a refused start left files"


def test_folders_other_users_cannot_enter_are_found(launcher, tmp_path):
    closed = tmp_path / "closed"
    inner = closed / "venv"
    inner.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(closed, 0o700)
    try:
        assert closed in launcher.closed_folders([inner])
        os.chmod(closed, 0o701)  # passing through is enough; listing is not needed
        assert closed not in launcher.closed_folders([inner])
    finally:
        os.chmod(closed, 0o755)


def test_a_stale_proxy_pid_file_names_no_other_program(launcher, tmp_path):
    (tmp_path / "jupyterhub-proxy.pid").write_text(str(os.getpid()))  # a live process, but not the proxy
    assert launcher.leftover_proxy(tmp_path) is None
    assert launcher.leftover_proxy(tmp_path / "nowhere") is None
