"""Training, evaluation and the :class:`Trace` of a run (the tutorial's epoch-by-epoch table).

One optimizer step, in the order that matters::

    optimizer.zero_grad()            # 1. forget the previous batch's gradients (they accumulate otherwise)
    logits = model(xb)               # 2. forward: logits, shape [N]
    loss = loss_fn(logits, yb)       # 3. BCEWithLogitsLoss applies the sigmoid itself
    loss.backward()                  # 4. gradients into p.grad
    optimizer.step()                 # 5. update the weights with the current learning rate
    scheduler.step()                 # 6. THEN move the learning rate on (PyTorch warns if 6 comes before 5)

:func:`train_one_epoch` runs that over a loader, :func:`evaluate` measures loss and accuracy without
changing anything, and :func:`fit` alternates the two for some epochs and records everything in a
:class:`Trace`: per epoch train loss, test loss, test accuracy, the learning rate, samples seen and time;
per optimizer step the loss and the learning rate. A trace prints as the tutorial's table with an
observation per epoch (:func:`observe` states the rules) and plots its loss and accuracy curves.

If the loss becomes NaN or infinite (the classic sign of a learning rate that is far too high),
training stops at once, ``trace.diverged`` is True and ``trace.message`` says where it happened.
That rule (:func:`is_divergent`) is the library's only one: the LR range test, the Matryoshka runs
and the sweep follow it too. A :class:`Callback` can end a run early by raising :class:`StopTraining`
(``trace.stopped``); the LR range test and the Matryoshka stages are such runs of :func:`fit`.
:data:`OPTIMIZERS` / :func:`make_optimizer` and :func:`progress_enabled` are the optimizer table and
the progress switch that the sweep and the Matryoshka runs share with :func:`fit`.

:func:`default_recipe` is the course's standard setting for the tutorial task, and :func:`run_recipe`
runs it end to end from a seed.

imports: args, tables, device, data, models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from html import escape
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lrlab.args import check_choice, check_instance, check_int, check_real
from lrlab.data import load_task
from lrlab.device import pick_device
from lrlab.models import MLP
from lrlab.tables import format_table

__all__ = [
    "HOOKS",
    "OPTIMIZERS",
    "PROGRESS_AUTO_STEPS",
    "Callback",
    "Recipe",
    "StopTraining",
    "Trace",
    "ClassificationLoss",
    "accuracy_from_logits",
    "classification_loss",
    "default_recipe",
    "evaluate",
    "fit",
    "is_divergent",
    "make_optimizer",
    "observe",
    "progress_bar",
    "progress_enabled",
    "run_recipe",
    "train_one_epoch",
]

# progress="auto" shows a progress bar when a run has more optimizer steps than this.
PROGRESS_AUTO_STEPS = 300

# Thresholds of observe(), on the relative change of the training loss from one epoch to the next.
START_LOSS = 0.6  # first-epoch loss at or above this counts as "high" (ln 2 = 0.693 is a coin flip)
START_ACC = 0.75  # first-epoch accuracy below this counts as "low"
FAST_DROP = 0.10  # loss falls by more than 10 %: clear progress
SLOW_DROP = 0.02  # loss falls by 2-10 %: converging; within +-2 %: plateau
RISE = 0.02  # loss rises by more than 2 %: bouncing
OVERFIT_RISE = 0.05  # test loss rises by more than 5 % while the train loss falls: overfitting
HUGE_LOSS = 10.0  # a BCE loss above this means confidently wrong predictions: the run exploded


# --------------------------------------------------------------------------------------------- callbacks
class StopTraining(Exception):  # noqa: N818 (a request, not an error)
    """Raise it from a :class:`Callback` hook to end :func:`fit` early and cleanly.

    ``raise StopTraining("reason")`` is a request, not an error: :func:`fit` catches it, finishes the
    run normally (``on_train_end`` is still called) and records it: ``trace.stopped`` is True,
    ``trace.stopped_at`` holds ``{"epoch", "step", "samples", "hook", "reason"}`` and ``trace.message``
    says who stopped and why. Where it is raised decides what the last step was:

    * ``on_train_begin``: no step is taken;
    * ``before_batch``, ``after_loss`` or ``after_backward``: the current batch is NOT applied (no
      ``optimizer.step()``, its loss is not counted); training ends after the previous step;
    * ``after_step``: training ends right after that step;
    * ``on_epoch_end``: training ends after that epoch.

    An epoch cut short with at least one step gets a record (evaluated as usual) marked
    ``"stopped": True``; one with no step gets none. ``trace.stopped_at["step"]`` is the number of
    steps taken. Any other exception raised by a callback propagates unchanged.
    """

    def __init__(self, reason: str = "a callback asked to stop") -> None:
        super().__init__(reason)
        self.reason = str(reason)


class Callback:
    """Hooks into :func:`fit`. Subclass and override what you need; every method is a no-op here.

    In the order they run:

    * ``on_train_begin(model, trace)``: once, before the first step.
    * ``before_batch(model, step)``: a batch has been drawn, before the forward pass (e.g. set the
      learning rate of this step); ``step`` is the 0-based global step index.
    * ``after_loss(model, step, loss)``: after the forward pass, before ``loss.backward()``; ``loss`` is the
      batch's loss as a float, always finite (a NaN/inf loss ends the run first, see :func:`fit`).
    * ``after_backward(model, step)``: after ``loss.backward()`` and BEFORE ``optimizer.step()``, so the
      gradients of this batch are in ``p.grad``.
    * ``after_step(model, step, record)``: after ``optimizer.step()`` (and a per-step scheduler);
      ``record`` is the step's dict ``{"step", "samples", "loss", "lr"}``.
    * ``on_epoch_end(epoch, record, trace)``: after the epoch's evaluation (``epoch`` is 1-based);
      ``record`` is the epoch's dict, already in ``trace.epochs``: add keys to it to store your own numbers.
    * ``on_train_end(model, trace)``: once, at the end (also after a divergence or a stop).

    Any hook but ``on_train_end`` may ``raise StopTraining(reason)`` to end training early.
    """

    def on_train_begin(self, model: nn.Module, trace: Trace) -> None:
        pass

    def before_batch(self, model: nn.Module, step: int) -> None:
        pass

    def after_loss(self, model: nn.Module, step: int, loss: float) -> None:
        pass

    def after_backward(self, model: nn.Module, step: int) -> None:
        pass

    def after_step(self, model: nn.Module, step: int, record: dict) -> None:
        pass

    def on_epoch_end(self, epoch: int, record: dict, trace: Trace) -> None:
        pass

    def on_train_end(self, model: nn.Module, trace: Trace) -> None:
        pass


HOOKS = (
    "on_train_begin",
    "before_batch",
    "after_loss",
    "after_backward",
    "after_step",
    "on_epoch_end",
    "on_train_end",
)
"""The callback hooks of :func:`fit`, in the order they run."""


def _check_callbacks(callbacks: Any) -> tuple:
    if callbacks is None:
        return ()
    if isinstance(callbacks, Callback):
        return (callbacks,)
    try:
        callbacks = tuple(callbacks)
    except TypeError:
        raise ValueError(
            f"callbacks must be a sequence of Callback objects, got {type(callbacks).__name__}"
        ) from None
    for cb in callbacks:
        if not any(callable(getattr(cb, h, None)) for h in HOOKS):
            raise ValueError(
                f"callback {cb!r} has none of the methods {', '.join(HOOKS)}; "
                "subclass lrlab.training.Callback"
            )
    return callbacks


def _call(callbacks: Sequence, hook: str, *args: Any) -> None:
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(*args)


# --------------------------------------------------------------------------------------------- divergence
def is_divergent(loss: float) -> bool:
    """The course's one rule for a diverging loss: it is NaN or infinite.

    :func:`fit` applies it to every batch's loss before ``loss.backward()``: on a divergent loss the
    weights are left untouched, the run stops, ``trace.diverged`` is set and ``trace.message`` says
    where (:meth:`Trace.mark_diverged`). Nothing is raised. The LR range test, the Matryoshka runs and
    the vectorized sweep follow the same rule.
    """
    return not math.isfinite(float(loss))


# --------------------------------------------------------------------------------------------- optimizers
OPTIMIZERS = ("sgd", "adam", "adamw")
"""The optimizers the library builds by name (:func:`make_optimizer`; the sweep runs the same three batched)."""


def make_optimizer(
    name: str,
    params: Iterable[torch.Tensor],
    lr: float,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """The ``torch.optim`` optimizer called ``name`` (one of :data:`OPTIMIZERS`) over ``params``.

    ``"sgd"`` takes ``momentum``, ``nesterov`` and ``weight_decay``; ``"adam"`` and ``"adamw"`` take
    ``betas``, ``eps`` and ``weight_decay`` (decoupled for AdamW).
    """
    check_choice(name, "optimizer", OPTIMIZERS)
    lr = check_real(lr, "lr", low=0, low_open=True)
    params = list(params)
    if not params:
        raise ValueError("the optimizer needs at least one parameter to train")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if momentum or nesterov:
        raise ValueError(f"momentum and nesterov apply to 'sgd' only; {name} uses betas={betas}")
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# --------------------------------------------------------------------------------------------- observations
def observe(record: dict, previous: dict | None = None) -> str:
    """A short observation about one epoch of a trace, derived from its numbers by fixed rules.

    Rules, first match wins (``loss`` is the epoch's training loss; changes are relative to the
    previous epoch):

    1. the loss is NaN or infinite: "diverged: the loss became NaN/inf"; above 10 (a coin flip costs
       ln 2 = 0.69, so 10 means confidently wrong answers): "exploded: huge loss, ..."
    2. first epoch: loss >= 0.6 and accuracy < 0.75: "high loss and low accuracy at the start"; only one
       of the two: "high loss at the start ..." or "low accuracy at the start"; neither: "fast start: ..."
    3. loss up by more than 2 %: "loss went up: bouncing (LR too high?)"
    4. test loss up by more than 5 % while the loss falls by more than 2 %:
       "test loss rises while the loss falls: noisy steps or overfitting"
    5. loss down by more than 10 %: "loss decreases, accuracy improves" (accuracy up by at least 0.01),
       "loss decreases, accuracy dips" (down by more than 0.01) or "loss decreases, accuracy flat"
    6. loss down by 2-10 %: "converging: smaller improvements"
    7. otherwise (within 2 %): "plateau: the loss barely changes"
    """
    loss = float(record.get("train_loss", math.nan))
    split = "val" if "val_acc" in record and "test_acc" not in record else "test"  # what the run evaluated on
    acc = float(record.get(f"{split}_acc", math.nan))
    if not math.isfinite(loss) or record.get("diverged"):
        return "diverged: the loss became NaN/inf"
    if loss > HUGE_LOSS:
        return "exploded: huge loss, confidently wrong (LR far too high)"
    if previous is None:
        high, low = loss >= START_LOSS, math.isfinite(acc) and acc < START_ACC
        if high and low:
            return "high loss and low accuracy at the start"
        if high:
            return "high loss at the start (a coin flip costs 0.69)"
        if low:
            return "low accuracy at the start"
        return "fast start: much is learned in the first epoch"
    prev_loss = float(previous.get("train_loss", math.nan))
    if not math.isfinite(prev_loss) or prev_loss <= 0:
        return "loss is finite again"
    drop = (prev_loss - loss) / prev_loss
    if drop < -RISE:
        return "loss went up: bouncing (LR too high?)"
    test_loss, prev_test = (
        float(record.get(f"{split}_loss", math.nan)),
        float(previous.get(f"{split}_loss", math.nan)),
    )
    if (
        drop > SLOW_DROP
        and math.isfinite(test_loss)
        and math.isfinite(prev_test)
        and prev_test > 0
        and (test_loss - prev_test) / prev_test > OVERFIT_RISE
    ):
        return "test loss rises while the loss falls: noisy steps or overfitting"
    if drop > FAST_DROP:
        d_acc = acc - float(previous.get(f"{split}_acc", math.nan))
        if not math.isfinite(d_acc) or d_acc >= 0.01:
            return "loss decreases, accuracy improves"
        return "loss decreases, accuracy dips" if d_acc < -0.01 else "loss decreases, accuracy flat"
    if drop > SLOW_DROP:
        return "converging: smaller improvements"
    return "plateau: the loss barely changes"


# --------------------------------------------------------------------------------------------- trace
def _num(value: float) -> str:
    """3 decimals for ordinary numbers, 3 significant digits for exploded ones (1.23e+08)."""
    value = float(value)
    return f"{value:.3f}" if not math.isfinite(value) or abs(value) < 1000 else f"{value:.3g}"


@dataclass
class Trace:
    """Everything :func:`fit` measured during a run.

    Attributes:
        epochs: one dict per epoch with ``epoch`` (1-based), ``train_loss`` (mean loss over the epoch's
            batches, weighted by batch size, measured while the weights were still changing),
            ``test_loss`` and ``test_acc`` (after the epoch, by :func:`evaluate`), ``lr`` (the learning
            rate of the epoch's last step), ``samples`` (training samples seen so far), ``steps``
            (optimizer steps so far) and ``seconds`` (wall time since the run started).
            Callbacks may add keys.
        steps: one dict per optimizer step with ``step`` (0-based), ``samples`` (seen after it), ``loss``
            (of that batch) and ``lr`` (used for that step; the first parameter group's).
        diverged: True when the loss became NaN/inf and the run stopped early (:func:`is_divergent`).
        diverged_at: ``{"epoch", "step", "samples", "lr", "loss"}`` of the step that diverged, else None.
        stopped: True when a callback ended the run early (:class:`StopTraining`).
        stopped_at: ``{"epoch", "step", "samples", "hook", "reason"}`` of that stop, else None
            (``step``: the number of steps taken).
        message: one line saying how the run ended.
        config: what the run was (optimizer, batch size, ... filled in by :func:`fit`).
    """

    epochs: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    diverged: bool = False
    diverged_at: dict | None = None
    stopped: bool = False
    stopped_at: dict | None = None
    message: str = ""
    config: dict = field(default_factory=dict)

    @property
    def eval_split(self) -> str:
        """The split the epoch records were evaluated on: ``"test"`` (keys ``test_loss``/``test_acc``), or
        ``"val"`` (``val_loss``/``val_acc``) for a sweep run with ``evaluate_on="val"``."""
        return str(self.config.get("eval_split", "test"))

    # ----------------------------------------------------------------------------------------- ending
    def mark_diverged(self, at: dict) -> None:
        """Record the divergence policy's verdict: the loss of step ``at`` was NaN/inf, training stopped."""
        self.diverged, self.diverged_at = True, dict(at)
        self.message = (
            f"Diverged: the loss became {at['loss']} at epoch {at['epoch']}, step {at['step']} "
            f"(lr {at['lr']:.3g}, after {at['samples']} samples); training stopped. "
            "The learning rate is probably too high: try a smaller one (e.g. 10x smaller)."
        )

    def mark_stopped(self, at: dict) -> None:
        """Record that a callback ended the run (:class:`StopTraining`)."""
        self.stopped, self.stopped_at = True, dict(at)
        self.message = (
            f"Stopped by a callback in {at['hook']} at epoch {at['epoch']} after {at['step']} steps "
            f"({at['samples']} samples): {at['reason']}"
        )
        if self.epochs:
            self.message += "; " + self._final_numbers()

    def mark_finished(self) -> None:
        """The message of a run that went through all its epochs."""
        self.message = f"Finished {len(self.epochs)} epochs: " + self._final_numbers()

    def _final_numbers(self) -> str:
        f = self.final
        text = f"loss {f['train_loss']:.4f}"
        acc = float(f.get(f"{self.eval_split}_acc", math.nan))
        if math.isfinite(acc):
            text += f", {self.eval_split} accuracy {acc:.3f}"
        return text + f" ({f['seconds']:.1f} s)."

    # ----------------------------------------------------------------------------------------- access
    @property
    def final(self) -> dict:
        """The last epoch's record."""
        if not self.epochs:
            raise ValueError("this trace has no epochs yet: run fit(...) first")
        return self.epochs[-1]

    @property
    def best(self) -> dict:
        """The epoch record with the highest test (or validation) accuracy (the earliest one on ties)."""
        key = f"{self.eval_split}_acc"
        finite = [r for r in self.epochs if math.isfinite(float(r.get(key, math.nan)))]
        if not finite:
            raise ValueError(f"this trace has no epoch with a finite {self.eval_split} accuracy")
        return max(finite, key=lambda r: (r[key], -r["epoch"]))

    @property
    def samples(self) -> int:
        """Training samples seen so far."""
        return int(self.steps[-1]["samples"]) if self.steps else 0

    def column(self, key: str) -> np.ndarray:
        """One per-epoch quantity as a float array (NaN where an epoch lacks it)."""
        return np.array([float(r.get(key, math.nan)) for r in self.epochs], dtype=float)

    def as_arrays(self) -> dict[str, np.ndarray]:
        """Per-epoch columns (``epoch``, ``train_loss``, ``test_loss``, ``test_acc``, ``lr``, ``samples``,
        ``seconds``; ``val_loss``/``val_acc`` instead when the run was evaluated on validation) and per-step
        columns (``step_step``, ``step_samples``, ``step_loss``, ``step_lr``)."""
        ev = self.eval_split
        out = {
            k: self.column(k)
            for k in ("epoch", "train_loss", f"{ev}_loss", f"{ev}_acc", "lr", "samples", "seconds")
        }
        for k in ("step", "samples", "loss", "lr"):
            out[f"step_{k}"] = np.array([float(s[k]) for s in self.steps], dtype=float)
        return out

    def observations(self) -> list[str]:
        """:func:`observe` for every epoch."""
        return [observe(r, self.epochs[i - 1] if i else None) for i, r in enumerate(self.epochs)]

    # ----------------------------------------------------------------------------------------- render
    def _rows(self) -> tuple[list[str], list[list[str]]]:
        lrs = self.column("lr")
        lrs = lrs[np.isfinite(lrs)]
        show_lr = len(lrs) > 1 and lrs.max() != lrs.min()
        ev = self.eval_split
        held_out = "Test loss" if ev == "test" else "Val loss"
        head = ["Epoch", "Loss ↓", held_out, "Accuracy ↑"] + (["LR"] if show_lr else []) + ["Observation"]
        rows = []
        for r, obs in zip(self.epochs, self.observations(), strict=True):
            row = [str(r["epoch"]), _num(r["train_loss"]), _num(r[f"{ev}_loss"]), _num(r[f"{ev}_acc"])]
            if show_lr:
                row.append(f"{r['lr']:.3g}")
            rows.append(row + [obs])
        return head, rows

    def table(self) -> str:
        """The tutorial's epoch-by-epoch table: loss, test loss, accuracy, (LR if it changes), observation."""
        if not self.epochs:
            return "(empty trace)" + (f"\n{self.message}" if self.message else "")
        head, rows = self._rows()
        lines = format_table(head, rows, align="r" * (len(head) - 1) + "l").splitlines()
        if self.message:
            lines.append(self.message)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        if not self.epochs:
            return "Trace(empty)"
        f = self.final
        state = "diverged" if self.diverged else "ok"
        return (
            f"Trace({len(self.epochs)} epochs, {len(self.steps)} steps, final loss {f['train_loss']:.4g}, "
            f"{self.eval_split} accuracy {f[f'{self.eval_split}_acc']:.3f}, {state})"
        )

    def _repr_html_(self) -> str:
        if not self.epochs:
            return f"<p>empty trace. {escape(self.message)}</p>"
        head, rows = self._rows()
        th = "".join(f"<th>{escape(h)}</th>" for h in head)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td style='text-align:{'left' if i == len(r) - 1 else 'right'}'>{escape(c)}</td>"
                for i, c in enumerate(r)
            )
            + "</tr>"
            for r in rows
        )
        msg = f"<p>{escape(self.message)}</p>" if self.message else ""
        return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>{msg}"

    def plot(
        self,
        axes: Any = None,
        *,
        steps: bool = True,
        ceiling: float | None = None,
        loss_floor: float | None = None,
        label: str | None = None,
    ) -> Any:
        """Loss curves (left: train and test, plus the per-step loss faintly) and test accuracy (right).

        ``axes``: two matplotlib axes to draw into (a new 1x2 figure when None), so several traces can
        share a figure. ``ceiling``: draw the best achievable accuracy as a dotted line, ``loss_floor``
        the lowest achievable loss (``lrlab.data.bayes_accuracy()`` / ``bayes_loss()``). ``label``
        prefixes the legend entries. Returns the two axes (end the line with ``;`` in a notebook).
        """
        import matplotlib.pyplot as plt

        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
        if len(axes) != 2:
            raise ValueError(f"axes must be two matplotlib axes (loss, accuracy), got {len(axes)}")
        ax_loss, ax_acc = axes
        a = self.as_arrays()
        ev = self.eval_split
        pre = f"{label}: " if label else ""
        line = ax_loss.plot(a["epoch"], a["train_loss"], "o-", label=f"{pre}train loss (epoch mean)")[0]
        color = line.get_color()
        ax_loss.plot(a["epoch"], a[f"{ev}_loss"], "s--", color=color, alpha=0.8, label=f"{pre}{ev} loss")
        per_epoch = self.config.get("samples_per_epoch") or (a["samples"][0] if len(a["samples"]) else 0)
        if steps and len(a["step_samples"]) and per_epoch:
            ax_loss.plot(
                a["step_samples"] / per_epoch,
                a["step_loss"],
                lw=0.6,
                alpha=0.3,
                color=color,
                label=f"{pre}batch loss",
            )
        finite = np.concatenate([a["train_loss"], a[f"{ev}_loss"], a["step_loss"] if steps else []])
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if len(finite) and finite.max() / finite.min() > 100:
            ax_loss.set_yscale("log")  # a loss that explodes would flatten everything else
        ax_acc.plot(a["epoch"], a[f"{ev}_acc"], "o-", color=color, label=f"{pre}{ev} accuracy")
        if loss_floor is not None:
            floor = float(loss_floor)
            ax_loss.axhline(floor, ls=":", color="gray", label=f"lowest achievable ({floor:.3f})")
        if ceiling is not None:
            ax_acc.axhline(
                float(ceiling), ls=":", color="gray", label=f"best achievable ({float(ceiling):.3f})"
            )
        if self.diverged and self.diverged_at:
            at = self.diverged_at
            x = at["samples"] / per_epoch if per_epoch else at["epoch"]
            for ax in axes:
                ax.axvline(x, color="red", ls="--", lw=1)
                ax.text(x, 0.5, " diverged", color="red", transform=ax.get_xaxis_transform())
        ax_loss.set(xlabel="epoch", ylabel="loss (BCE)", title="Loss ↓")
        ax_acc.set(xlabel="epoch", ylabel="accuracy", title=f"{'Test' if ev == 'test' else 'Validation'} accuracy ↑")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        return axes


