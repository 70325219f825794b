"""lrlab.stats: Student's t without SciPy, t intervals, paired intervals over seeds, and the good-LR basin."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lrlab import stats

# two-sided 95 % critical values of Student's t, as printed in every statistics table
TABLE_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 7: 2.365, 9: 2.262, 14: 2.145, 29: 2.045, 120: 1.980}


@pytest.mark.parametrize("df", sorted(TABLE_975))
def test_t_quantile_matches_the_printed_table(df):
    assert stats.t_quantile(0.975, df) == pytest.approx(TABLE_975[df], abs=5e-4)


def test_t_quantile_inverts_the_cdf_and_tends_to_the_normal():
    for df in (1, 2.5, 7, 40):
        for p in (0.6, 0.9, 0.995):
            q = stats.t_quantile(p, df)
            assert stats.t_cdf(q, df) == pytest.approx(p, abs=1e-10)
            assert stats.t_quantile(1 - p, df) == pytest.approx(-q, rel=1e-9)
    assert stats.t_quantile(0.5, 3) == 0.0
    normal = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(0.975, dtype=torch.float64)).item()
    assert stats.t_quantile(0.975, 1e6) == pytest.approx(normal, abs=1e-5)


def test_t_cdf_agrees_with_numerical_integration_of_the_density():
    df = 3.0
    x = np.linspace(-60, 1.3, 400_001)
    norm = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    dens = norm * (1 + x**2 / df) ** (-(df + 1) / 2)
    integral = np.trapezoid(dens, x) + stats.t_cdf(-60, df)   # the tail below -60 from the cdf itself (~1e-5)
    assert stats.t_cdf(1.3, df) == pytest.approx(integral, abs=1e-6)


@pytest.mark.parametrize("bad", [dict(p=0.0, df=3), dict(p=1.0, df=3), dict(p=0.9, df=0), dict(p=float("nan"), df=2)])
def test_t_quantile_refuses_impossible_arguments(bad):
    with pytest.raises(ValueError):
        stats.t_quantile(**bad)


def test_mean_interval_is_mean_plus_minus_t_sem():
    values = [0.31, 0.29, 0.35, 0.30, 0.33]
    iv = stats.mean_interval(values)
    sem = np.std(values, ddof=1) / math.sqrt(5)
    assert iv.mean == pytest.approx(np.mean(values))
    assert iv.high - iv.mean == pytest.approx(2.7764451 * sem, rel=1e-6)
    assert iv.mean - iv.low == pytest.approx(iv.high - iv.mean)
    assert iv.n == 5 and iv.excludes_zero   # 0.3 +- 0.03 lies above 0
    assert "95% t interval, n=5" in str(iv)
    wide = stats.mean_interval(values, confidence=0.99)
    assert wide.low < iv.low and wide.high > iv.high


def test_mean_interval_needs_two_finite_values():
    with pytest.raises(ValueError, match="at least 2 values"):
        stats.mean_interval([0.3])
    with pytest.raises(ValueError, match="finite"):
        stats.mean_interval([0.3, float("nan")])


def test_paired_interval_pairs_by_seed_and_is_narrower_than_unpaired():
    g = torch.Generator().manual_seed(0)
    luck = {s: 0.05 * float(torch.randn(1, generator=g)) for s in range(8)}   # what a seed gives both runs
    a = {s: 0.30 + luck[s] + 0.002 * float(torch.randn(1, generator=g)) for s in range(8)}
    b = {s: 0.31 + luck[s] + 0.002 * float(torch.randn(1, generator=g)) for s in reversed(range(8))}
    iv = stats.paired_interval(a, b)
    d = [a[s] - b[s] for s in range(8)]
    assert iv.mean == pytest.approx(np.mean(d))
    assert iv.excludes_zero and iv.high < 0
    unpaired = stats.t_quantile(0.975, 7) * math.sqrt(np.var(list(a.values()), ddof=1) / 8
                                                      + np.var(list(b.values()), ddof=1) / 8)
    assert iv.half_width < unpaired / 5


def test_paired_interval_refuses_unpaired_input():
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_interval({0: 1.0, 1: 2.0}, {0: 1.0, 2: 2.0})
    with pytest.raises(ValueError, match="dicts"):
        stats.paired_interval([1.0, 2.0], [1.0, 2.0])


def test_log_cell_widths():
    assert stats.log_cell_widths(np.logspace(-2, 1, 13)) == pytest.approx([0.25] * 13)
    assert stats.log_cell_widths([0.1, 1.0, 100.0]) == pytest.approx([1.0, 1.5, 2.0])
    with pytest.raises(ValueError, match="increasing"):
        stats.log_cell_widths([1.0, 0.1])


def test_basin_widths_count_the_good_lrs_against_each_seeds_best_run():
    lrs = [0.01, 0.1, 1.0, 10.0]   # one decade per point
    losses = {  # strategy -> per LR, for seed 0; seed 1 is the same plus 0.01
        "wide": [0.50, 0.300, 0.310, 0.40],
        "narrow": [0.60, 0.320, 0.330, float("nan")],
    }
    rows = [{"strategy": s, "lr": lr, "seed": seed, "final_val_loss": v + 0.01 * seed}
            for s, vs in losses.items() for lr, v in zip(lrs, vs, strict=True) for seed in (0, 1)]
    w = stats.basin_widths(rows, tol=0.05)
    assert w["wide"] == {0: pytest.approx(2.0), 1: pytest.approx(2.0)}       # 0.300 and 0.310 are within 5 % of 0.300
    assert w["narrow"][0] == pytest.approx(0.0)                             # 0.320 > 1.05 x 0.300 = 0.315
    assert stats.basin_widths(rows, tol=0.10)["narrow"][0] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="key 'final_test_loss'"):
        stats.basin_widths(rows, metric="final_test_loss")


def test_t_half_width_is_the_interval_of_mean_interval_and_passes_nan_through():
    values = [0.2, 0.25, 0.31, 0.22]
    assert stats.t_half_width(np.std(values, ddof=1), 4) == pytest.approx(stats.mean_interval(values).half_width)
    assert math.isnan(stats.t_half_width(float("nan"), 5))   # a group with a diverged run
    with pytest.raises(ValueError, match="n"):
        stats.t_half_width(0.1, 1)
