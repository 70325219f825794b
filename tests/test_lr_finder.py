"""Tests of lrlab.lr_finder: the pure pieces of the LR range test, its suggestions, and the test itself."""

from __future__ import annotations

import math
import re

import matplotlib
import numpy as np
import pytest
import torch

from lrlab import lr_finder as F
from lrlab.data import load_task
from lrlab.models import MLP
from lrlab.training import Callback

matplotlib.use("Agg")
torch.set_num_threads(1)


# ------------------------------------------------------------------------------------ the LR grid
def test_lr_sweep_exponential_and_linear():
    lrs = F.lr_sweep(1e-4, 1.0, 5, "exp")
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1.0)
    assert np.allclose(lrs[1:] / lrs[:-1], 10.0)  # a constant factor per step
    lin = F.lr_sweep(0.1, 0.5, 5, "linear")
    assert np.allclose(np.diff(lin), 0.1)


@pytest.mark.parametrize(
    "args, match",
    [((1.0, 0.1, 10), "smaller than"), ((0.0, 1.0, 10), "lr_min"), ((1e-3, 1.0, 1), "num_steps"),
     ((1e-3, math.inf, 10), "lr_max")],
)
def test_lr_sweep_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        F.lr_sweep(*args)
    with pytest.raises(ValueError, match="mode"):
        F.lr_sweep(1e-3, 1.0, 10, "log")


# ------------------------------------------------------------------------------------ smoothing and stopping
def test_ema_update_by_hand():
    avg, s1 = F.ema_update(0.0, 2.0, 0.5, 1)
    assert (avg, s1) == (1.0, 2.0)  # 0.5 * 2 = 1, corrected by 1 - 0.5 = 0.5
    avg, s2 = F.ema_update(avg, 4.0, 0.5, 2)
    assert avg == 2.5 and s2 == pytest.approx(2.5 / 0.75)
    with pytest.raises(ValueError, match="1-based"):
        F.ema_update(0.0, 1.0, 0.5, 0)
    with pytest.raises(ValueError, match="beta"):
        F.ema_update(0.0, 1.0, 1.0, 1)


def test_smoothing_is_bias_corrected():
    """A constant loss must smooth to itself from the very first step (without the correction it starts near 0)."""
    out = F.smooth_losses([0.7] * 20, beta=0.9)
    assert np.allclose(out, 0.7)
    assert np.array_equal(F.smooth_losses([3.0, 1.0, 2.0], beta=0.0), [3.0, 1.0, 2.0])


def test_smoothing_matches_the_definition_on_random_losses():
    rng = np.random.default_rng(1)
    losses, beta = rng.uniform(0.2, 1.0, 50), 0.8
    weights = beta ** np.arange(49, -1, -1)  # weight of loss i in the last average
    expected_last = (1 - beta) * np.sum(weights * losses) / (1 - beta**50)
    assert F.smooth_losses(losses, beta)[-1] == pytest.approx(expected_last)


def test_should_stop():
    assert not F.should_stop(0.39, 0.1, 4.0)
    assert F.should_stop(0.41, 0.1, 4.0)
    assert F.should_stop(math.nan, 0.1)
    assert F.should_stop(math.inf, 0.1)
    with pytest.raises(ValueError, match="stop_factor"):
        F.should_stop(1.0, 1.0, 1.0)


def test_stop_index_uses_the_smoothed_loss_after_the_burn_in():
    losses = [1.0] * 30 + [0.5] * 30
    assert F.stop_index(losses) is None
    spiky = list(losses)
    spiky[45] = 5.0  # one bad batch: 10x the loss, but the average moves less than 4x
    assert F.stop_index(spiky) is None
    rising = [1.0] * 20 + [1.0 * 1.3**k for k in range(1, 40)]
    i = F.stop_index(rising)
    smoothed = F.smooth_losses(rising)
    assert smoothed[i] > 4 * smoothed[10:i].min() and smoothed[i - 1] <= 4 * smoothed[10:i].min()
    assert F.stop_index([1.0, 2.0, math.nan, 1.0]) == 2  # NaN stops at once, burn-in or not
    early = [0.1] * 5 + [1.0] * 30  # a low start inside the burn-in does not count as "best"
    assert F.stop_index(early, burn_in=5) is None
    assert F.stop_index(early, burn_in=0) is not None