# --------------------------------------------------------------------------------------------- evaluate
def _is_multiclass(logits: torch.Tensor, y: torch.Tensor) -> bool:
    """Class scores ``[N, C]`` against integer class indices ``[N]`` (the digits and Fashion-MNIST tasks)."""
    return (logits.ndim == y.ndim + 1 and logits.shape[:-1] == y.shape and logits.shape[-1] > 1
            and not torch.is_floating_point(y))


def classification_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The course's default loss, mean over the rows: binary cross-entropy on logits when there is one logit
    per 0/1 label (``[N]`` or ``[N, 1]``; ``nn.BCEWithLogitsLoss``), cross-entropy (softmax inside,
    ``nn.CrossEntropyLoss``) when ``logits`` is ``[N, C]`` and ``y`` holds integer class indices ``[N]``."""
    if _is_multiclass(logits, y):
        return F.cross_entropy(logits, y)
    if logits.numel() == y.numel():   # one logit per row, as [N] or [N, 1]
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), y.reshape(-1).to(logits.dtype))
    return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))   # raises, naming both shapes


class ClassificationLoss(nn.Module):
    """:func:`classification_loss` as a module: the default ``loss_fn`` of :func:`fit` and :func:`evaluate`."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return classification_loss(logits, y)


def _correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per row, whether the prediction is right: the arg-max class, or ``logit > 0`` as class 1."""
    if _is_multiclass(logits, y):
        return logits.argmax(dim=-1) == y
    return (logits > 0) == (y > 0.5)


def accuracy_from_logits(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows predicted right: ``logit > 0`` (probability > 0.5) against 0/1 labels of the same
    shape, or the arg-max of class scores ``[N, C]`` against integer class indices ``[N]``."""
    if logits.shape != y.shape and not _is_multiclass(logits, y):
        raise ValueError(
            f"logits and labels must have the same shape (binary), or logits [N, C] with integer class "
            f"indices [N]; got {tuple(logits.shape)} and {tuple(y.shape)} ({y.dtype})"
        )
    if logits.numel() == 0:
        raise ValueError("cannot compute an accuracy on zero rows")
    return float(_correct(logits, y).float().mean())


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _resolve_device(model: nn.Module, device: Any) -> torch.device:
    return _model_device(model) if device is None else pick_device(device)


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_loader(loader: Any, name: str) -> None:
    if not isinstance(loader, Iterable):
        raise ValueError(
            f"{name} must be a DataLoader (or an iterable of (x, y) batches), got {type(loader).__name__}"
        )


