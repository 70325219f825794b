"""lrlab.scaling: LR scaling rules, the critical-batch fit of McCandlish et al., and AdamW written out."""

from __future__ import annotations

import math

import pytest
import torch

from lrlab import scaling


def test_scaled_lr_rules():
    assert scaling.scaled_lr(0.1, 32, 128) == pytest.approx(0.4)
    assert scaling.scaled_lr(1e-3, 32, 128, rule="sqrt") == pytest.approx(2e-3)
    assert scaling.scaled_lr(0.1, 64, 16) == pytest.approx(0.025)
    with pytest.raises(ValueError, match="rule"):
        scaling.scaled_lr(0.1, 32, 64, rule="cubic")
    with pytest.raises(ValueError, match="batch"):
        scaling.scaled_lr(0.1, 32, 0)


def test_fit_recovers_the_critical_batch_from_exact_and_noisy_steps():
    sizes = [8, 16, 32, 64, 128, 256, 512]
    exact = [200 * (1 + 100 / b) for b in sizes]
    fit = scaling.fit_critical_batch(sizes, exact)
    assert fit.s_min == pytest.approx(200) and fit.b_noise == pytest.approx(100) and fit.e_min == pytest.approx(20000)
    assert fit.r2 == pytest.approx(1.0) and fit.steps(100) == pytest.approx(400)
    assert fit.examples(100) == pytest.approx(40000) and "B_noise 100" in str(fit)
    g = torch.Generator().manual_seed(0)
    noisy = [s * (1 + 0.01 * float(torch.randn(1, generator=g))) for s in exact]   # 1 % noise per measurement
    fit = scaling.fit_critical_batch(sizes, noisy)
    assert fit.b_noise == pytest.approx(100, rel=0.15) and fit.r2 > 0.95


def test_fit_refuses_what_it_cannot_fit():
    with pytest.raises(ValueError, match="at least 3 different batch sizes"):
        scaling.fit_critical_batch([8, 8, 16], [10, 11, 9])
    with pytest.raises(ValueError, match="same length"):
        scaling.fit_critical_batch([8, 16, 32], [10, 11])
    with pytest.raises(ValueError, match="do not fall with the batch size"):
        scaling.fit_critical_batch([8, 16, 32, 64], [10, 20, 40, 80])   # steps that grow with B
    with pytest.raises(ValueError, match="step count"):
        scaling.fit_critical_batch([8, 16, 32], [10, math.nan, 9])


@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 0.3])
def test_adamw_step_equals_torch_optim_adamw(weight_decay):
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    ref = w0.clone().requires_grad_(True)
    opt = torch.optim.AdamW([ref], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    mine, m, v = w0.clone(), torch.zeros_like(w0), torch.zeros_like(w0)
    for step in range(1, 8):
        grad = torch.randn(5, 3, generator=g, dtype=torch.float64) * step
        ref.grad = grad.clone()
        opt.step()
        scaling.adamw_step(mine, grad, m, v, step, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
        assert torch.allclose(mine, ref.detach(), rtol=1e-12, atol=1e-14), step
    state = opt.state[ref]
    assert torch.allclose(m, state["exp_avg"]) and torch.allclose(v, state["exp_avg_sq"])


def test_decoupled_decay_differs_from_l2_in_the_gradient():
    """Adam with L2 added to the gradient shrinks a weight with large gradients far less than AdamW does."""
    w = torch.tensor([1.0, 1.0], dtype=torch.float64)
    grads = torch.tensor([100.0, 0.0], dtype=torch.float64)   # one weight with a large gradient, one with none
    adamw, m, v = w.clone(), torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    scaling.adamw_step(adamw, grads, m, v, 1, lr=0.1, weight_decay=0.5, betas=(0.0, 0.0))
    l2 = torch.optim.Adam([p := w.clone().requires_grad_(True)], lr=0.1, betas=(0.0, 0.0), weight_decay=0.5)
    p.grad = grads.clone()
    l2.step()
    # AdamW: both weights shrink by lr * wd = 5 %; the Adam step moves the first by lr on top
    assert adamw.tolist() == pytest.approx([0.95 - 0.1, 0.95])
    # Adam + L2: the decay is divided by the gradient's RMS, so the weight without gradient moves by a full lr
    assert p.detach().tolist() == pytest.approx([0.9, 0.9], abs=1e-6)
