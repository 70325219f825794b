"""Tests of lrlab.metrics: convergence metrics on hand-made traces and on real short runs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lrlab import metrics as M


def make_trace(train, test_loss=None, test_acc=None, *, samples_per_epoch=800, initial=None, diverged=False):
    """A stand-in trace with the fields lrlab.training.Trace has."""
    n = len(train)
    test_loss = test_loss if test_loss is not None else train
    test_acc = test_acc if test_acc is not None else [0.5] * n
    epochs = [
        {"epoch": i + 1, "train_loss": train[i], "test_loss": test_loss[i], "test_acc": test_acc[i],
         "samples": samples_per_epoch * (i + 1), "lr": 0.1}
        for i in range(n)
    ]
    steps = [{"step": 0, "samples": 32, "loss": initial if initial is not None else train[0], "lr": 0.1}]
    return SimpleNamespace(epochs=epochs, steps=steps, diverged=diverged)


# ------------------------------------------------------------------------------------ time to target
def test_first_reach_min_and_max():
    assert M.first_reach([0.9, 0.7, 0.5, 0.4], 0.5, "min") == 2
    assert M.first_reach([0.5, 0.8, 0.86, 0.9], 0.85, "max") == 2
    assert M.first_reach([0.9, 0.8], 0.1, "min") is None
    assert M.first_reach([math.nan, 0.1], 0.5, "min") == 1


def test_epochs_and_samples_to_target_are_one_based_and_none_when_never():
    tr = make_trace([0.7, 0.5, 0.4, 0.3], test_acc=[0.6, 0.8, 0.86, 0.9])
    assert M.epochs_to_target(tr, 0.85) == 3  # accuracy: higher is better, inferred
    assert M.samples_to_target(tr, 0.85) == 3 * 800
    assert M.epochs_to_target(tr, 0.45, "train_loss") == 3  # loss: lower is better, inferred
    assert M.epochs_to_target(tr, 0.95) is None
    assert M.samples_to_target(tr, 0.95) is None


def test_samples_to_target_per_step():
    steps = [{"step": i, "samples": 32 * (i + 1), "loss": 1.0 - 0.1 * i} for i in range(8)]
    tr = SimpleNamespace(epochs=[], steps=steps)
    assert M.samples_to_target(tr, 0.55, "loss", per="step") == 32 * 6


def test_mode_must_be_given_for_unknown_metrics():
    tr = make_trace([0.7, 0.5])
    with pytest.raises(ValueError, match="mode="):
        M.epochs_to_target(tr, 0.1, "lr")
    assert M.epochs_to_target(tr, 0.1, "lr", mode="max") == 1


def test_final_and_best_values_skip_nan():
    tr = make_trace([0.7, 0.4, 0.5, math.nan], test_acc=[0.6, 0.9, 0.8, math.nan])
    assert M.final_value(tr, "train_loss") == 0.5
    assert M.best_value(tr, "train_loss") == 0.4
    assert M.best_value(tr, "test_acc") == 0.9


def test_series_reports_missing_keys():
    with pytest.raises(ValueError, match="no epoch record has the key 'nope'"):
        M.series(make_trace([0.5]), "nope")
    with pytest.raises(ValueError, match="Trace"):
        M.series(42, "train_loss")


# ------------------------------------------------------------------------------------ area
def test_area_under_curve_trapezoid_and_normalization():
    assert M.area_under_curve([1.0, 0.0], [0.0, 2.0], normalize=False) == pytest.approx(1.0)
    assert M.area_under_curve([1.0, 0.0], [0.0, 2.0]) == pytest.approx(0.5)
    assert M.area_under_curve([1.0, 0.5, 0.5]) == pytest.approx((0.75 + 0.5) / 2)
    assert M.area_under_curve([0.3]) == 0.3
    assert M.area_under_curve([1.0, math.nan]) == math.inf
    with pytest.raises(ValueError, match="strictly increasing"):
        M.area_under_curve([1.0, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="same length"):
        M.area_under_curve([1.0, 0.5], [1.0])


def test_loss_auc_prefers_the_run_that_got_there_first():
    fast = make_trace([0.3, 0.25, 0.25, 0.25])
    slow = make_trace([0.6, 0.5, 0.4, 0.25])
    assert M.final_value(fast, "train_loss") == M.final_value(slow, "train_loss")
    assert M.loss_auc(fast) < M.loss_auc(slow)


# ------------------------------------------------------------------------------------ plateau, divergence
def test_detect_plateau_starts_at_the_last_improvement():
    values = [1.0, 0.8, 0.6, 0.5, 0.499, 0.498, 0.497, 0.3]
    assert M.detect_plateau(values, patience=3, rel_tol=0.01) == 3
    assert M.detect_plateau(values, patience=4, rel_tol=0.01) is None
    assert M.detect_plateau(values, patience=3, rel_tol=0.0) is None  # every tiny drop counts
    assert M.detect_plateau([1.0, 0.9, 0.8, 0.7]) is None


def _torch_first_reduction(values, patience, rel_tol):
    """The index of the first value at which ReduceLROnPlateau lowers the LR, or None."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=patience,
                                                       threshold=rel_tol, threshold_mode="rel", cooldown=0)
    for i, v in enumerate(values):
        sched.step(v)
        if opt.param_groups[0]["lr"] < 1.0:
            return i
    return None


