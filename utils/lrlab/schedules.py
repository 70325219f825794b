r"""Learning-rate schedules as pure functions of training progress.

A schedule answers one question: *which learning rate does the next optimizer step use?* Here every
schedule is a small immutable object you call with the progress made so far::

    >>> from lrlab.schedules import Cosine
    >>> sched = Cosine(lr=0.1, total=100, floor=0.001)
    >>> sched(0), sched(50), sched(100), sched(500)   # past its end it stays on the floor
    (0.1, 0.0505, 0.001, 0.001)

Nothing is stored between calls, so a schedule can be evaluated in any order, plotted, compared with
another one, or handed to PyTorch (:func:`as_lambda_lr`).

Progress and units
------------------
``t`` counts what was done **before** the step: ``t = 0`` for the first optimizer step, ``t = 1`` for
the second, ... (the same count PyTorch's schedulers use). A schedule's ``unit`` says what ``t`` counts:

* ``unit="step"``: optimizer steps (batches). Every length argument (``total``, ``warmup``,
  ``milestones``, ...) is then a number of steps.
* ``unit="sample"``: training samples seen before the step. Every length argument is a number of
  samples. The LR at 30M samples is then the same whatever the batch size, even if the batch size
  changes during the run: that is why large runs (and the seed chart this course reproduces,
  :func:`seed000_schedule`) index their schedules by samples. :func:`to_samples` and :func:`to_steps`
  convert one kind into the other for a given batch size; :func:`lr_trajectory` shows the LRs a run
  with given batch sizes actually uses.

Conventions
-----------
* Linear warmup over ``W`` units gives the first step ``1/W`` of the target LR, not 0: step ``t`` uses
  ``(t + 1) / W`` of it and step ``W - 1`` is the first at the full LR. (An LR of 0 at the first step
  would waste that step.) This equals ``torch.optim.lr_scheduler.LinearLR(start_factor=1/W,
  total_iters=W - 1)``.
* Decays (``Cosine``, ``Polynomial``, ``Linear``, the decay of ``WSD``) reach their end value at
  ``t = total`` and stay there: a cosine never climbs back after its end.
* Every constructor checks its arguments and raises ``ValueError`` saying what was wrong and what is
  allowed.

The strategies
--------------
==================  ==========================================  ==================================
class               LR at progress t                            PyTorch counterpart
==================  ==========================================  ==================================
Constant            lr                                          (none; ConstantLR is a factor)
StepDecay           lr * gamma ** floor(t / step_size)          StepLR
MultiStep           lr * gamma ** (milestones passed)           MultiStepLR
Exponential         lr * gamma ** t                             ExponentialLR
Polynomial          floor + (lr - floor) (1 - t/total)^power    PolynomialLR (floor 0)
Cosine              floor + (lr - floor) (1 + cos(pi t/T)) / 2  CosineAnnealingLR (t <= T_max)
CosineRestarts      cosine, restarting, periods x mult          CosineAnnealingWarmRestarts
Linear              start + (end - start) min(t, T) / T         LinearLR
Warmup              linear ramp, then any schedule              (LinearLR + SequentialLR)
WSD                 warmup, stable, decay (linear/cosine/1-sqrt) (none)
OneCycle            ramp up to max_lr, anneal to a tiny LR      OneCycleLR
Cyclic              triangle waves between base_lr and max_lr   CyclicLR
Piecewise           straight lines (or steps) between points    (none)
Join                one schedule after another                  SequentialLR
==================  ==========================================  ==================================

Where PyTorch's recursive form drifts
-------------------------------------
Most ``torch.optim.lr_scheduler`` classes are *chainable*: ``get_lr`` multiplies the optimizer's
**current** LR by a ratio, ``lr_{t} = lr_{t-1} * r(t)``, so several schedulers can be stacked. Several
also have a closed form (``_get_closed_form_lr``, used when ``step(epoch)`` is given an epoch) that
computes ``lr_t`` from the base LR directly. lrlab computes every LR in closed form from ``t`` alone
(a schedule is a pure function; evaluating it at 60M samples must not need 60M multiplications), and
its tests compare with PyTorch's closed form where PyTorch has one. The places where the two differ:

1. **Floating-point accumulation** (StepLR, MultiStepLR, ExponentialLR, LinearLR, PolynomialLR,
   CosineAnnealingLR). The recursive form rounds once per step, so its relative error grows like
   ``t * 2**-52``. Measured with torch 2.13 (largest relative gap to the closed form): ExponentialLR
   1e-14 after 1e5 steps; CosineAnnealingLR with eta_min 9e-14 after 1e4 steps and 9e-13 after 1e5
   (its ratio divides two small numbers near the end of the period); LinearLR decaying towards 0
   2e-13 after 1e4 steps. Harmless for training, but "exactly equal" is the wrong test: lrlab's tests
   allow 1e-9 relative, far above the drift of any run in this course (it would take runs of about
   1e7 steps to reach it).
2. **CosineAnnealingLR past T_max** climbs back up: both of PyTorch's forms follow the cosine's
   period ``2 T_max`` (at ``T_max + 1`` the recursion needs a special case because its ratio would
   divide by zero). lrlab's ``Cosine`` clamps at its floor, which is what "anneal to eta_min" means;
   the tests compare only within the period, as the issue asks.
3. **Chainable forms follow outside changes.** If anything else changes ``group["lr"]`` (another
   scheduler, a manual halving), the recursive forms multiply the changed value from then on, while
   the closed forms ignore it (measured: CosineAnnealingLR after halving the LR once gives 0.452,
   its closed form 0.905). lrlab schedules never read the optimizer: the LR is ``schedule(t)``.
4. **A recursion cannot leave 0.** ``LinearLR`` therefore refuses ``start_factor=0``, and warmup in
   PyTorch cannot start from an LR of exactly 0; ``lrlab.Linear`` and ``Warmup(start=0)`` can.
5. **LinearLR does not land on a small end value.** Both its forms compute
   ``start + (end - start) * k / T``, whose rounding error is absolute (about 1e-16 of the larger
   end). Decaying to ``end_factor=0``, the recursion stops at a residue of about 1e-16 of the start
   LR instead of 0, positive or *negative* about equally often (measured: 2902 of 3000 random
   settings missed 0, 1462 of them below it), and keeps it for the rest of the run; the closed form
   turns ``end_factor=1e-10`` into 1.0000000827e-10 (8e-8 relative). lrlab returns ``end`` exactly from
   ``t = total`` on; within the ramp the same absolute rounding applies to any implementation, so
   the tests allow 1e-15 of the larger end on top of 1e-9 relative for LinearLR. (PolynomialLR and
   CosineAnnealingLR do reach exactly 0: their last ratio is exactly 0.)
6. **OneCycleLR edges** (not recursive, but not clamped): the warm-up phase ends at step
   ``pct_start * total_steps - 1``, which need not be an integer, so the peak ``max_lr`` may never be
   used exactly; ``pct_start * total_steps == 1`` raises ``ZeroDivisionError`` and a smaller value
   skips the warm-up entirely; one call past the end (``step == total_steps``) extrapolates: the
   ``cos`` strategy climbs back up and the ``linear`` strategy gives a **negative** LR (measured:
   -0.143 for max_lr=1, total_steps=10). lrlab's ``OneCycle`` uses the same phase boundaries (so it
   agrees on every step 0 .. total-1), rejects ``pct_start * total <= 1`` and holds the final LR
   after the end.
7. **CyclicLR** computes its position in the cycle as ``1 + t / size - floor(1 + t / size)``; the
   rounding of ``t / size`` grows with ``t`` like an accumulation (measured: up to 2.3e-13 relative
   after 2000 steps, whatever the ratio of base_lr to max_lr). lrlab computes the position in the
   cycle as ``t - cycle * size``, exact for whole-number steps. Note also that CyclicLR overwrites
   the optimizer's ``lr`` (and ``initial_lr``) with ``base_lr`` and, by default, cycles the momentum;
   lrlab schedules only the LR.
8. **CosineAnnealingWarmRestarts with step(epoch)** finds the current cycle with a floating-point
   logarithm when ``T_mult > 1``; at some restart points it lands one cycle short (measured: T_0=1,
   T_mult=3, epoch 121 gives eta_min instead of the restarted LR, because log_3(243) evaluates to
   4.999999999999999). Stepping one by one counts exactly. lrlab finds the cycle by repeated
   addition, exactly for integer periods.
9. **MultiStepLR** accepts unsorted and repeated milestones (a repeated one applies gamma twice);
   lrlab asks for strictly increasing milestones. **PolynomialLR** and **LinearLR** divide by
   ``total_iters`` (0 raises ZeroDivisionError); lrlab asks for ``total > 0``.

imports: args.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from lrlab.args import check_bool, check_choice, check_int, check_real

UNITS = ("step", "sample")
WSD_SHAPES = ("linear", "cosine", "1-sqrt")
ONE_CYCLE_ANNEALS = ("cos", "linear")
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
PIECEWISE_KINDS = ("linear", "step")


# ------------------------------------------------------------------------------------------ validation
def _number(name: str, value: Any) -> float:
    """``value`` as a finite float, or a ValueError naming ``name`` (:func:`lrlab.args.check_real`)."""
    return check_real(value, name)


def _positive(name: str, value: Any) -> float:
    return check_real(value, name, low=0, low_open=True)


def _non_negative(name: str, value: Any) -> float:
    return check_real(value, name, low=0)


def _count(name: str, value: Any) -> int | float:
    """A length (steps or samples): a positive number; whole numbers are kept as int for a tidy repr."""
    value = _positive(name, value)
    return int(value) if value.is_integer() else value


def _unit(unit: Any) -> str:
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    return unit


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    return check_choice(value, name, options)


def _progress(t: Any) -> float:
    """Check a progress value: a finite number >= 0 (a step index or a number of samples)."""
    if isinstance(t, torch.Tensor) and t.numel() == 1:
        t = t.item()
    return check_real(t, "progress t", low=0, hint="a step index or a number of samples")


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        inner = ", ".join(_fmt(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return repr(int(value))
    return repr(value)


# ------------------------------------------------------------------------------------------- the base
class Schedule:
    """Base class: a learning rate as a pure function of progress ``t`` (see the module docstring).

    Subclasses define ``_lr(t)`` for a checked float ``t >= 0``; calling the schedule checks ``t`` and
    returns a Python float. ``values(ts)`` evaluates many points at once, ``horizon`` is the natural
    length of the schedule (None when it has none, e.g. ``Exponential``), ``unit`` says what ``t``
    counts.
    """

    unit: str
    label: ClassVar[str] = "schedule"

    def _lr(self, t: float) -> float:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def __call__(self, t: Any) -> float:
        return float(self._lr(_progress(t)))

    def values(self, ts: Iterable[Any]) -> np.ndarray:
        """The LR at each progress value in ``ts`` (a NumPy array of float64)."""
        return np.array([self(t) for t in np.asarray(ts, dtype=float).ravel()], dtype=float)

    @property
    def horizon(self) -> float | None:
        """Where the schedule's interesting part ends (a run length to plot), or None."""
        return None

    def with_warmup(self, warmup: float, start: float = 0.0) -> Warmup:
        """This schedule after a linear warmup of ``warmup`` units (see :class:`Warmup`)."""
        return Warmup(self, warmup, start=start)

    # a readable repr: ClassName(arg=value, ...), the unit only when it is not "step"
    def _repr_args(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "unit"}  # type: ignore[arg-type]

    def __repr__(self) -> str:
        args = [f"{k}={_fmt(v)}" for k, v in self._repr_args().items()]
        if getattr(self, "unit", "step") != "step":
            args.append(f"unit={self.unit!r}")
        return f"{type(self).__name__}({', '.join(args)})"