def _check_logits(logits: torch.Tensor, yb: torch.Tensor) -> None:
    if logits.shape == yb.shape or _is_multiclass(logits, yb):
        return
    if logits.ndim == yb.ndim + 1 and logits.shape[:-1] == yb.shape and logits.shape[-1] > 1:
        raise ValueError(
            f"the model returns {logits.shape[-1]} class scores per row, so the labels must be integer class "
            f"indices (torch.long), got dtype {yb.dtype}"
        )
    hint = " (squeeze the last dimension: logits.squeeze(-1))" if logits.shape[:-1] == yb.shape else ""
    raise ValueError(
        f"the model's output has shape {tuple(logits.shape)} "
        f"but the labels have shape {tuple(yb.shape)}; "
        f"a binary classifier must return one logit per row{hint}, a classifier of C classes "
        "C scores per row [N, C]"
    )


def evaluate(
    model: nn.Module, loader: Iterable, *, loss_fn: nn.Module | None = None, device: Any = None
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``loader``, changing nothing.

    Runs under ``torch.no_grad()`` (no graph, no gradients) with ``model.eval()`` (dropout off,
    batch-norm frozen) and puts the model back into the mode it was in. The loss is averaged over rows
    (batches weighted by their size); the accuracy counts ``logit > 0`` as class 1, or the arg-max class
    when the model returns class scores ``[N, C]`` (the default loss is :func:`classification_loss`).
    ``device=None`` uses the model's device. A model with NaN weights gives a NaN loss, not an error.
    """
    _check_model(model)
    _check_loader(loader, "loader")
    loss_fn = ClassificationLoss() if loss_fn is None else loss_fn
    dev = _resolve_device(model, device)
    was_training = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0.0, 0
    try:
        with torch.no_grad():
            for xb, yb in loader:
                xb, yb = xb.to(dev), yb.to(dev)
                logits = model(xb)
                _check_logits(logits, yb)
                total_loss += float(loss_fn(logits, yb)) * len(yb)
                correct += float(_correct(logits, yb).sum())
                n += len(yb)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the loader yielded no rows to evaluate")
    return total_loss / n, correct / n


# --------------------------------------------------------------------------------------------- train
SCHEDULER_INTERVALS = ("step", "epoch")


def _check_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer, interval: str) -> str | None:
    """'advance', 'plateau', 'step' or None (no scheduler); ValueError for what cannot work."""
    if interval not in SCHEDULER_INTERVALS:
        raise ValueError(f"scheduler_interval must be one of {SCHEDULER_INTERVALS}, got {interval!r}")
    if scheduler is None:
        return None
    owner = getattr(scheduler, "optimizer", None)
    if owner is not None and owner is not optimizer:
        raise ValueError(
            "the scheduler was created for a different optimizer than the one passed to training"
        )
    if callable(getattr(scheduler, "advance", None)):
        if interval != "step":
            raise ValueError(
                "a sample-driven scheduler (with .advance(n)) moves on after every batch: "
                "use scheduler_interval='step'"
            )
        return "advance"
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        if interval != "epoch":
            raise ValueError(
                "ReduceLROnPlateau watches the test loss once per epoch: use scheduler_interval='epoch'"
            )
        return "plateau"
    if callable(getattr(scheduler, "step", None)):
        return "step"
    raise ValueError(
        "scheduler must be a torch LR scheduler (with .step()) or have .advance(n_samples); "
        f"got {type(scheduler).__name__}"
    )


def _to_device(batch: Any, dev: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(dev)
    if isinstance(batch, tuple | list):
        return tuple(_to_device(b, dev) for b in batch)
    return batch


def _batch_size(batch: Any) -> int:
    first = batch[0] if isinstance(batch, tuple | list) else batch
    return len(first)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    loss_fn: nn.Module | None = None,
    batch_loss: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    device: Any = None,
    scheduler: Any = None,
    scheduler_interval: str = "step",
    callbacks: Sequence[Callback] = (),
    trace: Trace | None = None,
    epoch: int = 1,
    progress_bar: Any = None,
) -> dict:
    """One pass over ``loader``: zero_grad, forward, loss, backward, (callbacks), step, (scheduler).

    With ``scheduler_interval="step"`` a torch scheduler's ``.step()`` runs after every
    ``optimizer.step()``; a scheduler with ``.advance(n)`` is told the size of each batch instead
    (sample-indexed schedules). Per-epoch schedulers are left to the caller (:func:`fit` does it).
    ``batch_loss(model, batch)``, if given, replaces forward + ``loss_fn`` (see :func:`fit`).

    When ``trace`` is given, every step is appended to ``trace.steps`` (global step numbers and sample
    counts continue from what the trace already holds). Returns ``{"train_loss", "samples", "steps",
    "lr", "diverged", "diverged_at", "stopped"}`` for this epoch; on a NaN/inf loss
    (:func:`is_divergent`) the epoch stops before the weights are touched, with ``diverged`` True;
    when a callback raises :class:`StopTraining` the epoch ends there and ``stopped`` holds
    ``{"epoch", "step", "samples", "hook", "reason"}`` (else None).
    """
    _check_model(model)
    _check_loader(loader, "loader")
    check_instance(optimizer, "optimizer", torch.optim.Optimizer, "a torch.optim.Optimizer")
    kind = _check_scheduler(scheduler, optimizer, scheduler_interval)
    callbacks = _check_callbacks(callbacks)
    if batch_loss is not None and not callable(batch_loss):
        raise ValueError(f"batch_loss must be a function (model, batch) -> loss tensor, got {batch_loss!r}")
    loss_fn = ClassificationLoss() if loss_fn is None else loss_fn
    dev = _resolve_device(model, device)
    step = len(trace.steps) if trace is not None else 0
    seen = trace.samples if trace is not None else 0
    model.train()
    total, n, n_steps, lr = 0.0, 0, 0, float(optimizer.param_groups[0]["lr"])
    diverged_at = stopped = None
    hook = ""
    for batch in loader:
        try:
            hook = "before_batch"
            _call(callbacks, hook, model, step)
            lr = float(optimizer.param_groups[0]["lr"])
            batch = _to_device(batch, dev)
            optimizer.zero_grad(set_to_none=True)
            if batch_loss is None:
                xb, yb = batch
                logits = model(xb)
                _check_logits(logits, yb)
                loss = loss_fn(logits, yb)
            else:
                loss = batch_loss(model, batch)
            value = float(loss.detach())
            size = _batch_size(batch)
            if is_divergent(value):  # the one divergence policy: stop before the weights are touched
                diverged_at = {"epoch": epoch, "step": step, "samples": seen, "lr": lr, "loss": value}
                if trace is not None:
                    trace.steps.append({"step": step, "samples": seen, "loss": value, "lr": lr})
                break
            hook = "after_loss"
            _call(callbacks, hook, model, step, value)
            loss.backward()
            hook = "after_backward"
            _call(callbacks, hook, model, step)
        except StopTraining as stop:
            stopped = {"epoch": epoch, "step": step, "samples": seen, "hook": hook, "reason": stop.reason}
            break
        optimizer.step()
        if kind == "advance":
            scheduler.advance(size)
        elif kind == "step" and scheduler_interval == "step":
            scheduler.step()
        seen += size
        record = {"step": step, "samples": seen, "loss": value, "lr": lr}
        if trace is not None:
            trace.steps.append(record)
        total += value * size
        n += size
        n_steps += 1
        step += 1
        if progress_bar is not None:
            progress_bar.update(1)
            if n_steps % 10 == 1 and callable(getattr(progress_bar, "set_postfix", None)):
                progress_bar.set_postfix(epoch=epoch, loss=f"{value:.4f}", lr=f"{lr:.3g}", refresh=False)
        try:
            _call(callbacks, "after_step", model, step - 1, record)
        except StopTraining as stop:
            stopped = {"epoch": epoch, "step": step, "samples": seen, "hook": "after_step", "reason": stop.reason}
            break
    if n == 0 and diverged_at is None and stopped is None:
        raise ValueError("the training loader yielded no batches")
    return {
        "train_loss": total / n if diverged_at is None and n else math.nan,
        "samples": n,
        "steps": n_steps,
        "lr": lr,
        "diverged": diverged_at is not None,
        "diverged_at": diverged_at,
        "stopped": stopped,
    }


def _split_loaders(loaders: Any) -> tuple[Iterable, Iterable | None]:
    if hasattr(loaders, "train") and hasattr(loaders, "test"):
        train, test = loaders.train, loaders.test
    elif isinstance(loaders, tuple | list) and len(loaders) == 2:
        train, test = loaders
    else:
        raise ValueError(
            "loaders must be a (train_loader, test_loader) pair or an object with .train and .test "
            f"(such as lrlab.data.load_task()), got {type(loaders).__name__}"
        )
    _check_loader(train, "the training loader")
    if test is not None:
        _check_loader(test, "the test loader")
    return train, test


def _samples_per_epoch(loader: Any) -> int | None:
    """Rows per epoch of a DataLoader (respecting drop_last), or None when it cannot be told."""
    dataset, batch_size = getattr(loader, "dataset", None), getattr(loader, "batch_size", None)
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        return None
    if getattr(loader, "drop_last", False) and batch_size:
        n = (n // batch_size) * batch_size
    return n


def progress_enabled(progress: Any, total_steps: int | None) -> bool:
    """The library's one progress switch: True, False, or ``"auto"`` (on for runs of more than
    :data:`PROGRESS_AUTO_STEPS` optimizer steps; off when the number of steps is unknown)."""
    if isinstance(progress, bool):
        return progress
    if progress == "auto":
        return total_steps is not None and total_steps > PROGRESS_AUTO_STEPS
    raise ValueError(f"progress must be True, False or 'auto', got {progress!r}")


def progress_bar(progress: Any, total_steps: int | None, desc: str = "training") -> Any:
    """A ``tqdm.auto`` bar of ``total_steps`` steps when :func:`progress_enabled` says so, else None.

    ``progress`` may also be a bar already made (anything with ``update``): it is returned as it is,
    so that several runs can share one bar.
    """
    if _is_bar(progress):
        return progress
    if not progress_enabled(progress, total_steps):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_steps, desc=desc, unit="step", leave=False)


def _is_bar(progress: Any) -> bool:
    return not isinstance(progress, bool | str) and callable(getattr(progress, "update", None))


def fit(
    model: nn.Module,
    loaders: Any,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    scheduler: Any = None,
    *,
    loss_fn: nn.Module | None = None,
    batch_loss: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    device: Any = "auto",
    callbacks: Sequence[Callback] = (),
    progress: Any = "auto",
    scheduler_interval: str = "step",
    trace: Trace | None = None,
) -> Trace:
    """Train for ``epochs`` epochs, evaluating after each, and return the :class:`Trace`.

    Args:
        model: outputs one logit per row (e.g. :class:`lrlab.models.MLP`); moved to ``device``.
        loaders: ``(train_loader, test_loader)`` or an object with ``.train`` and ``.test``
            (a :class:`lrlab.data.Task`). The test loader may be None (test columns are then NaN).
        optimizer: built on ``model.parameters()``.
        epochs: number of passes over the training data (>= 1).
        scheduler: None; a torch LR scheduler, stepped after every ``optimizer.step()``
            (``scheduler_interval="step"``) or once per epoch (``"epoch"``; ``ReduceLROnPlateau`` gets
            the test loss); or any object with ``advance(n_samples)``, told each batch's size after
            every optimizer step (sample-indexed schedules).
        loss_fn: default :class:`ClassificationLoss` (binary cross-entropy, or cross-entropy for class
            scores), called as ``loss_fn(model(x), y)`` on each ``(x, y)``.
        batch_loss: instead of forward + ``loss_fn``, a function ``(model, batch) -> loss tensor`` for
            batches that are not ``(x, y)`` pairs (e.g. contrastive pairs); the batch's size is the
            length of its first tensor. Use it with a test loader of None.
        device: ``"auto"`` (GPU when there is one), ``"cpu"``, ``"cuda"``, or None (the device the
            model's parameters are on).
        callbacks: :class:`Callback` objects (see there for the hooks).
        progress: a ``tqdm.auto`` progress bar: True, False, or ``"auto"`` (only for runs of more than
            ``PROGRESS_AUTO_STEPS`` = 300 optimizer steps); or a bar already made, to share it.
        trace: continue this trace (epochs and steps keep counting) instead of starting a new one.

    Divergence: a NaN/inf loss (:func:`is_divergent`) stops the run before that batch touches the
    weights: the last record gets ``diverged: True`` and NaN losses, ``trace.diverged`` is True and
    ``trace.message`` explains. Nothing is raised.

    Stopping early: any callback hook but ``on_train_end`` may ``raise StopTraining(reason)``; the run
    then ends where the hook was called (:class:`StopTraining` says exactly where), ``trace.stopped``
    is True and ``trace.stopped_at`` tells when and why. ``on_train_end`` runs in both cases; any
    other exception propagates unchanged (the progress bar is closed first).
    """
    _check_model(model)
    train_loader, test_loader = _split_loaders(loaders)
    check_instance(optimizer, "optimizer", torch.optim.Optimizer, "a torch.optim.Optimizer")
    epochs = check_int(epochs, "epochs", low=1)
    kind = _check_scheduler(scheduler, optimizer, scheduler_interval)
    callbacks = _check_callbacks(callbacks)
    if trace is not None and not isinstance(trace, Trace):
        raise ValueError(f"trace must be a Trace to continue, or None, got {type(trace).__name__}")
    if trace is not None and trace.diverged:
        raise ValueError(
            "this trace ended in divergence; start a new run (trace=None) with a smaller learning rate"
        )
    if not _is_bar(progress):
        progress_enabled(progress, None)  # validates it before anything runs
    dev = _model_device(model) if device is None else pick_device(device)
    model.to(dev)
    loss_fn = ClassificationLoss() if loss_fn is None else loss_fn
    try:
        steps_per_epoch: int | None = len(train_loader)  # type: ignore[arg-type]
    except TypeError:
        steps_per_epoch = None
    total_steps = None if steps_per_epoch is None else steps_per_epoch * epochs

    trace = Trace() if trace is None else trace
    trace.stopped, trace.stopped_at = False, None
    trace.config.update(
        {
            "optimizer": type(optimizer).__name__,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "batch_size": getattr(train_loader, "batch_size", None),
            "scheduler": None if scheduler is None else type(scheduler).__name__,
            "scheduler_interval": scheduler_interval,
            "device": str(dev),
            "samples_per_epoch": _samples_per_epoch(train_loader),
        }
    )
    start_seconds = float(trace.epochs[-1]["seconds"]) if trace.epochs else 0.0
    t0 = time.perf_counter()
    bar = progress_bar(progress, total_steps)
    own_bar = bar is not None and bar is not progress
    stopped = None
    try:
        try:
            _call(callbacks, "on_train_begin", model, trace)
        except StopTraining as stop:
            stopped = {"epoch": len(trace.epochs), "step": len(trace.steps), "samples": trace.samples,
                       "hook": "on_train_begin", "reason": stop.reason}
        for _ in range(epochs if stopped is None else 0):
            epoch = len(trace.epochs) + 1
            stats = train_one_epoch(
                model,
                train_loader,
                optimizer,
                loss_fn=loss_fn,
                batch_loss=batch_loss,
                device=dev,
                scheduler=scheduler,
                scheduler_interval=scheduler_interval,
                callbacks=callbacks,
                trace=trace,
                epoch=epoch,
                progress_bar=bar,
            )
            stopped = stats["stopped"]
            if stopped is not None and stats["steps"] == 0:
                break  # stopped before this epoch's first step: no record for it
            if stats["diverged"] or test_loader is None:
                test_loss, test_acc = math.nan, math.nan
            else:
                test_loss, test_acc = evaluate(model, test_loader, loss_fn=loss_fn, device=dev)
            complete = not stats["diverged"] and stopped is None
            if kind == "plateau" and complete:
                scheduler.step(test_loss if math.isfinite(test_loss) else stats["train_loss"])
            elif kind == "step" and scheduler_interval == "epoch" and complete:
                scheduler.step()
            record = {
                "epoch": epoch,
                "train_loss": stats["train_loss"],
                "test_loss": test_loss,
                "test_acc": test_acc,
                "lr": stats["lr"],
                "samples": trace.samples,
                "steps": len([s for s in trace.steps if math.isfinite(s["loss"])]),
                "seconds": start_seconds + time.perf_counter() - t0,
            }
            if stats["diverged"]:
                record["diverged"] = True
            if stopped is not None:
                record["stopped"] = True
            trace.epochs.append(record)
            try:
                _call(callbacks, "on_epoch_end", epoch, record, trace)
            except StopTraining as stop:
                if stopped is None:
                    stopped = {"epoch": epoch, "step": len(trace.steps), "samples": trace.samples,
                               "hook": "on_epoch_end", "reason": stop.reason}
            if stats["diverged"]:
                trace.mark_diverged(stats["diverged_at"])
                break
            if stopped is not None:
                break
        if stopped is not None and not trace.diverged:
            trace.mark_stopped(stopped)
        elif not trace.diverged:
            trace.mark_finished()
    finally:
        if own_bar:
            bar.close()
    _call(callbacks, "on_train_end", model, trace)
    return trace


# --------------------------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class Recipe:
    """The settings of a training run on the tutorial task (see :func:`default_recipe`)."""

    optimizer: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.0
    batch_size: int = 32
    hidden: int = 32
    epochs: int = 10

    def __post_init__(self) -> None:
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_real(self.lr, "lr", low=0, low_open=True)
        check_real(self.momentum, "momentum", low=0, high=1, high_open=True)
        for name in ("batch_size", "hidden", "epochs"):
            check_int(getattr(self, name), name, low=1)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The optimizer this recipe names, on ``model.parameters()``."""
        _check_model(model)
        momentum = self.momentum if self.optimizer == "sgd" else 0.0  # Adam's momentum lives in its betas
        return make_optimizer(self.optimizer, model.parameters(), self.lr, momentum=momentum)

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some settings changed, e.g. ``default_recipe().replace(lr=1.0)``."""
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown recipe setting(s) {sorted(unknown)}; allowed: {sorted(asdict(self))}")
        return replace(self, **changes)


def default_recipe() -> Recipe:
    """The course's standard run on the tutorial task: plain SGD, lr 0.02, batch 32, hidden 32, 10 epochs.

    Chosen so that the trace looks like the tutorial's: the first epoch ends near the loss of a coin flip
    with modest accuracy, the next epochs improve steadily, and by epoch 10 the test accuracy is
    close to the ceiling set by the label noise (``lrlab.data.bayes_accuracy()``, about 0.93): at least
    0.85 on every seed 0-9. The LR is deliberately on the cautious side: 0.1-0.3 converge in fewer
    epochs on this task, and far larger ones bounce or diverge (the convergence module explores this).
    """
    return Recipe()


def run_recipe(
    seed: int = 0,
    recipe: Recipe | None = None,
    *,
    task: Any = None,
    scheduler: Any = None,
    device: Any = "auto",
    callbacks: Sequence[Callback] = (),
    progress: bool | str = "auto",
    **changes: Any,
) -> tuple[nn.Module, Trace]:
    """Data, model, optimizer and :func:`fit` from one ``seed``: returns ``(model, trace)``.

    ``recipe`` defaults to :func:`default_recipe`; keyword ``changes`` override its settings
    (``run_recipe(3, lr=2.0)``). ``task`` defaults to ``lrlab.data.load_task(seed, recipe.batch_size)``.
    The model's initial weights come from ``seed`` too, so the run is reproducible. ``scheduler``, if
    given, is a function ``optimizer -> scheduler``.
    """
    recipe = (recipe or default_recipe()).replace(**changes) if changes else (recipe or default_recipe())
    if not isinstance(recipe, Recipe):
        raise ValueError(f"recipe must be a Recipe, got {type(recipe).__name__}")
    if task is None:
        task = load_task(seed, recipe.batch_size)
    model = MLP(task.n_features, hidden=recipe.hidden, seed=seed)
    optimizer = recipe.make_optimizer(model)
    sched = None
    if scheduler is not None:
        if not callable(scheduler):
            raise ValueError("scheduler must be a function optimizer -> scheduler")
        sched = scheduler(optimizer)
    trace = fit(
        model, task, optimizer, recipe.epochs, sched, device=device, callbacks=callbacks, progress=progress
    )
    trace.config.update({"seed": seed, "recipe": asdict(recipe)})
    return model, trace
