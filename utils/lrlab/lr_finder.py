"""The learning-rate range test: sweep the LR upwards for a few steps and read a good one off the loss.

Where it comes from. L. Smith ("Cyclical Learning Rates for Training Neural Networks", 2017) ran an
"LR range test" to set the bounds of a cyclical schedule: he raised the LR *linearly* over a few epochs
and read the *accuracy* curve (where it starts to rise, where it turns). The version here is the one
fastai's ``lr_find`` made popular: an *exponential* sweep over a few hundred mini-batches, one LR per
step, reading the *training loss*, with the loss smoothed by a bias-corrected moving average and the
test stopped once the smoothed loss exceeds 4 times its best. At first the LR is too small to change
anything and the loss stays flat; then it falls, faster and faster; then the steps overshoot and the
loss shoots up. A good LR for real training sits on the falling part, below the turn.

Four details decide whether the test is useful on noisy mini-batch losses:

1. **Smoothing.** Each step's loss is from a different mini-batch, so the raw curve is jagged. We
   keep an exponential moving average ``avg = beta * avg + (1 - beta) * loss``. Started at 0, that
   average is biased towards 0 for the first ~1/(1-beta) steps; dividing by ``1 - beta**n`` after
   ``n`` steps removes the bias (the same correction Adam applies to its moments). See
   :func:`ema_update` and :func:`smooth_losses`.
2. **Lag.** An average over the last ~1/(1-beta) steps describes the LRs of those steps, not the
   current one: the smoothed curve trails the LR. With ``beta = 0.98`` over a 100-step test that is
   ~50 steps, three decades of LR on a 6-decade sweep -- every reading lands far too high. The
   defaults here, 300 steps (50 per decade) and ``beta = 0.9`` (~10 steps, a fifth of a decade),
   keep the lag small and still tame the noise.
3. **Stopping.** Once the smoothed loss exceeds ``stop_factor`` times the best smoothed loss seen,
   the LR is clearly too large and the rest of the sweep would only waste time (and may overflow).
   The rule is on the *smoothed* loss: one unlucky mini-batch must not end the test. See
   :func:`should_stop`.
4. **Burn-in.** The first few steps are skipped when tracking the best loss and when suggesting an
   LR: even bias-corrected, an average of a handful of losses is mostly noise.

The exponential sweep (:func:`lr_sweep`, ``mode="exp"``), the smoothing and the 4x stop are fastai's
``lr_find``; the burn-in and the ``"descent"`` suggestion rule are this course's own. fastai's default
suggestion, ``"valley"``, is implemented here from its documented definition for comparison.

The model **and** the optimizer are restored afterwards (parameters, gradients, momentum buffers,
Adam moments, LRs, and the global torch RNG), so the range test can be run on the very model you
are about to train. The suggestion rules are compared in :func:`suggest_lr`.

imports: args, training (the range test runs on fit).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lrlab.args import check_choice, check_instance, check_int, check_real
from lrlab.training import Callback, StopTraining, Trace, fit

MODES = ("exp", "linear")
RULES = ("descent", "valley", "steepest", "min/10")


# --------------------------------------------------------------------------- pure pieces
def lr_sweep(lr_min: float, lr_max: float, num_steps: int, mode: str = "exp") -> np.ndarray:
    """The LRs of the range test: ``num_steps`` values from ``lr_min`` to ``lr_max`` (both included).

    ``mode="exp"`` spaces them evenly on a log scale (each step multiplies the LR by the same
    factor), so every decade gets the same number of steps -- what you want when the good LR could
    be 1e-4 or 1. ``mode="linear"`` spaces them evenly, which spends almost all steps near ``lr_max``;
    use it only to zoom into a range you already know.
    """
    _check_range(lr_min, lr_max)
    check_int(num_steps, "num_steps", low=2, hint="LRs to try")
    check_choice(mode, "mode", MODES)
    if mode == "exp":
        return np.geomspace(lr_min, lr_max, int(num_steps))
    return np.linspace(lr_min, lr_max, int(num_steps))


def _check_range(lr_min: float, lr_max: float) -> None:
    for name, v in (("lr_min", lr_min), ("lr_max", lr_max)):
        check_real(v, name, low=0, low_open=True, hint="a positive learning rate")
    if not lr_min < lr_max:
        raise ValueError(f"lr_min ({lr_min}) must be smaller than lr_max ({lr_max})")


def _check_beta(beta: float) -> None:
    check_real(beta, "beta", low=0, high=1, high_open=True, hint="0 = no smoothing, 0.98 = about 50 steps")


def ema_update(avg: float, loss: float, beta: float, n: int) -> tuple[float, float]:
    """One step of the bias-corrected exponential moving average.

    ``avg`` is the raw running average before this step (start with 0.0), ``n`` is the number of
    losses seen *including* this one (1 on the first call). Returns ``(new_avg, smoothed)`` where
    ``new_avg = beta * avg + (1 - beta) * loss`` is what to carry to the next step and
    ``smoothed = new_avg / (1 - beta**n)`` is the bias-corrected value to use.

    Without the correction the first smoothed value would be ``(1 - beta) * loss`` -- a tenth of
    the loss for ``beta = 0.9`` -- and the early curve would look like a steep climb from near 0.
    """
    _check_beta(beta)
    check_int(n, "n", low=1, hint="the 1-based count of losses seen so far")
    new_avg = beta * float(avg) + (1.0 - beta) * float(loss)
    return new_avg, new_avg / (1.0 - beta**n)


def smooth_losses(losses: Sequence[float], beta: float = 0.9) -> np.ndarray:
    """Bias-corrected exponential moving average of a sequence of losses (same length).

    ``beta = 0`` returns the losses unchanged. A non-finite loss makes every later value non-finite,
    which is right: the stopping rule must see it.
    """
    _check_beta(beta)
    arr = np.asarray(losses, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"losses must be a 1-D sequence, got shape {arr.shape}")
    out = np.empty_like(arr)
    avg = 0.0
    for i, loss in enumerate(arr):
        avg, out[i] = ema_update(avg, loss, beta, i + 1)
    return out


def should_stop(smoothed: float, best: float, stop_factor: float = 4.0) -> bool:
    """The range test's stopping rule: stop once the smoothed loss exceeds ``stop_factor`` x best.

    Both arguments are *smoothed* losses (``best`` is the lowest smoothed loss after the burn-in).
    A non-finite smoothed loss always stops. Assumes losses are positive (cross-entropy, MSE).
    """
    check_real(stop_factor, "stop_factor", low=1, low_open=True, hint="e.g. 4 = four times the best loss")
    if not math.isfinite(smoothed):
        return True
    return smoothed > stop_factor * best


def stop_index(
    losses: Sequence[float], beta: float = 0.9, stop_factor: float = 4.0, burn_in: int = 10
) -> int | None:
    """The step at which the range test stops on these raw ``losses``, or None if it never does.

    The rule of :func:`lr_range_test`, offline: smooth with :func:`smooth_losses`; a non-finite raw
    loss stops at once; from step ``burn_in`` on, track the best smoothed loss and stop at the first
    step whose smoothed loss exceeds ``stop_factor`` x that best (:func:`should_stop`).
    """
    burn_in = check_int(burn_in, "burn_in", low=0, hint="steps to skip")
    raw = np.asarray(losses, dtype=float)
    smoothed = smooth_losses(raw, beta)
    best = math.inf
    for i, (loss, s) in enumerate(zip(raw, smoothed, strict=True)):
        if not math.isfinite(loss):
            return i
        if i >= burn_in:
            best = min(best, float(s))
            if should_stop(float(s), best, stop_factor):
                return i
    return None


# --------------------------------------------------------------------------- suggestion rules
def _usable(lrs: np.ndarray, smoothed: np.ndarray, burn_in: int) -> tuple[np.ndarray, np.ndarray]:
    lrs = np.asarray(lrs, dtype=float)
    smoothed = np.asarray(smoothed, dtype=float)
    if lrs.shape != smoothed.shape or lrs.ndim != 1:
        raise ValueError(
            f"lrs and smoothed must be 1-D and the same length, got {lrs.shape} and {smoothed.shape}"
        )
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 0:
        raise ValueError(f"burn_in must be a non-negative integer (steps to skip), got {burn_in!r}")
    finite = np.isfinite(smoothed)
    end = int(np.argmin(finite)) if not finite.all() else smoothed.size
    lr_u, s_u = lrs[burn_in:end], smoothed[burn_in:end]
    if s_u.size < 3:
        raise ValueError(
            f"only {s_u.size} usable points after a burn-in of {burn_in} steps; "
            "run the range test longer (num_steps) or lower burn_in"
        )
    return lr_u, s_u


def _valley_index(smoothed: np.ndarray) -> int:
    """Halfway along the longest decreasing subsequence of ``smoothed`` (its first to its last point)."""
    n = smoothed.size
    length = np.ones(n, dtype=int)
    start = np.arange(n)
    for i in range(1, n):
        lower = smoothed[:i] > smoothed[i]  # earlier points from which the curve fell to point i
        if lower.any():
            j = int(np.flatnonzero(lower)[np.argmax(length[:i][lower])])
            length[i], start[i] = length[j] + 1, start[j]
    end = int(np.argmax(length))  # the first of the longest: ties go to the earliest valley
    return int(start[end] + (end - start[end]) // 2)


def suggest_lr(
    lrs: Sequence[float], smoothed: Sequence[float], rule: str = "descent", *, burn_in: int = 0
) -> float:
    """Read an LR off a range-test curve (``smoothed`` losses at increasing ``lrs``).

    Rules (only points after ``burn_in`` and before the first non-finite loss are used):

    * ``"min/10"`` -- the LR at the lowest smoothed loss, divided by 10. The minimum sits where the
      LR already starts to hurt, so one decade below is a safe, classic choice. Its weakness: on a
      flat valley floor the position of the minimum is decided by noise.
    * ``"steepest"`` -- the LR where the smoothed loss falls fastest per unit of log-LR (the most
      negative finite difference). It looks principled, but a derivative amplifies noise: one
      lucky mini-batch makes a steep point anywhere on the curve.
    * ``"valley"`` -- fastai's default rule (since fastai 2.4), written here from its documented
      definition: the longest "valley" of the curve, i.e. the longest stretch of points along which
      the loss keeps falling (a longest decreasing subsequence of the smoothed losses), and the LR
      halfway along it (in steps, so halfway in log-LR on an exponential sweep).
    * ``"descent"`` (default; this course's rule, not fastai's or Smith's) -- level crossings instead
      of derivatives. Take the drop from the starting level ``L0`` (the highest smoothed loss before
      the minimum) down to the minimum ``Lmin``, find the LRs at which the curve first gets 50 % and
      90 % of the way down, and suggest their geometric middle: the lower half of the steep part, well below the turn.
      Crossing a level depends on the whole curve up to it, not on the difference of two
      neighbouring points, so noise moves it little.

    Module 04 sets the suggestions of one 300-step test (plain SGD, seed 0) beside the band of good constant
    LRs that a grid over 8 seeds measures on the validation split: ``"descent"``, ``"min/10"`` and
    ``"steepest"`` fall inside it, fastai's ``"valley"`` about a decade below (cautious on this task).
    """
    lr_u, s_u = _usable(np.asarray(lrs, float), np.asarray(smoothed, float), burn_in)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    i_min = int(np.argmin(s_u))
    if rule == "min/10":
        return float(lr_u[i_min] / 10.0)
    if rule == "valley":
        return float(lr_u[_valley_index(s_u)])
    if rule == "steepest":
        stop = max(i_min, 2)
        slopes = np.diff(s_u[: stop + 1]) / np.diff(np.log(lr_u[: stop + 1]))
        return float(lr_u[int(np.argmin(slopes))])
    # descent: the geometric middle of the 50 % and 90 % crossings of the drop to the minimum
    if i_min == 0:
        return float(lr_u[0])
    l0 = float(np.max(s_u[: i_min + 1]))
    i0 = int(np.argmax(s_u[: i_min + 1]))
    depth = l0 - float(s_u[i_min])
    if depth <= 0:
        return float(lr_u[i_min])
    before = s_u[i0 : i_min + 1]
    i_half = i0 + int(np.argmax(before <= l0 - 0.5 * depth))
    i_deep = i0 + int(np.argmax(before <= l0 - 0.9 * depth))
    return float(math.sqrt(lr_u[i_half] * lr_u[i_deep]))


# --------------------------------------------------------------------------- the result
@dataclass
class RangeTestResult:
    """What :func:`lr_range_test` measured.

    ``lrs[i]`` is the LR of step ``i``, ``losses[i]`` its raw mini-batch loss and ``smoothed[i]`` the
    bias-corrected moving average; ``suggestion`` is the LR the chosen ``rule`` reads off the curve.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    burn_in: int
    stopped_early: bool
    stop_reason: str
    rule: str = "descent"
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def suggestion(self) -> float:
        return self.suggest(self.rule)

    def suggest(self, rule: str = "descent") -> float:
        """The LR another rule would suggest on the same curve (see :func:`suggest_lr`)."""
        return suggest_lr(self.lrs, self.smoothed, rule, burn_in=self.burn_in)

    def suggestions(self) -> dict[str, float]:
        """Every rule's suggestion, for comparison."""
        return {rule: self.suggest(rule) for rule in RULES}

    def __repr__(self) -> str:
        return (
            f"RangeTestResult(steps={len(self.lrs)}, lr {self.lrs[0]:.3g} -> {self.lrs[-1]:.3g}, "
            f"stopped_early={self.stopped_early}, suggestion={self.suggestion:.3g} ({self.rule}))"
        )

    def plot(self, ax: Any = None, *, show_raw: bool = True, show_suggestions: bool = True) -> Any:
        """Loss against LR (log x-axis): raw losses faint, smoothed loss bold, suggestions as lines."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6.5, 4))
        if show_raw:
            ax.plot(self.lrs, self.losses, color="0.7", lw=0.8, label="mini-batch loss")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=2, label="smoothed (bias-corrected EMA)")
        if self.burn_in:
            ax.axvspan(
                self.lrs[0],
                self.lrs[min(self.burn_in, len(self.lrs) - 1)],
                color="0.9",
                label="burn-in (ignored)",
            )
        if show_suggestions:
            styles = {"descent": ("C2", "-"), "valley": ("C4", "-."), "steepest": ("C3", "--"), "min/10": ("C1", ":")}
            for rule, lr in self.suggestions().items():
                color, ls = styles[rule]
                ax.axvline(lr, color=color, ls=ls, lw=1.5, label=f"{rule}: {lr:.2g}")
        ax.set_xscale("log" if self.settings.get("mode", "exp") == "exp" else "linear")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if finite.size:
            lo, hi = float(finite.min()), float(np.max(finite[: max(self.burn_in, 1) + 1]))
            ax.set_ylim(lo - 0.1 * (hi - lo + 1e-12), max(hi, lo) + 0.6 * (hi - lo + 1e-12))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("LR range test" + (" (stopped early)" if self.stopped_early else ""))
        ax.legend(fontsize=8, loc="upper left")
        return ax


# --------------------------------------------------------------------------- the test
def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "model": copy.deepcopy(model.state_dict()),
        "grads": [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()],
        "training": model.training,
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, snap: dict[str, Any]) -> None:
    model.load_state_dict(snap["model"])
    for p, g in zip(model.parameters(), snap["grads"], strict=True):
        p.grad = None if g is None else g.clone()
    model.train(snap["training"])
    optimizer.load_state_dict(snap["optimizer"])
    torch.set_rng_state(snap["rng"])
    if snap["cuda_rng"] is not None:
        torch.cuda.set_rng_state_all(snap["cuda_rng"])


class RangeTestCallback(Callback):
    """The range test as a :func:`lrlab.training.fit` callback: one LR per step, smoothing, stopping.

    ``before_batch`` sets step ``i``'s LR ``lrs[i]`` on every parameter group; ``after_loss`` records the
    raw loss and its bias-corrected average and raises :class:`~lrlab.training.StopTraining` (before
    the step is applied) once :func:`should_stop` says so after the burn-in; ``after_step`` ends the run
    after the last LR. A NaN/inf loss is left to fit's divergence rule; :meth:`record_divergence`
    then adds it to the curve.
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, lrs: np.ndarray, beta: float, stop_factor: float, burn_in: int
    ) -> None:
        self.optimizer, self.lrs = optimizer, lrs
        self.beta, self.stop_factor, self.burn_in = beta, stop_factor, burn_in
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.avg, self.best = 0.0, math.inf
        self.stopped, self.reason = False, f"reached lr_max = {float(lrs[-1]):g}"

    def before_batch(self, model: nn.Module, step: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.lrs[step])

    def _add(self, loss: float) -> float:
        self.losses.append(loss)
        self.avg, smoothed = ema_update(self.avg, loss if math.isfinite(loss) else math.inf, self.beta,
                                        len(self.losses))
        self.smoothed.append(smoothed)
        return smoothed

    def after_loss(self, model: nn.Module, step: int, loss: float) -> None:
        s = self._add(loss)
        if step >= self.burn_in:
            self.best = min(self.best, s)
            if should_stop(s, self.best, self.stop_factor):
                self.stopped = True
                self.reason = (f"smoothed loss {s:.3g} > {self.stop_factor:g} x best {self.best:.3g} "
                               f"at lr = {self.lrs[step]:.3g}")
                raise StopTraining(self.reason)

    def after_step(self, model: nn.Module, step: int, record: dict) -> None:
        if step + 1 >= len(self.lrs):
            raise StopTraining(self.reason)

    def record_divergence(self, trace: Trace) -> None:
        """Add the NaN/inf loss at which fit stopped (if it did) to the curve."""
        if trace.diverged and trace.diverged_at is not None:
            at = trace.diverged_at
            self._add(float(at["loss"]))
            self.stopped, self.reason = True, f"the loss became {at['loss']} at lr = {at['lr']:.3g}"