def _set(obj: Any, **values: Any) -> None:
    """Store normalized values on a frozen dataclass (used inside __post_init__)."""
    for k, v in values.items():
        object.__setattr__(obj, k, v)


# ------------------------------------------------------------------------------------- simple decays
@dataclass(frozen=True, repr=False)
class Constant(Schedule):
    """The same LR at every step: ``lr``."""

    lr: float
    unit: str = "step"
    label: ClassVar[str] = "constant"

    def __post_init__(self) -> None:
        _set(self, lr=_positive("lr", self.lr), unit=_unit(self.unit))

    def _lr(self, t: float) -> float:
        return self.lr


@dataclass(frozen=True, repr=False)
class StepDecay(Schedule):
    """Multiply the LR by ``gamma`` every ``step_size`` units: ``lr * gamma ** floor(t / step_size)``.

    Same as ``torch.optim.lr_scheduler.StepLR(step_size, gamma)`` with the optimizer's lr = ``lr``.
    """

    lr: float
    step_size: float
    gamma: float = 0.1
    unit: str = "step"
    label: ClassVar[str] = "step"

    def __post_init__(self) -> None:
        gamma = _positive("gamma", self.gamma)
        if gamma > 1:
            raise ValueError(f"gamma must be in (0, 1] for a decay, got {gamma:g}")
        _set(self, lr=_positive("lr", self.lr), step_size=_count("step_size", self.step_size),
             gamma=gamma, unit=_unit(self.unit))

    def _lr(self, t: float) -> float:
        return self.lr * self.gamma ** math.floor(t / self.step_size)


