"""Batch size and the learning rate: scaling rules, the critical batch size, and AdamW written out.

* :func:`scaled_lr` -- the LR for a new batch size from a tuned one. The *linear* rule (Goyal et al. 2017, "Accurate,
  Large Minibatch SGD") keeps ``lr / B`` fixed, which keeps SGD's update per sample seen the same while the batch
  is small against the noise scale; for Adam the *square-root* rule (Malladi et al. 2022, "On the SDEs and
  Scaling Rules for Adaptive Gradient Algorithms") fits better, because Adam divides the gradient by its own
  running RMS.
* :func:`fit_critical_batch` -- McCandlish et al. (2018), "An Empirical Model of Large-Batch Training": the steps
  to reach a target fall with the batch size as ``S(B) = S_min (1 + B_noise / B)`` and the examples rise as
  ``E(B) = B S(B) = E_min (1 + B / B_noise)`` with ``E_min = S_min B_noise``. Below ``B_noise`` a larger batch
  saves steps almost for free; above it, it mostly wastes examples. ``S`` is linear in ``1/B`` (intercept
  ``S_min``, slope ``S_min B_noise``), so a least-squares line through ``(1/B, S)`` gives both numbers.
* :func:`adamw_step` -- one step of AdamW (Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization")
  written out as ``torch.optim.AdamW`` computes it: the decay shrinks the weights directly (``w -= lr * wd * w``)
  instead of being added to the gradient, where Adam's per-coordinate scaling would weaken it exactly on the
  weights with large gradients.

imports: args.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .args import check_choice, check_int, check_real

__all__ = ["CriticalBatch", "adamw_step", "fit_critical_batch", "scaled_lr"]

RULES = ("linear", "sqrt")


def scaled_lr(base_lr: float, base_batch: int, batch: int, rule: str = "linear") -> float:
    """The LR for batch size ``batch`` from ``base_lr`` tuned at ``base_batch``: ``base_lr * (batch / base_batch)``
    for ``rule="linear"`` (SGD), ``base_lr * sqrt(batch / base_batch)`` for ``rule="sqrt"`` (Adam)."""
    base_lr = check_real(base_lr, "base_lr", low=0, low_open=True)
    base_batch = check_int(base_batch, "base_batch", low=1)
    batch = check_int(batch, "batch", low=1)
    check_choice(rule, "rule", RULES)
    ratio = batch / base_batch
    return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))


@dataclass(frozen=True)
class CriticalBatch:
    """The fit ``S(B) = s_min (1 + b_noise / B)``; ``e_min = s_min * b_noise`` examples; ``r2`` of the line."""

    s_min: float
    b_noise: float
    e_min: float
    r2: float

    def steps(self, batch: float) -> float:
        """Predicted optimizer steps to the target at batch size ``batch``."""
        return self.s_min * (1 + self.b_noise / batch)

    def examples(self, batch: float) -> float:
        """Predicted training examples to the target at batch size ``batch`` (``batch * steps``)."""
        return batch * self.steps(batch)

    def __str__(self) -> str:
        return (f"S_min {self.s_min:.4g} steps, B_noise {self.b_noise:.4g}, E_min {self.e_min:.4g} examples "
                f"(R² {self.r2:.3f})")


def fit_critical_batch(batch_sizes: Sequence[Any], steps: Sequence[Any]) -> CriticalBatch:
    """Least-squares fit of ``S = S_min + (S_min B_noise) / B`` to measured steps-to-target ``steps`` at
    ``batch_sizes`` (at least 3 distinct sizes; runs that never reached the target must be left out)."""
    B = [check_real(b, "every batch size", low=0, low_open=True) for b in batch_sizes]
    S = [check_real(s, "every step count", low=0, low_open=True) for s in steps]
    if len(B) != len(S):
        raise ValueError(f"batch_sizes and steps must have the same length, got {len(B)} and {len(S)}")
    if len(set(B)) < 3:
        raise ValueError(f"the fit needs at least 3 different batch sizes, got {sorted(set(B))}")
    x = torch.tensor([1.0 / b for b in B], dtype=torch.float64)
    y = torch.tensor(S, dtype=torch.float64)
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    intercept = float(ym - slope * xm)
    if intercept <= 0 or slope <= 0:
        raise ValueError(
            f"the steps do not fall with the batch size as S_min (1 + B_noise / B) does (fitted S_min {intercept:.4g}, "
            f"S_min B_noise {slope:.4g}): measure more batch sizes, or a target that every run reaches"
        )
    pred = intercept + slope * x
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - ym) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    b_noise = slope / intercept
    return CriticalBatch(intercept, b_noise, intercept * b_noise, r2)


@torch.no_grad()
def adamw_step(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: int,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
) -> None:
    """One AdamW step on ``param`` in place, as ``torch.optim.AdamW`` does it (``step`` counts from 1):

        param   *= 1 - lr * weight_decay                      (decoupled decay, before the Adam step)
        exp_avg    = beta1 * exp_avg    + (1 - beta1) * grad
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad**2
        param   -= lr * (exp_avg / (1 - beta1**step)) / (sqrt(exp_avg_sq / (1 - beta2**step)) + eps)

    ``exp_avg`` and ``exp_avg_sq`` (zeros before the first step) are updated in place too.
    """
    step = check_int(step, "step", low=1)
    beta1, beta2 = betas
    param.mul_(1 - lr * weight_decay)
    exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq / (1 - beta2**step)).sqrt().add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
