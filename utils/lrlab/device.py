"""Device choice and seeding, the first thing every notebook does.

imports: args, checks (inside setup, for its stderr note).
"""

from __future__ import annotations

import os
import random
import sys
import warnings

import numpy as np
import torch

from lrlab.args import check_int

DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """True when PyTorch can use a CUDA GPU on this machine."""
    return torch.cuda.is_available()


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to run on.

    ``"auto"`` picks CUDA when a GPU is present and the CPU otherwise; ``"cpu"`` and ``"cuda"``
    (or ``"cuda:N"``) are taken as asked. Asking for CUDA on a machine without it is an error,
    not a silent fall-back, so a GPU run never quietly becomes a CPU run.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {device!r}")
    name = device.strip().lower()
    if name == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not cuda_available():
            raise ValueError(
                f"device {device!r} was asked for, but PyTorch sees no CUDA GPU on this machine; "
                "use 'cpu' or 'auto'"
            )
        return torch.device(name)
    raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {device!r}")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (CPU and every GPU)."""
    seed = check_int(seed, "seed", low=0, high=2**32 - 1, hint="NumPy's generator takes seeds below 2**32")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)


def _show_warning_on_stdout(message, category, filename, lineno, file=None, line=None) -> None:
    """warnings.showwarning that writes to stdout (unless a caller asked for another file)."""
    stream = sys.stdout if file is None or file is sys.stderr else file
    try:
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))
    except (AttributeError, OSError, ValueError):
        pass  # no usable stream: a warning is never worth an error


def warnings_to_stdout() -> None:
    """Show warnings on stdout from now on.

    The autograder scores a test cell with any stderr output 0, and an honest warning (from NumPy, from
    PyTorch's ``float(tensor_that_requires_grad)``) is no mistake; on stdout it is still seen.
    """
    warnings.showwarning = _show_warning_on_stdout


def setup(seed: int = 0, device: str | torch.device = "auto", threads: int | None = 1) -> torch.device:
    """Seed everything, pick the device and return it.

    On the CPU, small models train fastest with one thread on a 2-core laptop (thread hand-off costs
    more than it saves), so ``threads=1`` is the default; pass ``None`` to leave PyTorch's choice.

    It also builds one throwaway optimizer: the first optimizer a process creates imports
    ``torch._dynamo`` (2-3 s), and that wait belongs in the setup cell, not in a learner's first test.
    Warnings are shown on stdout from here on (:func:`warnings_to_stdout`): stderr output would cost a
    test cell its points; in a notebook, a test cell that passed but wrote to stderr says so
    (:func:`lrlab.checks.note_stderr_in_cells`).
    """
    dev = pick_device(device)
    seed_everything(seed)
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", low=1, hint="or None to leave PyTorch's choice"))
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    warnings_to_stdout()
    from lrlab.checks import note_stderr_in_cells

    note_stderr_in_cells()
    return dev


def describe() -> dict[str, str]:
    """Versions and device of this environment, for the start-here notebook and bug reports."""
    import sys

    import matplotlib

    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "device": str(pick_device("auto")),
        "cpu threads": str(torch.get_num_threads()),
    }
    if cuda_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
