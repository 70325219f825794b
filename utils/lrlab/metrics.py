"""Convergence metrics: numbers that say how fast, how far and how smoothly a run converged.

Every function here reads a training trace (a :class:`lrlab.training.Trace`, or anything with an
``epochs`` list of per-epoch dicts and, optionally, a ``steps`` list of per-step dicts) or a plain
sequence of numbers. Nothing here trains; all functions are pure, so they are cheap to call on a
hundred traces from :mod:`lrlab.sweep`.

The vocabulary, on a loss curve ``L_1, L_2, ...``:

* **time to target** -- the first epoch (or the samples seen by then) at which a metric reaches a
  target, e.g. test accuracy >= 0.85. ``None`` when it never does: a run that never arrives is not
  "slow", it is a different kind of result, and averaging it in as a large number would hide that.
* **final / best** -- the last value, and the best one seen (``min`` for losses, ``max`` for accuracy).
* **area under the loss curve** -- the mean loss over the budget (trapezoid rule, divided by the
  length of the x-axis). Two runs that end at the same loss can differ here: the one that got there
  early has a smaller area. Lower is better.
* **plateau** -- where the curve stops improving: ``patience`` consecutive values that do not beat
  the best so far by a relative ``rel_tol`` (the rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau``).
* **divergence** -- a non-finite loss, or a loss above ``factor`` times where it started.
* **oscillation** -- how much the curve moves without getting anywhere (see :func:`oscillation`).

:func:`classify` puts the pieces together and labels a run ``"slow"``, ``"converging"``,
``"bouncing"`` or ``"diverged"`` -- the four things a learning rate that is too low, right, too high
or far too high does to the course's task.

imports: nothing from lrlab (it reads Traces by duck typing).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LABELS = ("slow", "converging", "bouncing", "diverged")
_MODES = ("min", "max")


# --------------------------------------------------------------------------- reading a trace
def _epoch_records(trace: Any) -> list[Mapping[str, Any]]:
    """The per-epoch records of a trace (or the list itself when a list of dicts is passed)."""
    if isinstance(trace, Sequence) and not isinstance(trace, str | bytes):
        records = list(trace)
    elif hasattr(trace, "epochs"):
        records = list(trace.epochs)
    else:
        raise ValueError(
            f"expected a Trace (an object with an .epochs list of dicts) or a list of epoch dicts, "
            f"got {type(trace).__name__}"
        )
    if not all(isinstance(r, Mapping) for r in records):
        raise ValueError("every epoch record must be a dict such as {'epoch': 1, 'train_loss': 0.7, ...}")
    return records


def _step_records(trace: Any) -> list[Mapping[str, Any]]:
    steps = getattr(trace, "steps", None)
    return list(steps) if steps else []


def series(trace: Any, metric: str = "train_loss", *, per: str = "epoch") -> np.ndarray:
    """The values of ``metric`` over a trace, as a float array.

    ``per="epoch"`` reads the epoch records (``train_loss``, ``test_loss``, ``test_acc``, ``lr``,
    ``samples``, ...); ``per="step"`` reads the per-step records (``loss``, ``lr``, ``samples``).
    A record that lacks the key (e.g. the epoch a run diverged in) gives ``nan``.
    """
    if per not in ("epoch", "step"):
        raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")
    records = _epoch_records(trace) if per == "epoch" else _step_records(trace)
    if records and not any(metric in r for r in records):
        keys = sorted({k for r in records for k in r})
        raise ValueError(f"no {per} record has the key {metric!r}; the keys are {keys}")
    return np.array([_as_float(r.get(metric, math.nan)) for r in records], dtype=float)


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mode_for(metric: str, mode: str | None) -> str:
    """``"max"`` for accuracies, ``"min"`` for losses, unless ``mode`` says otherwise."""
    if mode is not None:
        if mode not in _MODES:
            raise ValueError(
                f"mode must be 'min' (lower is better) or 'max' (higher is better), got {mode!r}"
            )
        return mode
    if "acc" in metric:
        return "max"
    if "loss" in metric:
        return "min"
    raise ValueError(
        f"cannot tell whether higher or lower is better for {metric!r}; pass mode='min' or mode='max'"
    )


def _as_values(values: Any, what: str = "values") -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of numbers, got shape {arr.shape}")
    return arr


# --------------------------------------------------------------------------- time to target
def first_reach(values: Sequence[float], target: float, mode: str = "min") -> int | None:
    """Index of the first value that reaches ``target`` (``<=`` for ``mode="min"``, ``>=`` for ``"max"``).

    Returns ``None`` when no value does. NaN never reaches a target.
    """
    arr = _as_values(values)
    if mode not in _MODES:
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if not math.isfinite(float(target)):
        raise ValueError(f"target must be a finite number, got {target!r}")
    with np.errstate(invalid="ignore"):
        hit = arr <= target if mode == "min" else arr >= target
    idx = np.flatnonzero(hit)
    return int(idx[0]) if idx.size else None


def epochs_to_target(
    trace: Any, target: float, metric: str = "test_acc", *, mode: str | None = None
) -> int | None:
    """The first epoch (1-based, as in the trace table) at which ``metric`` reaches ``target``.

    ``mode`` defaults to ``"max"`` for accuracies and ``"min"`` for losses. ``None`` if never reached.

    >>> epochs_to_target([{"epoch": 1, "test_acc": 0.6}, {"epoch": 2, "test_acc": 0.86}], 0.85)
    2
    """
    records = _epoch_records(trace)
    i = first_reach(series(records, metric), target, _mode_for(metric, mode))
    if i is None:
        return None
    return int(records[i].get("epoch", i + 1))


def samples_to_target(
    trace: Any, target: float, metric: str = "test_acc", *, mode: str | None = None, per: str = "epoch"
) -> int | None:
    """Training samples seen when ``metric`` first reaches ``target`` (``None`` if never).

    Samples, not epochs or steps, are the fair clock when runs use different batch sizes: a step
    with a batch of 128 has seen four times the data of a step with a batch of 32.
    ``per="step"`` looks at the per-step training loss (``metric="loss"``) instead of epoch records.
    """
    records = _epoch_records(trace) if per == "epoch" else _step_records(trace)
    if per not in ("epoch", "step"):
        raise ValueError(f"per must be 'epoch' or 'step', got {per!r}")
    if not records:
        return None
    i = first_reach(
        series(trace if per == "step" else records, metric, per=per), target, _mode_for(metric, mode)
    )
    if i is None:
        return None
    if "samples" not in records[i]:
        raise ValueError(f"the {per} records have no 'samples' key, so samples to target is unknown")
    return int(records[i]["samples"])


# --------------------------------------------------------------------------- final / best / area
def final_value(trace: Any, metric: str = "test_loss") -> float:
    """The last finite value of ``metric`` (``nan`` if there is none)."""
    arr = series(trace, metric)
    finite = arr[np.isfinite(arr)]
    return float(finite[-1]) if finite.size else math.nan


def best_value(trace: Any, metric: str = "test_loss", *, mode: str | None = None) -> float:
    """The best value of ``metric`` over the run: the minimum of a loss, the maximum of an accuracy."""
    arr = series(trace, metric)
    finite = arr[np.isfinite(arr)]
    if not finite.size:
        return math.nan
    return float(finite.min() if _mode_for(metric, mode) == "min" else finite.max())


def area_under_curve(
    values: Sequence[float], x: Sequence[float] | None = None, *, normalize: bool = True
) -> float:
    """Area under a curve by the trapezoid rule; with ``normalize`` divided by the x-range (a mean level).

    ``x`` defaults to 0, 1, 2, ... . A non-finite value makes the area ``inf`` (a run that blew up
    has not converged faster than anyone). With one point the "mean level" is that point.
    """
    y = _as_values(values)
    if y.size == 0:
        raise ValueError("need at least one value to measure an area")
    xs = np.arange(y.size, dtype=float) if x is None else _as_values(x, "x")
    if xs.shape != y.shape:
        raise ValueError(f"x and values must have the same length, got {xs.size} and {y.size}")
    if not np.all(np.isfinite(y)):
        return math.inf
    if np.any(np.diff(xs) <= 0):
        raise ValueError("x must be strictly increasing")
    if y.size == 1:
        return float(y[0])
    area = float(np.sum((y[1:] + y[:-1]) * np.diff(xs)) / 2.0)
    return area / float(xs[-1] - xs[0]) if normalize else area


def loss_auc(trace: Any, metric: str = "train_loss", *, x: str = "samples") -> float:
    """Mean ``metric`` over the run, as the normalized area under its curve against ``x``.

    ``x`` is an epoch-record key: ``"samples"`` (fair across batch sizes) or ``"epoch"``.
    """
    if x not in ("samples", "epoch"):
        raise ValueError(f"x must be 'samples' or 'epoch', got {x!r}")
    return area_under_curve(series(trace, metric), series(trace, x))


# --------------------------------------------------------------------------- plateau and divergence
def detect_plateau(values: Sequence[float], *, patience: int = 3, rel_tol: float = 0.01) -> int | None:
    """Index where the first plateau begins, or ``None``.

    A value *improves* when it beats ``best`` by more than ``rel_tol`` (relative):
    ``v < best * (1 - rel_tol)`` -- the rule ``ReduceLROnPlateau(threshold_mode="rel")`` uses for a
    loss. ``best`` is the last value that counted as an improvement (the first value to begin with),
    as in torch: a value that is lower than ``best`` but not by ``rel_tol`` does not move it. A plateau
    is ``patience`` values in a row without an improvement; it begins at the last improvement before
    them. Works on losses (lower is better); pass ``-accuracy`` for accuracies.

    Timing against torch: ``ReduceLROnPlateau(patience=p)`` tolerates ``p`` bad epochs and lowers the LR
    at the ``p + 1``-th. Here ``patience`` counts the bad values that *make* a plateau, so the plateau
    found with ``patience=p`` is declared at index ``detect_plateau(...) + p``, the very step at which
    ``ReduceLROnPlateau(patience=p - 1, threshold=rel_tol, threshold_mode="rel", cooldown=0)`` first
    lowers the LR (tested against torch). For a negative ``best`` the margin here is ``|best| * rel_tol``
    (so "improves" still means "lower"), where torch's ``best * (1 - rel_tol)`` would ask for less.
    """
    arr = _as_values(values)
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be a positive integer (values in a row), got {patience!r}")
    if not 0 <= rel_tol < 1:
        raise ValueError(f"rel_tol must be in [0, 1), got {rel_tol!r}")
    if arr.size == 0:
        return None
    best, best_i, waited = arr[0], 0, 0
    for i in range(1, arr.size):
        v = arr[i]
        threshold = best - abs(best) * rel_tol
        if math.isfinite(v) and v < threshold:
            best, best_i, waited = v, i, 0
        else:
            waited += 1
            if waited >= patience:
                return best_i
    return None


def plateau_epoch(
    trace: Any, metric: str = "test_loss", *, patience: int = 3, rel_tol: float = 0.01
) -> int | None:
    """The epoch (1-based) where ``metric`` plateaus (see :func:`detect_plateau`), or ``None``."""
    records = _epoch_records(trace)
    arr = series(records, metric)
    if _mode_for(metric, None) == "max":
        arr = -arr
    i = detect_plateau(arr, patience=patience, rel_tol=rel_tol)
    return None if i is None else int(records[i].get("epoch", i + 1))


def detect_divergence(
    values: Sequence[float], *, factor: float = 3.0, reference: float | None = None
) -> int | None:
    """Index of the first value that is non-finite or above ``factor * reference``, or ``None``.

    ``reference`` defaults to the first value (the loss before training has done much). For a
    balanced binary task that is about ln 2 = 0.69, so the default flags a loss above ~2.1: a model
    that is confidently wrong, not one that is merely noisy.
    """
    arr = _as_values(values)
    if not factor > 1:
        raise ValueError(
            f"factor must be > 1 (how many times the reference loss counts as diverged), got {factor!r}"
        )
    if arr.size == 0:
        return None
    ref = float(arr[0]) if reference is None else float(reference)
    bad = ~np.isfinite(arr)
    if math.isfinite(ref):
        with np.errstate(invalid="ignore"):
            bad |= arr > factor * ref
    idx = np.flatnonzero(bad)
    return int(idx[0]) if idx.size else None


def _initial_loss(trace: Any) -> float:
    """The loss before (or at) the first update: step 0's loss if recorded, else epoch 1's."""
    steps = _step_records(trace)
    if steps and "loss" in steps[0]:
        return _as_float(steps[0]["loss"])
    arr = series(trace, "train_loss")
    return float(arr[0]) if arr.size else math.nan


def is_diverged(trace: Any, *, factor: float = 3.0) -> bool:
    """True when the run diverged: the trace says so, a step loss is NaN/inf, or an epoch's mean loss
    (train, or test/validation) rose above ``factor`` x the initial loss.

    Single mini-batch spikes above ``factor`` x initial do not count: a run that recovers from them
    within the epoch is bouncing, not diverging.
    """
    if bool(getattr(trace, "diverged", False)):
        return True
    ref = _initial_loss(trace)
    records = _epoch_records(trace)
    held_out = "val_loss" if any("val_loss" in r for r in records) and not any("test_loss" in r for r in records) \
        else "test_loss"
    for metric in ("train_loss", held_out):
        arr = series(trace, metric)
        if arr.size and detect_divergence(arr, factor=factor, reference=ref) is not None:
            return True
    steps = _step_records(trace)
    if steps and any("loss" in s for s in steps):
        return not bool(np.all(np.isfinite(series(trace, "loss", per="step"))))
    return False


# --------------------------------------------------------------------------- oscillation
def oscillation(values: Sequence[float]) -> float:
    """How much a curve bounces: the share of its movement that goes nowhere, in [0, 1].

    With the total variation ``TV = sum |v[i+1] - v[i]|`` (all the up and down travelled) and the net
    change ``|v[-1] - v[0]|``::

        oscillation = (TV - net) / TV

    A curve that only goes down (or only up) scores 0, however fast it moves; a curve that ends where
    it started after going up and down scores 1. Because it is a ratio it does not depend on the
    scale of the loss, and a large early drop "pays for" small late wiggles -- which is what a
    healthy run looks like. Use it on epoch losses or on smoothed step losses: raw per-step losses
    bounce at every learning rate because each mini-batch is different.
    Fewer than three finite values cannot bounce: 0.
    """
    arr = _as_values(values)
    arr = arr[np.isfinite(arr)]
    if arr.size < 3:
        return 0.0
    tv = float(np.sum(np.abs(np.diff(arr))))
    if tv == 0.0:
        return 0.0
    net = abs(float(arr[-1] - arr[0]))
    wasted = tv - net
    # a monotone curve has wasted == 0 exactly on paper; in floating point it can be ~1e-17 of tv
    return 0.0 if wasted <= 1e-12 * tv else wasted / tv


def sign_change_fraction(values: Sequence[float]) -> float:
    """Share of consecutive differences that flip sign, in [0, 1] (a second, cruder bounce measure).

    Independent noise gives about 2/3; a monotone curve gives 0. It ignores how big the bounces
    are, which is why :func:`oscillation` is the one :func:`classify` uses.
    """
    arr = _as_values(values)
    arr = arr[np.isfinite(arr)]
    d = np.sign(np.diff(arr))
    d = d[d != 0]
    if d.size < 2:
        return 0.0
    return float(np.mean(d[1:] != d[:-1]))


# --------------------------------------------------------------------------- the classifier
@dataclass(frozen=True)
class Thresholds:
    """The documented thresholds of :func:`classify` (chosen on the course's task; see its docstring).

    diverge_factor: a loss above this many times the initial loss (or a NaN/inf) means diverged.
    bounce: oscillation of the epoch train losses above this means bouncing.
    slow_progress: a run that removed less than this fraction of its initial loss is slow.
    """

    diverge_factor: float = 3.0
    bounce: float = 0.25
    slow_progress: float = 0.3

    def __post_init__(self) -> None:
        if not self.diverge_factor > 1:
            raise ValueError(f"diverge_factor must be > 1, got {self.diverge_factor!r}")
        if not 0 < self.bounce < 1:
            raise ValueError(f"bounce must be in (0, 1), got {self.bounce!r}")
        if not 0 < self.slow_progress < 1:
            raise ValueError(f"slow_progress must be in (0, 1), got {self.slow_progress!r}")


def progress(trace: Any) -> float:
    """Fraction of the initial loss that training removed: ``1 - best train loss / initial loss``.

    0 means nothing learned; 1 would mean a loss of zero. Uses the best epoch train loss so that a
    late bounce does not hide what was learned.
    """
    init = _initial_loss(trace)
    best = best_value(trace, "train_loss")
    if not (math.isfinite(init) and math.isfinite(best)) or init <= 0:
        return math.nan
    return 1.0 - best / init


def classify_details(trace: Any, thresholds: Thresholds | None = None) -> dict[str, Any]:
    """The label of :func:`classify` together with the numbers it was decided from."""
    th = thresholds or Thresholds()
    if not isinstance(th, Thresholds):
        raise ValueError(f"thresholds must be a lrlab.metrics.Thresholds, got {type(th).__name__}")
    records = _epoch_records(trace)
    if not records and not _step_records(trace):
        raise ValueError("the trace is empty: train at least one epoch before classifying it")
    losses = series(trace, "train_loss") if records else np.array([])
    details = {
        "initial_loss": _initial_loss(trace),
        "progress": progress(trace) if records else math.nan,
        "oscillation": oscillation(losses),
        "diverged": is_diverged(trace, factor=th.diverge_factor),
        "thresholds": asdict(th),
    }
    if details["diverged"]:
        label = "diverged"
    elif details["oscillation"] > th.bounce:
        label = "bouncing"
    elif not details["progress"] >= th.slow_progress:
        label = "slow"
    else:
        label = "converging"
    details["label"] = label
    return details


def classify(trace: Any, thresholds: Thresholds | None = None) -> str:
    """Label a run ``"slow"``, ``"converging"``, ``"bouncing"`` or ``"diverged"``.

    The rules, checked in this order (defaults in :class:`Thresholds`):

    1. **diverged** -- the trace stopped on a NaN/inf, or a loss rose above 3x the initial loss.
    2. **bouncing** -- the epoch train loss oscillates: more than 25 % of its total up-and-down
       movement cancels out (:func:`oscillation` > 0.25). The LR is so large that steps overshoot
       the valley floor and the loss goes up as often as down.
    3. **slow** -- it neither diverged nor bounced, but removed less than 30 % of the initial loss
       (:func:`progress` < 0.3): the LR is too small to get anywhere in the budget.
    4. **converging** -- everything else: the loss went down steadily and a good part of the way.

    Measured on the course's task (the seed-002 MLP, plain SGD, batch 32, 10 epochs, 5 seeds each):

    ==========  ================  ===============  ==========
    LR          progress          oscillation      label
    ==========  ================  ===============  ==========
    0.001       0.03 - 0.12       0                slow
    0.003       0.12 - 0.25       0                slow
    0.01        0.32 - 0.46       0                converging
    0.1         0.64 - 0.68       0                converging
    1           0.65 - 0.69       0.11 - 0.22      converging
    2 - 3       0.61 - 0.67       0.31 - 0.75      bouncing
    5           (mixed)           0.4 - 0.9        bouncing or diverged
    >= 10       NaN / overflow    --               diverged
    ==========  ================  ===============  ==========

    The borders are not sharp -- 0.003 and 0.01, or 1 and 2, sit close to a threshold -- but LRs a
    factor of ten apart land reliably in different classes; the tests train such runs and check it.
    """
    return classify_details(trace, thresholds)["label"]


def summarize(
    trace: Any, *, target_acc: float | None = None, target_loss: float | None = None, split: str = "test"
) -> dict[str, Any]:
    """One row of metrics for a run (what :mod:`lrlab.sweep` puts in its table).

    ``split`` names the held-out set the epoch records were evaluated on: ``"test"`` (keys ``test_loss``,
    ``test_acc``; row keys ``final_test_loss`` ...) or ``"val"`` (``val_loss`` ... ``final_val_loss`` ...).
    """
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    row: dict[str, Any] = {
        f"final_{split}_loss": final_value(trace, f"{split}_loss"),
        f"final_{split}_acc": final_value(trace, f"{split}_acc"),
        f"best_{split}_loss": best_value(trace, f"{split}_loss"),
        f"best_{split}_acc": best_value(trace, f"{split}_acc"),
        "final_train_loss": final_value(trace, "train_loss"),
        "auc_train_loss": loss_auc(trace, "train_loss", x="samples"),
        "oscillation": oscillation(series(trace, "train_loss")),
        "diverged": is_diverged(trace),
        "label": classify(trace),
    }
    if target_acc is not None:
        row["samples_to_acc"] = samples_to_target(trace, target_acc, f"{split}_acc")
    if target_loss is not None:
        row["samples_to_loss"] = samples_to_target(trace, target_loss, f"{split}_loss")
    return row
