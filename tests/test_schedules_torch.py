"""lrlab.schedules agrees with torch.optim.lr_scheduler (property-based, with hypothesis).

For each strategy PyTorch also has, random arguments and a random run length are drawn, PyTorch's
scheduler is stepped as in training (``optimizer.step()`` then ``scheduler.step()``), and the LR each
step used is compared with lrlab's to 1e-9 relative:

* against PyTorch's closed form (``_get_closed_form_lr``) where it has one, and also against the
  recursive (chainable) values, whose drift over these short runs stays far below 1e-9;
* against the stepped values where PyTorch computes the LR from the step directly (OneCycleLR,
  CyclicLR, CosineAnnealingWarmRestarts).

The last tests pin down the places, listed in the lrlab.schedules docstring, where PyTorch's recursive
form or its edge cases differ from the closed form; if a PyTorch upgrade changes one, the docstring
must change too.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as tls

from lrlab import schedules as S

RTOL = 1e-9
settings.register_profile("lrlab-torch", max_examples=25, deadline=None, derandomize=True)
settings.load_profile("lrlab-torch")

lrs = st.floats(min_value=1e-5, max_value=10.0, allow_nan=False, allow_infinity=False)
gammas = st.floats(min_value=0.05, max_value=1.0)
lengths = st.integers(min_value=1, max_value=60)
run_lengths = st.integers(min_value=1, max_value=250)


def _optimizer(lr: float = 1.0, momentum: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=momentum)


def stepped(make, n: int, lr: float = 1.0) -> tuple[list[float], tls.LRScheduler]:
    """The LR PyTorch's scheduler gives each of ``n`` steps, stepping it as in training."""
    opt = _optimizer(lr)
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ordering warning: optimizer.step() comes first
        for _ in range(n):
            out.append(float(opt.param_groups[0]["lr"]))
            opt.step()
            sched.step()
    return out, sched


def closed_form(sched: tls.LRScheduler, n: int) -> list[float]:
    """PyTorch's closed form at steps 0 .. n-1 (the formula ``step(epoch)`` would use)."""
    keep = sched.last_epoch
    out = []
    for t in range(n):
        sched.last_epoch = t
        out.append(float(sched._get_closed_form_lr()[0]))
    sched.last_epoch = keep
    return out


def assert_agree(ours: S.Schedule, theirs: list[float], what: str, atol: float = 0.0) -> None:
    for t, expected in enumerate(theirs):
        got = ours(t)
        assert math.isclose(got, expected, rel_tol=RTOL, abs_tol=atol), (
            f"{what}: step {t}: lrlab {got!r} vs PyTorch {expected!r} ({ours!r})")


def check_both_forms(ours: S.Schedule, make, n: int, lr: float, what: str) -> None:
    rec, sched = stepped(make, n, lr)
    assert_agree(ours, closed_form(sched, n), f"{what} closed form")
    assert_agree(ours, rec, f"{what} recursive form")


@given(lr=lrs, step_size=lengths, gamma=gammas, n=run_lengths)
def test_step_lr(lr, step_size, gamma, n):
    check_both_forms(S.StepDecay(lr, step_size, gamma), lambda o: tls.StepLR(o, step_size, gamma), n, lr,
                     "StepLR")


@given(lr=lrs, gaps=st.lists(st.integers(1, 40), min_size=1, max_size=5), gamma=gammas, n=run_lengths)
def test_multistep_lr(lr, gaps, gamma, n):
    milestones = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    check_both_forms(S.MultiStep(lr, milestones, gamma), lambda o: tls.MultiStepLR(o, milestones, gamma),
                     n, lr, "MultiStepLR")


@given(lr=lrs, gamma=st.floats(min_value=0.9, max_value=1.0), n=run_lengths)
def test_exponential_lr(lr, gamma, n):
    check_both_forms(S.Exponential(lr, gamma), lambda o: tls.ExponentialLR(o, gamma), n, lr, "ExponentialLR")


@given(lr=lrs, total=st.integers(1, 200), power=st.floats(min_value=0.1, max_value=4.0), n=run_lengths)
def test_polynomial_lr(lr, total, power, n):
    check_both_forms(S.Polynomial(lr, total, power), lambda o: tls.PolynomialLR(o, total, power), n, lr,
                     "PolynomialLR")


@given(lr=lrs, total=st.integers(1, 250), floor_frac=st.floats(min_value=0.0, max_value=0.9), data=st.data())
def test_cosine_annealing_lr_within_period(lr, total, floor_frac, data):
    floor = lr * floor_frac
    n = data.draw(st.integers(1, total + 1), label="steps (within the period, its end included)")
    check_both_forms(S.Cosine(lr, total, floor), lambda o: tls.CosineAnnealingLR(o, total, floor), n, lr,
                     "CosineAnnealingLR")


