"""lrlab: the helper package of the lrlab course on learning-rate strategy and convergence.

Every notebook of the course imports from here, so the notebooks stay short and the logic is tested
by pytest. Import the room you need, e.g. ``from lrlab import checks`` or ``import lrlab.data``.
"""

__version__ = "0.1.0"

from lrlab.device import pick_device, seed_everything, setup  # noqa: E402

__all__ = ["__version__", "pick_device", "seed_everything", "setup"]