def lr_range_test(
    model: nn.Module,
    train_loader: Any,
    optimizer: torch.optim.Optimizer,
    *,
    lr_min: float = 1e-5,
    lr_max: float = 10.0,
    num_steps: int = 300,
    mode: str = "exp",
    beta: float = 0.9,
    stop_factor: float = 4.0,
    burn_in: int = 10,
    rule: str = "descent",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    restore: bool = True,
) -> RangeTestResult:
    """Run the LR range test on ``model`` with ``optimizer`` and return the curve and a suggestion.

    Step ``i`` trains one mini-batch from ``train_loader`` (cycled as needed) at LR ``lrs[i]`` from
    :func:`lr_sweep`, set on every parameter group. The test stops early when :func:`should_stop`
    says so (after ``burn_in`` steps) or on a NaN/inf loss. With ``restore=True`` (the default) the
    model, its gradients, train/eval mode, the optimizer state and the global torch RNG are put back
    exactly as they were. ``train_loader`` may also be a task with a ``.train`` loader.
    Batches are moved to the device of the model's parameters. ``loss_fn`` defaults to
    :func:`lrlab.training.classification_loss` (binary cross-entropy, or cross-entropy for class scores).

    It runs on :func:`lrlab.training.fit` with a :class:`RangeTestCallback` (so a NaN/inf loss is
    handled by fit's one divergence rule), for as many epochs as ``num_steps`` batches need.
    """
    lrs = lr_sweep(lr_min, lr_max, num_steps, mode)
    _check_beta(beta)
    should_stop(1.0, 1.0, stop_factor)  # validates stop_factor
    check_choice(rule, "rule", RULES)
    burn_in = check_int(burn_in, "burn_in", low=0, high=num_steps - 3, hint="steps to skip, at most num_steps - 3")
    check_instance(model, "model", nn.Module, "a torch.nn.Module")
    check_instance(optimizer, "optimizer", torch.optim.Optimizer, "a torch.optim.Optimizer")
    loader = getattr(train_loader, "train", train_loader)
    if not hasattr(loader, "__iter__"):
        raise ValueError(
            f"train_loader must be an iterable of (x, y) batches or have a .train loader, "
            f"got {type(train_loader).__name__}"
        )
    if next(iter(model.parameters()), None) is None:
        raise ValueError("the model has no parameters to train")
    batch_loss = None
    if loss_fn is not None:
        def batch_loss(model: nn.Module, batch: Any) -> torch.Tensor:
            x, y = batch
            return loss_fn(model(x), y)

    try:
        per_epoch = len(loader)
    except TypeError:
        per_epoch = 0
    epochs = math.ceil(num_steps / per_epoch) if per_epoch else num_steps
    test = RangeTestCallback(optimizer, lrs, beta, stop_factor, burn_in)
    snap = _snapshot(model, optimizer) if restore else None
    try:
        trace = fit(model, (loader, None), optimizer, epochs, batch_loss=batch_loss, device=None,
                    callbacks=[test], progress=False)
    finally:
        if snap is not None:
            _restore(model, optimizer, snap)
    test.record_divergence(trace)
    n = len(test.losses)
    if n - burn_in < 3:
        raise ValueError(
            f"the range test stopped after {n} steps, too few to read past a burn-in of {burn_in}: "
            f"lower lr_min (now {lr_min:g}) or burn_in"
        )
    return RangeTestResult(
        lrs=lrs[:n].copy(),
        losses=np.array(test.losses),
        smoothed=np.array(test.smoothed),
        burn_in=burn_in,
        stopped_early=test.stopped,
        stop_reason=test.reason,
        rule=rule,
        settings={
            "lr_min": lr_min,
            "lr_max": lr_max,
            "num_steps": num_steps,
            "mode": mode,
            "beta": beta,
            "stop_factor": stop_factor,
        },
    )