def test_detect_plateau_is_declared_when_torch_reduce_lr_on_plateau_with_one_less_patience_fires():
    rng = np.random.default_rng(15)
    fired = 0
    for _ in range(300):
        n = int(rng.integers(3, 30))
        values = np.cumprod(1 - rng.uniform(0, 0.08, n) * (rng.uniform(size=n) > 0.45)) * (
            1 + 0.003 * rng.standard_normal(n)) + 0.1
        patience, rel_tol = int(rng.integers(1, 5)), float(rng.uniform(0, 0.03))
        start = M.detect_plateau(values.tolist(), patience=patience, rel_tol=rel_tol)
        when = _torch_first_reduction(values.tolist(), patience - 1, rel_tol)
        assert (None if start is None else start + patience) == when, (values, patience, rel_tol)
        fired += when is not None
    assert 50 < fired < 250  # both outcomes are exercised
    # "best" is the last improvement, not the lowest value seen: 0.985 and 0.97 do not move it, so 0.955
    # (below 1.0 * 0.98) improves and no plateau forms; with best = lowest value seen, 0.955 would not improve
    values = [1.0, 0.985, 0.97, 0.955, 0.95]
    assert M.detect_plateau(values, patience=3, rel_tol=0.02) is None
    assert _torch_first_reduction(values, 2, 0.02) is None


def test_plateau_epoch_on_accuracy_uses_max():
    tr = make_trace([0.5] * 6, test_acc=[0.6, 0.8, 0.9, 0.9, 0.9, 0.9])
    assert M.plateau_epoch(tr, "test_acc", patience=3) == 3


def test_detect_divergence():
    assert M.detect_divergence([0.7, 0.6, 2.5]) == 2  # above 3 x 0.7
    assert M.detect_divergence([0.7, 0.6, 2.0]) is None
    assert M.detect_divergence([0.7, math.inf, 0.1]) == 1
    assert M.detect_divergence([0.7, 1.0], factor=1.2) == 1
    with pytest.raises(ValueError, match="factor"):
        M.detect_divergence([0.7], factor=1.0)


def test_is_diverged_from_flag_nan_or_blow_up():
    assert M.is_diverged(make_trace([0.6, 0.5], diverged=True))
    assert M.is_diverged(make_trace([0.6, 5.0], initial=0.7))
    assert not M.is_diverged(make_trace([0.6, 0.5], initial=0.7))
    spiky = make_trace([0.6, 0.5], initial=0.7)
    spiky.steps.append({"step": 1, "samples": 64, "loss": 4.0, "lr": 0.1})  # a spike it recovered from
    assert not M.is_diverged(spiky)
    spiky.steps.append({"step": 2, "samples": 96, "loss": math.nan, "lr": 0.1})
    assert M.is_diverged(spiky)


# ------------------------------------------------------------------------------------ oscillation
def test_oscillation_is_zero_for_monotone_and_one_for_pure_bouncing():
    assert M.oscillation([1.0, 0.8, 0.5, 0.45]) == 0.0
    assert M.oscillation([0.5, 0.7, 0.5, 0.7, 0.5]) == pytest.approx(1.0)
    zigzag = [1.0, 0.6, 0.7, 0.5, 0.6, 0.4]
    assert 0 < M.oscillation(zigzag) < 1
    assert M.oscillation(np.array(zigzag) * 100) == pytest.approx(M.oscillation(zigzag))  # scale-free
    assert M.oscillation([1.0, 2.0]) == 0.0


def test_sign_change_fraction():
    assert M.sign_change_fraction([1, 2, 3, 4]) == 0.0
    assert M.sign_change_fraction([1, 2, 1, 2, 1]) == 1.0
    rng = np.random.default_rng(0)
    assert 0.55 < M.sign_change_fraction(rng.normal(size=3000)) < 0.75  # noise: about 2/3


# ------------------------------------------------------------------------------------ classifier
def test_classify_hand_made_traces():
    assert M.classify(make_trace([0.69, 0.68, 0.67, 0.66], initial=0.7)) == "slow"
    assert M.classify(make_trace([0.5, 0.35, 0.3, 0.27], initial=0.7)) == "converging"
    assert M.classify(make_trace([0.4, 0.55, 0.35, 0.5, 0.38], initial=0.7)) == "bouncing"
    assert M.classify(make_trace([0.4, 3.5], initial=0.7)) == "diverged"
    assert M.classify(make_trace([0.4, math.nan], initial=0.7, diverged=True)) == "diverged"


def test_classify_thresholds_are_configurable_and_checked():
    tr = make_trace([0.6, 0.55, 0.5], initial=0.7)  # removed ~29 % of the loss
    assert M.classify(tr) == "slow"
    assert M.classify(tr, M.Thresholds(slow_progress=0.2)) == "converging"
    with pytest.raises(ValueError, match="bounce"):
        M.Thresholds(bounce=1.5)
    with pytest.raises(ValueError, match="empty"):
        M.classify(SimpleNamespace(epochs=[], steps=[]))


def test_classify_real_runs_too_low_right_too_high():
    """Real 10-epoch runs with the course's own loop: each LR lands in its class on two seeds."""
    from lrlab.training import run_recipe

    torch.set_num_threads(1)
    expected = {0.001: "slow", 0.1: "converging", 3.0: "bouncing", 30.0: "diverged"}
    for lr, label in expected.items():
        for seed in (0, 1):
            _, trace = run_recipe(seed, lr=lr, progress=False, device="cpu")
            got = M.classify_details(trace)
            assert got["label"] == label, (lr, seed, got)


def test_summarize_row():
    tr = make_trace([0.6, 0.4, 0.3], test_acc=[0.7, 0.86, 0.9], initial=0.7)
    row = M.summarize(tr, target_acc=0.85, target_loss=0.35)
    assert row["final_test_acc"] == 0.9 and row["best_test_loss"] == 0.3
    assert row["samples_to_acc"] == 1600 and row["samples_to_loss"] == 2400
    assert row["label"] == "converging" and row["diverged"] is False