@given(lr=lrs, period=st.integers(1, 40), mult=st.integers(1, 3),
       floor_frac=st.floats(min_value=0.0, max_value=0.9), n=run_lengths)
def test_cosine_annealing_warm_restarts(lr, period, mult, floor_frac, n):
    floor = lr * floor_frac
    make = lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=period, T_mult=mult, eta_min=floor)
    rec, _ = stepped(make, n, lr)
    assert_agree(S.CosineRestarts(lr, period, mult, floor), rec, "CosineAnnealingWarmRestarts")


@given(base=lrs, start=st.floats(min_value=0.01, max_value=1.0), end=st.floats(min_value=0.0, max_value=1.0),
       total=st.integers(1, 200), n=run_lengths)
def test_linear_lr(base, start, end, total, n):
    ours = S.Linear(base * start, base * end, total)
    # Both of PyTorch's forms interpolate start + (end - start) * k / T, whose rounding error is
    # absolute, about 1e-16 of the larger end: near a tiny end value (or end_factor=0, where the
    # recursion stops at a residue of either sign instead of 0) no relative tolerance can hold, so
    # 1e-15 of the larger end is allowed on top of the relative 1e-9.
    atol = 1e-15 * base * max(start, end)
    rec, sched = stepped(lambda o: tls.LinearLR(o, start, end, total), n, base)
    assert_agree(ours, closed_form(sched, n), "LinearLR closed form", atol=atol)
    assert_agree(ours, rec, "LinearLR recursive form", atol=atol)


@given(base=lrs, start=st.floats(min_value=0.01, max_value=1.0), end=st.floats(min_value=1e-3, max_value=1.0),
       total=st.integers(1, 200), n=run_lengths)
def test_linear_lr_relative_only_when_end_is_not_tiny(base, start, end, total, n):
    check_both_forms(S.Linear(base * start, base * end, total), lambda o: tls.LinearLR(o, start, end, total),
                     n, base, "LinearLR")


@given(max_lr=lrs, total=st.integers(4, 300), pct=st.floats(min_value=0.05, max_value=0.95),
       anneal=st.sampled_from(S.ONE_CYCLE_ANNEALS), three=st.booleans(),
       div=st.floats(min_value=2.0, max_value=100.0), final_div=st.floats(min_value=1.0, max_value=1e4))
def test_one_cycle_lr(max_lr, total, pct, anneal, three, div, final_div):
    try:
        ours = S.OneCycle(max_lr, total, pct, anneal, div, final_div, three_phase=three)
    except ValueError:
        # lrlab refuses ramps without a length (PyTorch would divide by zero or skip its warm-up)
        assert pct * total <= 1 or (three and 2 * pct * total - 2 >= total - 1)
        return
    make = lambda o: tls.OneCycleLR(o, max_lr, total_steps=total, pct_start=pct, anneal_strategy=anneal,
                                    div_factor=div, final_div_factor=final_div, three_phase=three,
                                    cycle_momentum=False)
    rec, _ = stepped(make, total, max_lr)  # every step the cycle has: 0 .. total - 1
    assert_agree(ours, rec, "OneCycleLR")


@given(base=st.floats(min_value=1e-4, max_value=1.0), ratio=st.floats(min_value=1.0, max_value=1e3),
       up=st.integers(1, 30), down=st.one_of(st.none(), st.integers(1, 30)),
       mode=st.sampled_from(S.CYCLIC_MODES), gamma=st.floats(min_value=0.9, max_value=1.0), n=run_lengths)
def test_cyclic_lr(base, ratio, up, down, mode, gamma, n):
    top = base * ratio
    make = lambda o: tls.CyclicLR(o, base, top, step_size_up=up, step_size_down=down, mode=mode, gamma=gamma,
                                  cycle_momentum=False)
    rec, _ = stepped(make, n, base)
    assert_agree(S.Cyclic(base, top, up, down, mode, gamma), rec, "CyclicLR")


@given(lr=lrs, warmup=st.integers(2, 100))
def test_warmup_equals_linear_lr_with_start_factor_one_over_w(lr, warmup):
    """lrlab's warmup convention (step t gets (t+1)/W of the LR) is LinearLR(1/W, total_iters=W-1)."""
    rec, _ = stepped(lambda o: tls.LinearLR(o, 1.0 / warmup, 1.0, warmup - 1), warmup + 5, lr)
    assert_agree(S.Warmup(S.Constant(lr), warmup), rec, "warmup vs LinearLR")


