"""lrlab: the helper package of the lrlab course on learning-rate strategy and convergence.

Every notebook of the course imports from here, so the notebooks stay short and the logic is tested
by pytest. Import the room you need, e.g. ``from lrlab import checks`` or ``import lrlab.data``.
``lrlab.setup``, ``lrlab.pick_device`` and ``lrlab.seed_everything`` come from ``lrlab.device``.

Two layers, imports pointing one way:

* the learner library, the modules directly in this package (what notebooks import): helpers
  (``args``, ``tables``), ``device``, ``checks``, the data pipeline (``data``), ``models``, the one
  training loop (``training``), ``schedules``, ``plotting``, ``widgets``, ``metrics``, and the
  experiments built on them (``leakage``, ``lr_finder``, ``sweep``, ``stats``, ``scaling``, ``gradients``,
  ``matryoshka``).
  Each module's docstring ends with the lrlab modules it may import; none imports ``lrlab.course``.
* the course tooling, ``lrlab.course`` (the ``lrlab`` command: release, run, validate, grading),
  which imports the library and is never imported by it.

imports: device (on first use of the three names above).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "pick_device", "seed_everything", "setup"]


def __getattr__(name: str):
    # Imported on first use, so that `lrlab --help` and the grading tools start without loading PyTorch.
    if name in ("pick_device", "seed_everything", "setup"):
        from lrlab import device

        return getattr(device, name)
    raise AttributeError(f"module 'lrlab' has no attribute {name!r}")