# ------------------------------------------------------------------------------------ suggestions
def clean_curve(n=300):
    """A textbook range-test curve: flat, a smooth drop centred at lr = 1e-2, then a blow-up past lr = 1."""
    lrs = np.geomspace(1e-5, 10, n)
    x = np.log10(lrs)
    loss = 0.7 - 0.45 / (1 + np.exp(-3 * (x + 2))) + np.where(x > 0, 2.0 * x**2, 0.0)
    return lrs, loss


def test_suggestions_on_a_clean_curve():
    lrs, loss = clean_curve()
    i_min = int(np.argmin(loss))
    assert F.suggest_lr(lrs, loss, "min/10") == pytest.approx(lrs[i_min] / 10)
    steep = F.suggest_lr(lrs, loss, "steepest")
    assert 10**-2.2 < steep < 10**-1.8  # the centre of the drop
    desc = F.suggest_lr(lrs, loss, "descent")
    assert 10**-2.2 < desc < 10**-0.8  # on the falling part, below the minimum
    assert desc < lrs[i_min]


def test_valley_is_halfway_along_the_longest_decreasing_run():
    lrs = np.geomspace(1e-3, 1, 7)
    # the longest decreasing subsequence is 5, 4, 3, 2, 1.5 (steps 0, 2, 3, 4, 5), not the short drop 5 -> 1
    assert F.suggest_lr(lrs, np.array([5.0, 1.0, 4.0, 3.0, 2.0, 1.5, 6.0]), "valley") == pytest.approx(lrs[2])
    # a curve that only falls: the valley is all of it, the suggestion its middle step
    assert F.suggest_lr(lrs, np.linspace(1.0, 0.4, 7), "valley") == pytest.approx(lrs[3])
    lrs, loss = clean_curve()
    assert F.suggest_lr(lrs, loss, "valley") == pytest.approx(lrs[int(np.argmin(loss)) // 2])
    assert F.suggest_lr(lrs, loss, "valley", burn_in=10) == pytest.approx(lrs[10 + (int(np.argmin(loss)) - 10) // 2])


def test_descent_is_more_robust_to_noise_than_steepest():
    lrs, loss = clean_curve()
    rng = np.random.default_rng(0)
    picks = {"descent": [], "steepest": []}
    for _ in range(30):
        noisy = F.smooth_losses(loss + rng.normal(0, 0.08, loss.shape), beta=0.9)
        for rule in picks:
            picks[rule].append(np.log10(F.suggest_lr(lrs, noisy, rule, burn_in=10)))
    assert np.std(picks["descent"]) < 0.5 * np.std(picks["steepest"])


def test_suggest_lr_ignores_burn_in_and_non_finite_tail():
    lrs, loss = clean_curve()
    spiked = loss.copy()
    spiked[:5] = 0.01  # a misleading start: lowest values inside the burn-in
    spiked[-20:] = np.nan
    assert F.suggest_lr(lrs, spiked, "min/10", burn_in=5) == pytest.approx(F.suggest_lr(lrs, loss, "min/10"))
    with pytest.raises(ValueError, match="usable points"):
        F.suggest_lr(lrs[:5], loss[:5], burn_in=4)
    with pytest.raises(ValueError, match="rule"):
        F.suggest_lr(lrs, loss, "fastest")


# ------------------------------------------------------------------------------------ the range test
def state_of(model, optimizer):
    params = [p.detach().clone() for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    opt = optimizer.state_dict()
    tensors = [v.clone() for s in opt["state"].values() for v in s.values() if torch.is_tensor(v)]
    scalars = [(k, v) for s in opt["state"].values() for k, v in s.items() if not torch.is_tensor(v)]
    return params, grads, tensors, scalars, [dict(g) for g in opt["param_groups"]], model.training


def assert_identical(before, after):
    for a, b in zip(before[0], after[0], strict=True):
        assert torch.equal(a, b)
    for a, b in zip(before[1], after[1], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    assert len(before[2]) == len(after[2]) > 0
    for a, b in zip(before[2], after[2], strict=True):
        assert torch.equal(a, b)
    assert before[3:] == after[3:]


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=1e-3),
], ids=["sgd-momentum", "adam"])
def test_range_test_restores_model_optimizer_and_rng_bit_identically(make_opt):
    task = load_task(seed=0)
    model = MLP(seed=0)
    opt = make_opt(model.parameters())
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for i, (x, y) in enumerate(task.train):  # a few real steps so that the optimizer has state
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if i == 3:
            break
    model.eval()
    before = state_of(model, opt)
    rng = torch.get_rng_state()
    # a loader without its own generator shuffles with the global RNG, which must be put back too
    data = torch.utils.data.TensorDataset(task.X_train, task.y_train)
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True)
    result = F.lr_range_test(model, loader, opt, lr_min=1e-4, lr_max=10, num_steps=60, burn_in=5)
    assert_identical(before, state_of(model, opt))
    assert torch.equal(rng, torch.get_rng_state())
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 60


def test_range_test_without_restore_changes_the_model():
    task = load_task(seed=0)
    model = MLP(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = model.hidden.weight.detach().clone()
    F.lr_range_test(model, task.train, opt, num_steps=40, burn_in=5, restore=False)
    assert not torch.equal(w, model.hidden.weight)


def test_range_test_on_the_course_task_stops_early_and_suggests_a_sane_lr(tmp_path):
    task = load_task(seed=0)
    model = MLP(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    res = F.lr_range_test(model, task, opt, lr_min=1e-4, lr_max=100)
    assert res.stopped_early and "best" in res.stop_reason
    assert len(res.lrs) < 300
    assert F.stop_index(res.losses) == len(res.losses) - 1  # the offline rule agrees with the live test
    i_stop = len(res.smoothed) - 1
    assert res.smoothed[i_stop] > 4 * np.min(res.smoothed[res.burn_in:i_stop])
    # a 10-epoch grid search on this task puts the best constant SGD LR between about 0.1 and 0.7
    assert 0.05 < res.suggestion < 1.5
    assert set(res.suggestions()) == set(F.RULES)
    ax = res.plot()
    path = tmp_path / "range_test.png"
    ax.figure.savefig(path)
    assert path.stat().st_size > 1000
    assert "descent" in repr(res)


def test_range_test_validates_arguments():
    task = load_task(seed=0)
    model = MLP(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="burn_in"):
        F.lr_range_test(model, task, opt, num_steps=10, burn_in=9)
    with pytest.raises(ValueError, match="optimizer"):
        F.lr_range_test(model, task, "sgd")
    with pytest.raises(ValueError, match="rule"):
        F.lr_range_test(model, task, opt, rule="best")
    with pytest.raises(ValueError, match="stop_factor"):
        F.lr_range_test(model, task, opt, stop_factor=0.5)


def test_range_test_runs_on_fit_and_shares_its_divergence_rule():
    task = load_task(seed=0)
    model = MLP(seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    # a stop factor nothing can reach: only the divergence rule of fit can end this test early
    res = F.lr_range_test(model, task, opt, lr_min=1e-2, lr_max=1e15, stop_factor=1e300)
    assert res.stopped_early and re.match(r"the loss became (nan|inf) at lr = ", res.stop_reason)
    assert not np.isfinite(res.losses[-1]) and np.isfinite(res.losses[:-1]).all()
    assert not np.isfinite(res.smoothed[-1])
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before, strict=True))
    # reaching lr_max is not an early stop, and exactly num_steps batches are trained (across epochs)
    res = F.lr_range_test(model, task, opt, lr_min=1e-5, lr_max=1e-3, num_steps=40, burn_in=5)
    assert not res.stopped_early and res.stop_reason == "reached lr_max = 0.001" and len(res.losses) == 40
    assert isinstance(F.RangeTestCallback(opt, res.lrs, 0.9, 4.0, 5), Callback)
