"""Plots of the course: learning-rate schedules (and, as the course grows, its other figures).

Everything here draws with matplotlib on an ``Axes`` you may pass in (``ax=``) and returns that
``Axes``, so a notebook can combine several plots in one figure, and tests can inspect what was drawn.

* :func:`plot_schedule` -- one or several schedules against steps or samples (``M``/``K`` ticks);
* :func:`plot_lr_trajectory` -- the LRs that runs with given batch sizes really use, on top of the
  schedule (to see why sample-indexed schedules do not care about the batch size);
* :func:`format_count` and :func:`format_lr` -- the tick labels, usable on any axis.

imports: args, schedules.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lrlab.args import check_int, check_real

SEED_PURPLE = "#4b2882"  # the dark purple of the seed chart


# ------------------------------------------------------------------------------------------ tick labels
def format_count(x: float, _pos: Any = None) -> str:
    """A count as a short label: 0, 500, 12K, 2.5M, 60M, 1.2B (for steps and samples)."""
    if not math.isfinite(x):
        return ""
    sign = "-" if x < 0 else ""
    x = abs(x)
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if x >= size:
            return f"{sign}{x / size:.3g}{suffix}"
    return f"{sign}{x:.3g}"


def format_lr(y: float, _pos: Any = None) -> str:
    """A learning rate as a short label: 0, 1e-5, 2.5e-5, 1e-3, 0.02, 0.1 (no 1.0e-05 padding)."""
    if not math.isfinite(y):
        return ""
    if y == 0:
        return "0"
    exponent = math.floor(math.log10(abs(y)) + 1e-12)
    if -2 <= exponent < 4:
        return f"{y:.4g}"
    mantissa = round(y / 10**exponent, 3)
    if abs(mantissa) >= 10:  # rounding pushed it over, e.g. 9.9996e-5
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:g}e{exponent}"


def _count_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 2.5, 5, 10], integer=True))
    axis.set_major_formatter(FuncFormatter(format_count))


def _lr_axis(axis: Any) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(format_lr))


# --------------------------------------------------------------------------------------- schedules
def _named(schedules: Any) -> list[tuple[str, Callable[[float], float]]]:
    """(name, schedule) pairs from one schedule, a list of them, or a dict name -> schedule."""
    if isinstance(schedules, Mapping):
        pairs = [(str(k), v) for k, v in schedules.items()]
    elif callable(schedules):
        pairs = [(getattr(schedules, "label", getattr(schedules, "__name__", "schedule")), schedules)]
    elif isinstance(schedules, Sequence) and not isinstance(schedules, str):
        pairs = [(getattr(s, "label", getattr(s, "__name__", f"schedule {i}")), s)
                 for i, s in enumerate(schedules)]
    else:
        raise ValueError("schedules must be a schedule, a list of schedules or a dict name -> schedule, "
                         f"got {type(schedules).__name__}")
    if not pairs:
        raise ValueError("schedules is empty: give at least one schedule to plot")
    for name, s in pairs:
        if not callable(s):
            raise ValueError(f"schedule {name!r} must be callable (t -> lr), got {type(s).__name__}")
    counts: dict[str, int] = {}
    named = []
    for name, s in pairs:  # make repeated names unique: "cosine", "cosine (2)"
        counts[name] = counts.get(name, 0) + 1
        named.append((name if counts[name] == 1 else f"{name} ({counts[name]})", s))
    return named


def _unit_of(schedule: Any) -> str | None:
    """A schedule's unit, or None for a plain function (which fits either unit)."""
    return getattr(schedule, "unit", None)


def schedule_grid(total: float, unit: str, points: int = 1000) -> np.ndarray:
    """Where to evaluate a schedule for a plot: every step when there are at most ``points`` steps,
    else ``points + 1`` evenly spaced values from 0 to ``total``."""
    if unit == "step" and total <= points and float(total).is_integer():
        return np.arange(0, int(total) + 1, dtype=float)
    return np.linspace(0.0, float(total), int(points) + 1)