@dataclass(frozen=True, repr=False)
class MultiStep(Schedule):
    """Multiply the LR by ``gamma`` at each milestone: ``lr * gamma ** (number of milestones <= t)``.

    Same as ``torch.optim.lr_scheduler.MultiStepLR(milestones, gamma)``. The milestones must be
    strictly increasing and > 0 (PyTorch also accepts unsorted or repeated ones).
    """

    lr: float
    milestones: tuple[float, ...]
    gamma: float = 0.1
    unit: str = "step"
    label: ClassVar[str] = "multistep"

    def __post_init__(self) -> None:
        if isinstance(self.milestones, str) or not isinstance(self.milestones, Iterable):
            raise ValueError(f"milestones must be a sequence of increasing numbers > 0, "
                             f"got {self.milestones!r}")
        ms = tuple(_count(f"milestones[{i}]", m) for i, m in enumerate(self.milestones))
        if not ms:
            raise ValueError("milestones must hold at least one milestone (a number > 0), got none")
        for a, b in zip(ms, ms[1:], strict=False):
            if b <= a:
                raise ValueError(f"milestones must be strictly increasing, got {a} then {b} in {ms}")
        gamma = _positive("gamma", self.gamma)
        if gamma > 1:
            raise ValueError(f"gamma must be in (0, 1] for a decay, got {gamma:g}")
        _set(self, lr=_positive("lr", self.lr), milestones=ms, gamma=gamma, unit=_unit(self.unit))

    def _lr(self, t: float) -> float:
        return self.lr * self.gamma ** bisect.bisect_right(self.milestones, t)


@dataclass(frozen=True, repr=False)
class Exponential(Schedule):
    """Multiply the LR by ``gamma`` every unit: ``lr * gamma ** t``.

    Same as ``torch.optim.lr_scheduler.ExponentialLR(gamma)``. ``gamma > 1`` gives a growing LR (the
    shape of an LR range test).
    """

    lr: float
    gamma: float
    unit: str = "step"
    label: ClassVar[str] = "exponential"

    def __post_init__(self) -> None:
        _set(self, lr=_positive("lr", self.lr), gamma=_positive("gamma", self.gamma), unit=_unit(self.unit))

    def _lr(self, t: float) -> float:
        return self.lr * self.gamma**t


@dataclass(frozen=True, repr=False)
class Polynomial(Schedule):
    """Polynomial decay to ``floor`` at ``total``:
    ``floor + (lr - floor) * (1 - min(t, total) / total) ** power``.

    With ``floor=0`` the same as ``torch.optim.lr_scheduler.PolynomialLR(total_iters=total, power)``.
    ``power=1`` is a straight line, ``power=2`` decays fast early and flattens at the end.
    """

    lr: float
    total: float
    power: float = 1.0
    floor: float = 0.0
    unit: str = "step"
    label: ClassVar[str] = "polynomial"

    def __post_init__(self) -> None:
        lr, floor = _positive("lr", self.lr), _non_negative("floor", self.floor)
        if floor > lr:
            raise ValueError(f"floor ({floor:g}) must be <= lr ({lr:g})")
        _set(self, lr=lr, total=_count("total", self.total), power=_positive("power", self.power),
             floor=floor, unit=_unit(self.unit))

    @property
    def horizon(self) -> float:
        return self.total

    def _lr(self, t: float) -> float:
        if t >= self.total:
            return self.floor
        return self.floor + (self.lr - self.floor) * (1.0 - t / self.total) ** self.power


