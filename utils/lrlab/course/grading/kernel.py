"""A Jupyter kernel in a sandbox box: the kernel manager that starts it there and a client that bounds its messages.

The kernel talks over Unix-domain sockets (the box has no network), is interrupted by a message (signals do not
cross into the box's process tree), and cannot flood the grader's memory with one huge message.

Imports: :mod:`lrlab.course.grading.sandbox`, jupyter_client and zmq.
"""

from __future__ import annotations

from pathlib import Path

import zmq
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.connect import channel_socket_types
from jupyter_client.manager import AsyncKernelManager

from lrlab.course.grading import sandbox as sb

#: Largest single message the grader accepts from a kernel (a bigger one is dropped by ZeroMQ).
MAX_MESSAGE_BYTES = 32 * sb.MiB


class BoxKernelClient(AsyncKernelClient):
    """A kernel client that refuses oversized messages, so a kernel cannot flood the grader's memory."""

    def _create_connected_socket(self, channel, identity=None):
        url = self._make_url(channel)
        sock = self.context.socket(channel_socket_types[channel])
        sock.linger = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        if identity:
            sock.identity = identity
        sock.connect(url)
        return sock


class BoxKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel runs in a :class:`lrlab.course.grading.sandbox.Sandbox`.

    The kernel talks over Unix-domain sockets in ``rundir`` (the box has no network, not even the
    host's loopback). In a box, ``rundir`` is a size-capped private folder of the box holding a copy of
    the connection file (nothing the kernel writes there reaches the host), and the client reaches the
    sockets through the link ``rundir/box``. The kernel is interrupted by a message (signals do not
    cross into the box's process tree) and starts in a private working folder filled from
    ``copy_from``. Its stderr goes to
    ``log_path`` (outside the box; its size is bounded by the box's file-size limit).
    """

    def __init__(self, *, box: sb.Sandbox, rundir: Path, copy_from: Path | None = None,
                 box_env: dict[str, str] | None = None, log_path: Path | None = None,
                 workdir: str = "work", **kwargs):
        super().__init__(**kwargs)
        self.box = box
        self.rundir = Path(rundir)
        self.copy_from = copy_from
        self.box_env = dict(box_env or {})
        self.log_path = log_path
        self.workdir = workdir
        self.transport = "ipc"
        self.ip = str(self.rundir / "k")
        self.connection_file = str(self.rundir / "kernel.json")
        self.client_factory = BoxKernelClient
        spec = self.kernel_spec
        if spec is not None:
            spec.interrupt_mode = "message"
        self._log_file = None

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        if self.box.unsafe:  # no box: the kernel's sockets and home are in the private host folder
            return self.box.wrap(cmd, workdir=self.workdir, copy_from=self.copy_from, writable=[self.rundir],
                                 env=self.box_env)
        # the runtime folder is a size-capped tmpfs inside the box, filled with the connection file
        return self.box.wrap(cmd, workdir=self.workdir, copy_from=self.copy_from, runtime=self.rundir,
                             env=self.box_env)

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["cwd"] = str(self.rundir)
        kw["stdin"] = None
        if self.log_path is not None:
            self._log_file = open(self.log_path, "wb")  # noqa: SIM115 (closed in cleanup_resources)
            kw["stdout"] = self._log_file
            kw["stderr"] = self._log_file
        await super()._async_launch_kernel(kernel_cmd, **kw)
        # keep the process object: jupyter_client forgets it on shutdown, we still want its status
        self.box_process = getattr(self.provisioner, "process", None)
        if not self.box.unsafe and self.box_process is not None:
            # the kernel binds its sockets in the box's private runtime folder: the client (only) reaches them
            # through a short link to that folder as the box sees it
            link = self.rundir / "box"
            link.symlink_to(sb.box_path(self.box_process.pid, self.rundir))
            self.ip = str(link / "k")

    box_process = None

    def kill_box(self) -> None:
        """Kill the box and everything in it, now (used by the wall-clock watchdog and at the end)."""
        if self.box_process is not None and self.box_process.poll() is None:
            sb.kill_box(self.box_process)

    def exit_status(self) -> int | None:
        """The box's exit status (negative: killed by that signal), or None while it runs."""
        return self.box_process.poll() if self.box_process is not None else None

    async def cleanup_resources(self, restart=False):
        try:
            await AsyncKernelManager.cleanup_resources(self, restart=restart)
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