def plot_schedule(schedules: Any, total: float | None = None, *, unit: str | None = None, ax: Any = None,
                  points: int = 1000, title: str | None = "Learning rate", logy: bool = False,
                  legend: bool | None = None, **line_kwargs: Any) -> Any:
    """Plot one or several LR schedules from 0 to ``total`` and return the matplotlib ``Axes``.

    ``schedules``: one schedule (any callable ``t -> lr``), a list of them, or a dict name -> schedule
    (the names go in the legend). ``total``: the x range; by default the longest ``horizon`` of the
    schedules. ``unit``: ``"step"`` or ``"sample"`` (by default the schedules' own unit, which they
    must share; plain functions fit either, and count steps unless told); sample counts get
    ``K``/``M`` tick labels. Step-indexed schedules with at most
    ``points`` steps are drawn as stairs (the LR holds during a step); otherwise ``points + 1`` values
    are joined by lines. ``line_kwargs`` go to ``Axes.plot`` (e.g. ``lw=2``).
    """
    named = _named(schedules)
    units = {_unit_of(s) for _, s in named} - {None}
    if unit is None:
        if len(units) > 1:
            raise ValueError(f"the schedules count different units {sorted(units)}; plot them separately or "
                             "convert with lrlab.schedules.to_samples / to_steps")
        unit = units.pop() if units else "step"
    if unit not in ("step", "sample"):
        raise ValueError(f"unit must be 'step' or 'sample', got {unit!r}")
    wrong = [name for name, s in named if _unit_of(s) not in (None, unit)]
    if wrong:
        raise ValueError(f"unit={unit!r}, but {wrong} count {'samples' if unit == 'step' else 'steps'}; "
                         "convert with lrlab.schedules.to_samples / to_steps")
    if total is None:
        horizons = [h for _, s in named if (h := getattr(s, "horizon", None))]
        if not horizons:
            raise ValueError("total is needed: these schedules have no natural length (give e.g. total=1000)")
        total = max(horizons)
    total = check_real(total, "total", low=0, low_open=True, hint=f"the last {unit} to plot")
    points = check_int(points, "points", low=2)

    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    x = schedule_grid(float(total), unit, points)
    stairs = unit == "step" and len(x) == int(total) + 1 and len(x) <= points + 1
    for i, (name, s) in enumerate(named):
        y = np.array([s(t) for t in x], dtype=float)
        kwargs = dict(line_kwargs)
        if len(named) == 1:
            kwargs.setdefault("color", SEED_PURPLE)
        if stairs:
            kwargs.setdefault("drawstyle", "steps-post")
        kwargs.setdefault("zorder", 2 + i)
        ax.plot(x, y, label=name, **kwargs)

    ax.set_xlim(0, float(total))
    ax.set_xlabel(unit)
    ax.set_ylabel("Learning Rate")
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
        _lr_axis(ax.yaxis)
    if unit == "sample" or float(total) >= 10_000:
        _count_axis(ax.xaxis)
    if title:
        ax.set_title(title)
    if legend or (legend is None and len(named) > 1):
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def plot_lr_trajectory(schedule: Callable[[float], float], runs: Mapping[str, Sequence[int]], *,
                       ax: Any = None, title: str | None = "LR used by each run", **line_kwargs: Any) -> Any:
    """The LRs that runs with the given batch sizes use, against the samples seen, over the schedule.

    ``runs``: a dict name -> per-step batch sizes (e.g. ``{"batch 32": [32] * 500}``; sizes may change
    mid-run). For a sample-indexed schedule every run's points lie on the schedule's curve; for a
    step-indexed one they drift apart as soon as the batch sizes differ.
    """
    from lrlab.schedules import lr_trajectory

    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict name -> list of batch sizes")
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
    ends = []
    markers = "o^sDv<>"
    for i, (name, sizes) in enumerate(runs.items()):
        samples, lrs = lr_trajectory(schedule, sizes)
        step = max(1, len(samples) // 12)  # about a dozen markers per run
        kwargs = {"marker": markers[i % len(markers)], "markevery": step, "ms": 4, "lw": 1.2, **line_kwargs}
        ax.plot(samples, lrs, label=name, drawstyle="steps-post", **kwargs)
        ends.append(int(samples[-1]) + int(list(sizes)[-1]))
    if _unit_of(schedule) == "sample":
        x = np.linspace(0, max(ends), 801)
        ax.plot(x, [schedule(t) for t in x], color="0.6", lw=4, alpha=0.5, zorder=0, label="schedule")
    ax.set_xlim(0, max(ends))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("sample")
    ax.set_ylabel("Learning Rate")
    _count_axis(ax.xaxis)
    _lr_axis(ax.yaxis)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax


__all__ = ["format_count", "format_lr", "schedule_grid", "plot_schedule", "plot_lr_trajectory", "SEED_PURPLE"]