@dataclass(frozen=True, repr=False)
class Cosine(Schedule):
    """Half a cosine from ``lr`` down to ``floor`` over ``total`` units, then the floor for ever.

    ``floor + (lr - floor) * (1 + cos(pi * min(t, total) / total)) / 2``. Within ``t <= total`` the
    same as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total, eta_min=floor)``; past ``total``
    PyTorch's curve climbs back up, this one stays on the floor.
    """

    lr: float
    total: float
    floor: float = 0.0
    unit: str = "step"
    label: ClassVar[str] = "cosine"

    def __post_init__(self) -> None:
        lr, floor = _positive("lr", self.lr), _non_negative("floor", self.floor)
        if floor > lr:
            raise ValueError(f"floor ({floor:g}) must be <= lr ({lr:g})")
        _set(self, lr=lr, total=_count("total", self.total), floor=floor, unit=_unit(self.unit))

    @property
    def horizon(self) -> float:
        return self.total

    def _lr(self, t: float) -> float:
        if t >= self.total:
            return self.floor  # clamped: no climbing back after the end
        return self.floor + (self.lr - self.floor) * (1.0 + math.cos(math.pi * t / self.total)) / 2.0


@dataclass(frozen=True, repr=False)
class CosineRestarts(Schedule):
    """Cosine annealing with warm restarts (SGDR): cosine from ``lr`` to ``floor`` over ``period``
    units, then jump back to ``lr``; each new period is ``mult`` times longer.

    Same as ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=period, T_mult=mult,
    eta_min=floor)``.
    """

    lr: float
    period: float
    mult: float = 1
    floor: float = 0.0
    unit: str = "step"
    label: ClassVar[str] = "cosine restarts"

    def __post_init__(self) -> None:
        lr, floor = _positive("lr", self.lr), _non_negative("floor", self.floor)
        if floor > lr:
            raise ValueError(f"floor ({floor:g}) must be <= lr ({lr:g})")
        mult = _number("mult", self.mult)
        if mult < 1:
            raise ValueError(f"mult must be >= 1 (each period as long as or longer than the last), "
                             f"got {mult:g}")
        _set(self, lr=lr, period=_count("period", self.period), mult=int(mult) if mult.is_integer() else mult,
             floor=floor, unit=_unit(self.unit))

    @property
    def horizon(self) -> float:
        return self.period * (1 + self.mult + self.mult**2)  # three periods

    def cycle(self, t: float) -> tuple[int, float, float]:
        """(index of the current period, its start, its length) at progress ``t``."""
        t = _progress(t)
        if self.mult == 1:
            k = math.floor(t / self.period)
            return k, k * self.period, float(self.period)
        k, start, length = 0, 0.0, float(self.period)
        while t >= start + length:  # exact for whole-number periods; a few dozen rounds at most
            start += length
            length *= self.mult
            k += 1
        return k, start, length

    def _lr(self, t: float) -> float:
        _, start, length = self.cycle(t)
        return self.floor + (self.lr - self.floor) * (1.0 + math.cos(math.pi * (t - start) / length)) / 2.0


@dataclass(frozen=True, repr=False)
class Linear(Schedule):
    """A straight line from ``start`` to ``end`` over ``total`` units, then ``end``:
    ``start + (end - start) * min(t, total) / total``.

    Same as ``torch.optim.lr_scheduler.LinearLR(start_factor=start/base, end_factor=end/base,
    total_iters=total)`` for an optimizer with lr = ``base``; unlike LinearLR it may start at 0.
    """

    start: float
    end: float
    total: float
    unit: str = "step"
    label: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        start, end = _non_negative("start", self.start), _non_negative("end", self.end)
        if start == 0 and end == 0:
            raise ValueError("start and end cannot both be 0 (the LR would be 0 throughout); give one > 0")
        _set(self, start=start, end=end, total=_count("total", self.total), unit=_unit(self.unit))

    @property
    def horizon(self) -> float:
        return self.total

    def _lr(self, t: float) -> float:
        if t >= self.total:
            return self.end
        return self.start + (self.end - self.start) * t / self.total


# ------------------------------------------------------------------------------------------ composing
@dataclass(frozen=True, repr=False)
class Warmup(Schedule):
    """A linear warmup of ``warmup`` units in front of any schedule.

    During the warmup (``t < warmup``) the LR climbs in a straight line from ``start`` to the wrapped
    schedule's first LR ``target = schedule(0)``::

        lr(t) = start + (target - start) * (t + 1) / warmup

    so the first step already trains (``t = 0`` gets ``1/warmup`` of the way) and step ``warmup - 1``
    is the first at the target. After it the wrapped schedule runs from its own beginning:
    ``lr(t) = schedule(t - warmup)``. The whole run is therefore ``warmup`` units longer than the
    wrapped schedule.
    """

    schedule: Schedule
    warmup: float
    start: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be an lrlab Schedule (e.g. Cosine(...)), got {self.schedule!r}")
        _set(self, warmup=_count("warmup", self.warmup), start=_non_negative("start", self.start))

    @property
    def unit(self) -> str:  # type: ignore[override]
        return self.schedule.unit

    @property
    def horizon(self) -> float | None:
        inner = self.schedule.horizon
        return None if inner is None else self.warmup + inner

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"warmup + {self.schedule.label}"

    def _lr(self, t: float) -> float:
        if t < self.warmup:
            target = self.schedule._lr(0.0)
            return self.start + (target - self.start) * min(1.0, (t + 1.0) / self.warmup)
        return self.schedule._lr(t - self.warmup)


def _decay_shape(shape: str, p: float) -> float:
    """The fraction of the (peak - floor) gap left after a fraction ``p`` in [0, 1] of the decay."""
    if shape == "linear":
        return 1.0 - p
    if shape == "cosine":
        return (1.0 + math.cos(math.pi * p)) / 2.0
    return 1.0 - math.sqrt(p)  # "1-sqrt": drops fast at first, slowly near the end