# ----------------------------------------------------------- where PyTorch's forms drift (documented)
def test_recursive_cosine_drifts_from_closed_form_but_stays_within_tolerance():
    total = 3000
    rec, sched = stepped(lambda o: tls.CosineAnnealingLR(o, total), total)
    closed = closed_form(sched, total)
    drift = max(abs(a - b) / b for a, b in zip(rec, closed, strict=True) if b > 0)
    assert 0 < drift < 1e-11, drift  # the recursion rounds once per step: not exact, but tiny
    ours = S.Cosine(1.0, total)
    assert max(abs(ours(t) - c) / c for t, c in enumerate(closed) if c > 0) < 1e-12


def test_cosine_annealing_lr_climbs_after_t_max_lrlab_clamps():
    rec, _ = stepped(lambda o: tls.CosineAnnealingLR(o, T_max=4), 9)
    assert rec[4] == pytest.approx(0.0, abs=1e-15) and rec[8] == pytest.approx(1.0)  # back up at 2 T_max
    ours = S.Cosine(1.0, 4)
    assert [ours(t) for t in range(4, 9)] == [0.0] * 5


def test_chainable_cosine_follows_an_outside_change_closed_form_does_not():
    opt = _optimizer(1.0)
    sched = tls.CosineAnnealingLR(opt, T_max=10)
    opt.step()
    sched.step()
    opt.param_groups[0]["lr"] *= 0.5
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 * sched._get_closed_form_lr()[0])
    assert S.Cosine(1.0, 10)(2) == pytest.approx(sched._get_closed_form_lr()[0], rel=1e-12)


def test_linear_lr_decaying_to_zero_leaves_a_residue_of_either_sign():
    signs = set()
    for start in (0.3, 0.5154253197006127, 0.7, 0.9):
        for total in (7, 9, 13, 50):
            rec, _ = stepped(lambda o, s=start, n=total: tls.LinearLR(o, s, 0.0, n), total + 3)
            assert abs(rec[-1]) < 1e-15 * start  # tiny, but
            signs.add((rec[-1] > 0) - (rec[-1] < 0))
            assert S.Linear(start, 0.0, total)(total + 2) == 0.0
    assert {-1, 1} <= signs  # ... not 0: sometimes a (tiny) negative learning rate


def test_linear_lr_closed_form_loses_a_tiny_end_value():
    opt = _optimizer(1.0)
    sched = tls.LinearLR(opt, start_factor=1.0, end_factor=1e-10, total_iters=3)
    end = closed_form(sched, 4)[-1]
    assert abs(end - 1e-10) / 1e-10 > 1e-9  # 1 + (1e-10 - 1) is not 1e-10 in floating point
    assert S.Linear(1.0, 1e-10, 3)(3) == 1e-10


def test_linear_lr_cannot_start_at_zero_lrlab_can():
    with pytest.raises(ValueError):
        tls.LinearLR(_optimizer(), start_factor=0.0)
    assert S.Linear(0.0, 1.0, 10)(0) == 0.0


def test_one_cycle_edges():
    # one step past the end: PyTorch extrapolates (linear goes negative), lrlab holds the final LR
    make = lambda o: tls.OneCycleLR(o, 1.0, total_steps=10, anneal_strategy="linear", cycle_momentum=False)
    opt = _optimizer()
    sched = make(opt)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] < 0
    ours = S.OneCycle(1.0, 10, anneal="linear")
    assert ours(10) == ours(9) == ours.min_lr > 0
    # pct_start * total_steps == 1: PyTorch divides by zero; lrlab says why
    with pytest.raises(ZeroDivisionError):
        tls.OneCycleLR(_optimizer(), 1.0, total_steps=10, pct_start=0.1, cycle_momentum=False)
    with pytest.raises(ValueError, match="pct_start \\* total must be > 1"):
        S.OneCycle(1.0, 10, pct_start=0.1)


def test_warm_restarts_float_log_lands_one_cycle_short_with_step_epoch():
    opt = _optimizer(1.0)
    sched = tls.CosineAnnealingWarmRestarts(opt, T_0=1, T_mult=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched.step(121)  # a restart point: 1 + 3 + 9 + 27 + 81 = 121
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # PyTorch: end of the old cycle
    assert S.CosineRestarts(1.0, 1, 3)(121) == 1.0  # lrlab: the restart
    assert S.CosineRestarts(1.0, 1, 3).cycle(121) == (5, 121.0, 243.0)


def test_multistep_lr_accepts_repeated_milestones_lrlab_refuses():
    rec, _ = stepped(lambda o: tls.MultiStepLR(o, [2, 2], gamma=0.5), 3)
    assert rec == [1.0, 1.0, 0.25]
    with pytest.raises(ValueError, match="strictly increasing"):
        S.MultiStep(1.0, [2, 2], gamma=0.5)