@dataclass(frozen=True, repr=False)
class WSD(Schedule):
    """Warmup-stable-decay ("trapezoid"): warm up, hold ``lr``, decay to ``floor`` at the end.

    * ``t < warmup``: linear warmup from 0, ``lr * (t + 1) / warmup`` (as in :class:`Warmup`);
    * ``warmup <= t < total - decay``: the stable phase, ``lr``;
    * ``total - decay <= t <= total``: decay with fraction ``p = (t - (total - decay)) / decay`` done,
      ``floor + (lr - floor) * s(p)`` where ``s`` is ``1 - p`` (linear), ``(1 + cos(pi p)) / 2``
      (cosine) or ``1 - sqrt(p)`` (1-sqrt);
    * ``t >= total``: ``floor``.

    ``warmup`` may be 0 (no warmup); ``warmup + decay`` must fit in ``total``.
    """

    lr: float
    total: float
    warmup: float
    decay: float
    floor: float = 0.0
    shape: str = "linear"
    unit: str = "step"
    label: ClassVar[str] = "WSD"

    def __post_init__(self) -> None:
        lr, floor = _positive("lr", self.lr), _non_negative("floor", self.floor)
        if floor > lr:
            raise ValueError(f"floor ({floor:g}) must be <= lr ({lr:g})")
        total, decay = _count("total", self.total), _count("decay", self.decay)
        warmup = _non_negative("warmup", self.warmup)
        warmup = int(warmup) if warmup.is_integer() else warmup
        unit = _unit(self.unit)
        if warmup + decay > total:
            raise ValueError(f"warmup ({warmup}) + decay ({decay}) must be <= total ({total}) {unit}s")
        _set(self, lr=lr, total=total, warmup=warmup, decay=decay, floor=floor,
             shape=_choice("shape", self.shape, WSD_SHAPES), unit=unit)

    @property
    def horizon(self) -> float:
        return self.total

    def _lr(self, t: float) -> float:
        if t < self.warmup:
            # clamped: a fractional t in the last warmup unit (sample-indexed runs) would overshoot lr
            return self.lr * min(1.0, (t + 1.0) / self.warmup)
        decay_start = self.total - self.decay
        if t < decay_start:
            return self.lr
        p = min(1.0, (t - decay_start) / self.decay)
        return self.floor + (self.lr - self.floor) * _decay_shape(self.shape, p)


@dataclass(frozen=True, repr=False)
class Join(Schedule):
    """Several schedules one after another: ``schedules[i]`` runs from ``boundaries[i-1]`` on, and
    starts there from its own ``t = 0``.

    ``Join([Constant(0.1), Cosine(0.1, 900)], boundaries=[100])`` holds 0.1 for 100 steps, then
    anneals over 900 steps. Like ``torch.optim.lr_scheduler.SequentialLR``.
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[float, ...]
    label: ClassVar[str] = "join"

    def __post_init__(self) -> None:
        if isinstance(self.schedules, Schedule) or not isinstance(self.schedules, Iterable):
            raise ValueError("schedules must be a list of lrlab Schedules")
        scheds = tuple(self.schedules)
        if not scheds:
            raise ValueError("schedules must hold at least one schedule, got none")
        for i, s in enumerate(scheds):
            if not isinstance(s, Schedule):
                raise ValueError(f"schedules[{i}] must be an lrlab Schedule, got {s!r}")
        units = {s.unit for s in scheds}
        if len(units) > 1:
            raise ValueError(f"all schedules must share one unit, got {sorted(units)}; "
                             "convert with to_samples/to_steps")
        if not isinstance(self.boundaries, Iterable):
            raise ValueError(f"boundaries must be a list of increasing numbers > 0, got {self.boundaries!r}")
        bounds = tuple(_count(f"boundaries[{i}]", b) for i, b in enumerate(self.boundaries))
        if len(bounds) != len(scheds) - 1:
            raise ValueError(f"boundaries must hold one number fewer than schedules ({len(scheds) - 1}), "
                             f"got {len(bounds)}")
        for a, b in zip(bounds, bounds[1:], strict=False):
            if b <= a:
                raise ValueError(f"boundaries must be strictly increasing, got {a} then {b}")
        _set(self, schedules=scheds, boundaries=bounds)

    @property
    def unit(self) -> str:  # type: ignore[override]
        return self.schedules[0].unit

    @property
    def horizon(self) -> float | None:
        last = self.schedules[-1].horizon
        start = self.boundaries[-1] if self.boundaries else 0
        return None if last is None else start + last

    def _lr(self, t: float) -> float:
        i = bisect.bisect_right(self.boundaries, t)
        start = self.boundaries[i - 1] if i else 0.0
        return self.schedules[i]._lr(t - start)


@dataclass(frozen=True, repr=False)
class Piecewise(Schedule):
    """A schedule drawn through points ``[(t0, lr0), (t1, lr1), ...]``.

    * ``kind="linear"``: straight lines between consecutive points;
    * ``kind="step"``: each point's LR holds until the next point.

    The first point must be at ``t = 0``; ``t`` values must not decrease. Two points at the same ``t``
    make a jump (a step drop): from that ``t`` on the second point's LR applies. After the last point
    its LR holds. LRs may be 0 (a warmup from 0), but not negative.
    """

    points: tuple[tuple[float, float], ...]
    kind: str = "linear"
    unit: str = "step"
    label: ClassVar[str] = "piecewise"

    def __post_init__(self) -> None:
        if isinstance(self.points, str) or not isinstance(self.points, Iterable):
            raise ValueError(f"points must be a list of (t, lr) pairs, got {self.points!r}")
        pts = []
        for i, p in enumerate(self.points):
            if not isinstance(p, Sequence) or len(p) != 2:
                raise ValueError(f"points[{i}] must be a (t, lr) pair, got {p!r}")
            t = _non_negative(f"points[{i}] t", p[0])
            pts.append((int(t) if t.is_integer() else t, _non_negative(f"points[{i}] lr", p[1])))
        if not pts:
            raise ValueError("points must hold at least one (t, lr) pair, got none")
        if pts[0][0] != 0:
            raise ValueError(f"the first point must be at t = 0, got t = {pts[0][0]}")
        for i in range(1, len(pts)):
            if pts[i][0] < pts[i - 1][0]:
                raise ValueError(f"point t values must not decrease, got {pts[i - 1][0]} then {pts[i][0]} "
                                 f"(points[{i - 1}], points[{i}])")
            if i >= 2 and pts[i][0] == pts[i - 2][0]:
                raise ValueError(f"at most two points may share a t (a jump), got three at t = {pts[i][0]}")
        if all(lr == 0 for _, lr in pts):
            raise ValueError("at least one point needs an LR > 0")
        _set(self, points=tuple(pts), kind=_choice("kind", self.kind, PIECEWISE_KINDS), unit=_unit(self.unit))
        _set(self, _ts=[p[0] for p in pts])  # the t values, for bisect (not a field: not in repr or ==)

    @property
    def horizon(self) -> float | None:
        return self.points[-1][0] or None

    def _lr(self, t: float) -> float:
        i = bisect.bisect_right(self._ts, t) - 1  # the last point at or before t (the later one at a jump)
        t0, lr0 = self.points[i]
        if i == len(self.points) - 1 or self.kind == "step":
            return lr0
        t1, lr1 = self.points[i + 1]
        return lr0 + (lr1 - lr0) * (t - t0) / (t1 - t0)


# ----------------------------------------------------------------------------- one-cycle and cyclic
@dataclass(frozen=True, repr=False)
class OneCycle(Schedule):
    """The 1cycle policy: ramp from ``max_lr / div_factor`` up to ``max_lr``, then anneal to
    ``max_lr / div_factor / final_div_factor``.

    Uses the phase boundaries of ``torch.optim.lr_scheduler.OneCycleLR`` (so the two agree on every
    step ``0 .. total - 1``): the ramp ends at ``pct_start * total - 1``, the anneal at ``total - 1``;
    with ``three_phase=True`` the LR first comes back down to the initial LR at
    ``2 * pct_start * total - 2`` and only then anneals. ``anneal`` is ``"cos"`` or ``"linear"``.
    Unlike PyTorch the final LR holds after the end.
    """

    max_lr: float
    total: float
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    unit: str = "step"
    label: ClassVar[str] = "one-cycle"

    def __post_init__(self) -> None:
        total = _count("total", self.total)
        pct = _number("pct_start", self.pct_start)
        if not 0 < pct < 1:
            raise ValueError(f"pct_start must be in (0, 1), got {pct:g}")
        if pct * total <= 1:
            raise ValueError(f"pct_start * total must be > 1 so that the ramp has a length, got "
                             f"{pct:g} * {total} = {pct * total:g}; raise pct_start or total")
        check_bool(self.three_phase, "three_phase")
        if self.three_phase and 2 * pct * total - 2 >= total - 1:
            raise ValueError(f"with three_phase the two ramps (2 * pct_start * total - 2 = "
                             f"{2 * pct * total - 2:g}) must end before total - 1 = {total - 1}; "
                             "lower pct_start")
        _set(self, max_lr=_positive("max_lr", self.max_lr), total=total, pct_start=pct,
             anneal=_choice("anneal", self.anneal, ONE_CYCLE_ANNEALS),
             div_factor=_positive("div_factor", self.div_factor),
             final_div_factor=_positive("final_div_factor", self.final_div_factor), unit=_unit(self.unit))

    @property
    def horizon(self) -> float:
        return self.total

    @property
    def initial_lr(self) -> float:
        return self.max_lr / self.div_factor

    @property
    def min_lr(self) -> float:
        return self.initial_lr / self.final_div_factor

    def _anneal(self, start: float, end: float, p: float) -> float:
        if self.anneal == "cos":
            return end + (start - end) * (1.0 + math.cos(math.pi * p)) / 2.0
        return start + (end - start) * p

    def _lr(self, t: float) -> float:
        up_end = self.pct_start * self.total - 1
        last = self.total - 1
        if self.three_phase:
            down_end = 2 * self.pct_start * self.total - 2
            phases = [(0.0, up_end, self.initial_lr, self.max_lr),
                      (up_end, down_end, self.max_lr, self.initial_lr),
                      (down_end, last, self.initial_lr, self.min_lr)]
        else:
            phases = [(0.0, up_end, self.initial_lr, self.max_lr), (up_end, last, self.max_lr, self.min_lr)]
        if t >= last:
            return self.min_lr
        for begin, end, lr_begin, lr_end in phases:
            if t <= end:
                return self._anneal(lr_begin, lr_end, (t - begin) / (end - begin))
        return self.min_lr  # pragma: no cover - t >= last is handled above


@dataclass(frozen=True, repr=False)
class Cyclic(Schedule):
    """Cyclical LR (Smith 2017): triangle waves between ``base_lr`` and ``max_lr``.

    Each cycle climbs for ``step_size_up`` units and descends for ``step_size_down`` (default: the
    same). ``mode="triangular"`` keeps the amplitude, ``"triangular2"`` halves it every cycle,
    ``"exp_range"`` multiplies it by ``gamma ** t``. Same as ``torch.optim.lr_scheduler.CyclicLR``
    (without its momentum cycling).
    """

    base_lr: float
    max_lr: float
    step_size_up: float
    step_size_down: float | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    unit: str = "step"
    label: ClassVar[str] = "cyclic"

    def __post_init__(self) -> None:
        base, top = _positive("base_lr", self.base_lr), _positive("max_lr", self.max_lr)
        if top < base:
            raise ValueError(f"max_lr ({top:g}) must be >= base_lr ({base:g})")
        gamma = _positive("gamma", self.gamma)
        if gamma > 1:
            raise ValueError(f"gamma must be in (0, 1] (the amplitude shrinks by gamma ** t), got {gamma:g}")
        up = _count("step_size_up", self.step_size_up)
        down = up if self.step_size_down is None else _count("step_size_down", self.step_size_down)
        _set(self, base_lr=base, max_lr=top, step_size_up=up, step_size_down=down,
             mode=_choice("mode", self.mode, CYCLIC_MODES), gamma=gamma, unit=_unit(self.unit))

    @property
    def horizon(self) -> float:
        return 4 * (self.step_size_up + self.step_size_down)  # four cycles

    def _lr(self, t: float) -> float:
        size = self.step_size_up + self.step_size_down
        cycle = math.floor(t / size)  # 0-based cycle index
        pos = min(max(t - cycle * size, 0.0), size)  # clamped: t / size may round across a cycle's edge
        rise = pos / self.step_size_up if pos <= self.step_size_up else (size - pos) / self.step_size_down
        if self.mode == "triangular":
            scale = 1.0
        elif self.mode == "triangular2":
            scale = 0.5**cycle
        else:
            scale = self.gamma**t
        return self.base_lr + (self.max_lr - self.base_lr) * rise * scale


# -------------------------------------------------------------------------------- steps and samples
def _batch_size(batch_size: Any) -> int:
    return check_int(batch_size, "batch_size", low=1)


def steps_to_samples(steps: int, batch_size: int) -> int:
    """Samples seen after ``steps`` optimizer steps with a fixed ``batch_size``: ``steps * batch_size``."""
    return check_int(steps, "steps", low=0) * _batch_size(batch_size)


def samples_to_steps(samples: int, batch_size: int) -> int:
    """Optimizer steps needed to see at least ``samples`` samples: ``ceil(samples / batch_size)``.

    Integer arithmetic, so it is exact even for billions of samples.
    """
    samples = check_int(samples, "samples", low=0)
    bs = _batch_size(batch_size)
    return -(-samples // bs)


@dataclass(frozen=True, repr=False)
class Converted(Schedule):
    """A schedule re-indexed for a fixed batch size (made by :func:`to_samples` / :func:`to_steps`).

    ``unit="sample"``: ``lr(n) = schedule(n / batch_size)`` for a step-indexed ``schedule``;
    ``unit="step"``: ``lr(k) = schedule(k * batch_size)`` for a sample-indexed one.
    """

    schedule: Schedule
    batch_size: int
    unit: str = "sample"

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be an lrlab Schedule, got {self.schedule!r}")
        unit = _unit(self.unit)
        if self.schedule.unit == unit:
            raise ValueError(f"the schedule already counts {unit}s; nothing to convert")
        _set(self, batch_size=_batch_size(self.batch_size), unit=unit)

    @property
    def horizon(self) -> float | None:
        inner = self.schedule.horizon
        if inner is None:
            return None
        return inner * self.batch_size if self.unit == "sample" else inner / self.batch_size

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.schedule.label

    def _lr(self, t: float) -> float:
        if self.unit == "sample":
            return self.schedule._lr(t / self.batch_size)
        return self.schedule._lr(t * self.batch_size)

    def __repr__(self) -> str:
        fn = "to_samples" if self.unit == "sample" else "to_steps"
        return f"{fn}({self.schedule!r}, batch_size={self.batch_size})"


def to_samples(schedule: Schedule, batch_size: int) -> Converted:
    """The sample-indexed version of a step-indexed ``schedule`` written for ``batch_size``.

    ``to_samples(s, 32)(n) == s(n / 32)``: at every multiple of 32 samples it equals the step schedule;
    between them it follows the same curve. Run with any other batch size, it keeps the LR tied to the
    samples seen, not to the number of steps.
    """
    return Converted(schedule, batch_size, unit="sample")


def to_steps(schedule: Schedule, batch_size: int) -> Converted:
    """The step-indexed version of a sample-indexed ``schedule`` for a run with a fixed ``batch_size``:
    ``to_steps(s, 32)(k) == s(32 * k)`` (step ``k`` starts after ``32 k`` samples)."""
    return Converted(schedule, batch_size, unit="step")


def lr_trajectory(schedule: Callable[[float], float],
                  batch_sizes: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """The LRs a run uses when its steps take ``batch_sizes`` samples each (sizes may change mid-run).

    Returns ``(samples_before, lrs)``: for each step, the samples seen before it and its LR. A
    sample-indexed schedule is evaluated at ``samples_before``, a step-indexed one at the step index,
    so you can see that only the first keeps the LR tied to the data seen.
    """
    sizes = [_batch_size(b) for b in batch_sizes]
    if not sizes:
        raise ValueError("batch_sizes must hold at least one batch size, got none")
    before = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    unit = getattr(schedule, "unit", "step")
    if unit == "sample":
        lrs = [schedule(int(n)) for n in before]
    else:
        lrs = [schedule(k) for k in range(len(sizes))]
    return before, np.asarray(lrs, dtype=float)


# ------------------------------------------------------------------------------------ the seed chart
SEED000_TOTAL = 60_000_000
SEED000_POINTS: tuple[tuple[int, float], ...] = (
    (0, 0.0),
    (2_000_000, 5e-5),       # warmup 0 -> 5e-5 by ~2M samples
    (45_000_000, 5e-5),      # stable to ~45M
    (50_000_000, 4.5e-5),    # gentle decay to ~4.5e-5 by 50M
    (50_000_000, 2.7e-5),    # step drop to ~2.7e-5
    (55_000_000, 2.6e-5),    # slight decay to ~2.6e-5 by 55M
    (55_000_000, 0.9e-5),    # step drop to ~0.9e-5
    (SEED000_TOTAL, 0.9e-5),  # flat to 60M
)


def seed000_schedule() -> Piecewise:
    """The LR chart of seed 000 as a sample-indexed piecewise schedule (60M samples, peak 5e-5).

    Warmup 0 -> 5e-5 by 2M samples, stable to 45M, gentle decay to 4.5e-5 by 50M, a step to 2.7e-5,
    a slight decay to 2.6e-5 by 55M, a step to 0.9e-5, flat to 60M. The chart's source is unknown and
    these breakpoints are read off the picture: they are approximate (to within about 1M samples and
    0.1e-5). Indexing by samples makes the curve independent of the batch size, so the same schedule
    holds if the run changes its batch size half-way.
    """
    return Piecewise(SEED000_POINTS, kind="linear", unit="sample")


# ------------------------------------------------------------------------------------ PyTorch adapter
class ScheduleLR(torch.optim.lr_scheduler.LambdaLR):
    """A ``LambdaLR`` that sets each step's LR to ``schedule(step)`` exactly.

    ``LambdaLR`` sets ``lr = initial_lr * lr_lambda(step)``. lrlab schedules return the LR itself, not a
    factor, so this adapter sets every parameter group's ``initial_lr`` to 1.0: then
    ``lr = 1.0 * schedule(step)``, exactly (dividing by the optimizer's lr and multiplying back could
    be off by one rounding). The ``lr=`` the optimizer was created with is therefore replaced by the
    schedule. Call ``scheduler.step()`` after each ``optimizer.step()``, as for any PyTorch scheduler.
    """

    unit = "step"

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Callable | Sequence[Callable]) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        groups = optimizer.param_groups
        scheds = list(schedule) if isinstance(schedule, list | tuple) else [schedule] * len(groups)
        if len(scheds) != len(groups):
            raise ValueError(f"give one schedule, or one per parameter group ({len(groups)}), "
                             f"got {len(scheds)}")
        for s in scheds:
            if not callable(s):
                raise ValueError(f"a schedule must be callable (t -> lr), got {s!r}")
        self.schedules = scheds
        for group in groups:
            group["initial_lr"] = 1.0
        super().__init__(optimizer, scheds)

    @property
    def schedule(self) -> Callable:
        """The schedule of the first parameter group."""
        return self.schedules[0]

    @property
    def progress(self) -> float:
        """Steps done so far (the ``t`` of the next step)."""
        return self.last_epoch

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.schedule!r}, unit={self.unit!r}, progress={self.progress})"


class SampleScheduleLR(ScheduleLR):
    """A ``LambdaLR`` driven by samples: the LR of the next step is ``schedule(samples seen so far)``.

    Call ``advance(n)`` after each ``optimizer.step()`` with the number of samples in that batch (the
    course's ``lrlab.training.fit`` does this for any scheduler that has ``advance``). Batches of
    different sizes are fine: the LR follows the samples seen. ``step()`` alone would not know how many
    samples passed, so calling it directly is an error.
    """

    unit = "sample"

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Callable | Sequence[Callable]) -> None:
        self.samples = 0
        self._advancing = True  # the constructor's own initial step() is allowed
        super().__init__(optimizer, schedule)
        self._advancing = False

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [base * fn(self.samples) for base, fn in zip(self.base_lrs, self.lr_lambdas, strict=True)]

    def step(self, epoch: int | None = None) -> None:
        if not self._advancing:
            raise RuntimeError("this scheduler counts samples: call advance(n_samples) after "
                               "optimizer.step() instead of step()")
        super().step(epoch)

    def advance(self, n_samples: int) -> None:
        """Count ``n_samples`` more samples and set the LR for the next step."""
        if type(n_samples) is not int or n_samples < 1:  # the common case costs one type check per step
            n_samples = check_int(n_samples, "n_samples", low=1, hint="the batch size just used")
        self.samples += n_samples
        self._advancing = True
        try:
            super().step()
        finally:
            self._advancing = False

    @property
    def progress(self) -> float:
        """Samples seen so far (the ``t`` of the next step)."""
        return self.samples


def as_lambda_lr(optimizer: torch.optim.Optimizer, schedule: Callable | Sequence[Callable], *,
                 unit: str | None = None) -> ScheduleLR:
    """Drive ``optimizer`` with ``schedule`` through a ``torch.optim.lr_scheduler.LambdaLR``.

    ``unit="step"`` returns a :class:`ScheduleLR` (call ``.step()`` after each optimizer step);
    ``unit="sample"`` returns a :class:`SampleScheduleLR` (call ``.advance(batch_size)`` instead).
    ``unit=None`` takes the schedule's own unit (plain functions count steps). The unit must match
    the schedule's: convert with :func:`to_samples` / :func:`to_steps` first. The optimizer's LR is
    set to ``schedule(0)`` at once.
    """
    first = schedule[0] if isinstance(schedule, list | tuple) and schedule else schedule
    own = getattr(first, "unit", None)
    if unit is None:
        unit = own or "step"
    unit = _unit(unit)
    if own is not None and own != unit:
        fix = "to_samples(schedule, batch_size)" if unit == "sample" else "to_steps(schedule, batch_size)"
        raise ValueError(f"the schedule counts {own}s but unit={unit!r} was asked; "
                         f"convert it first with {fix}, or pass unit={own!r}")
    cls = SampleScheduleLR if unit == "sample" else ScheduleLR
    return cls(optimizer, schedule)


__all__ = [
    "UNITS", "Schedule", "Constant", "StepDecay", "MultiStep", "Exponential", "Polynomial", "Cosine",
    "CosineRestarts", "Linear", "Warmup", "WSD", "Join", "Piecewise", "OneCycle", "Cyclic", "Converted",
    "steps_to_samples", "samples_to_steps", "to_samples", "to_steps", "lr_trajectory",
    "SEED000_TOTAL", "SEED000_POINTS", "seed000_schedule", "ScheduleLR", "SampleScheduleLR", "as_lambda_lr",
]
