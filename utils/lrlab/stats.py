"""Small-sample statistics for comparing training runs over seeds.

A course run compares strategies over a handful of seeds (3 to 10), so a normal approximation
(mean +- 2 standard errors) is too narrow: with 5 seeds the 95 % quantile of Student's t with 4
degrees of freedom is 2.78, not 1.96. This module gives the t quantile (no SciPy needed), the
t-based interval of a mean, the **paired** interval of a difference over shared seeds, and the
width of the "good-LR basin" of a learning-rate sweep.

Paired, because in :func:`lrlab.sweep.run_sweep` a seed fixes both the initial weights and the data
order: strategy A and strategy B with seed 3 start from the same weights and see the same batches.
Much of what makes seed 3 lucky or unlucky is shared, and it cancels in the per-seed difference
``a[3] - b[3]``. The interval of the mean difference is then usually far narrower than the one that
treats the two groups as independent (Student 1908; any statistics text, e.g. Wasserman, *All of
Statistics*, ch. 10).

imports: args.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .args import check_int, check_real

__all__ = [
    "Interval",
    "basin_widths",
    "log_cell_widths",
    "mean_interval",
    "paired_interval",
    "t_cdf",
    "t_half_width",
    "t_quantile",
]


# --------------------------------------------------------------------------------------------- Student's t
def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    t = check_real(t, "t", finite=False)
    df = check_real(df, "df", low=0, low_open=True)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (``t_quantile(0.975, 4)`` = 2.776).

    For a two-sided interval at confidence ``c`` use ``p = 1 - (1 - c) / 2`` (0.975 for 95 %) and
    ``df = n - 1`` for a mean over ``n`` values. Accurate to about 1e-10 (bisection on :func:`t_cdf`).
    """
    p = check_real(p, "p", low=0, high=1, low_open=True, high_open=True)
    df = check_real(df, "df", low=0, low_open=True)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------------------------- intervals
@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided t interval: ``low <= mean <= high`` at ``confidence``, over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (the difference is not just seed noise)."""
        return self.low > 0 or self.high < 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def format(self, spec: str = ".2f") -> str:
        """``"7.37 [7.20, 7.54]"``: the mean and the interval, each formatted with ``spec``."""
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def __str__(self) -> str:
        return (
            f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}] "
            f"({self.confidence:.0%} t interval, n={self.n})"
        )


def _finite_values(values: Iterable[Any], name: str) -> list[float]:
    out = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numbers (one per seed), got {v!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"{name} must be finite numbers (a diverged run has no loss to average), got {x}")
        out.append(x)
    return out


def t_half_width(std: float, n: int, confidence: float = 0.95) -> float:
    """Half the width of the t interval of a mean of ``n`` values whose sample standard deviation is ``std``:
    ``t(1 - (1-c)/2, n-1) * std / sqrt(n)``. A NaN ``std`` (a group with a diverged run) gives NaN."""
    n = check_int(n, "n", low=2)
    confidence = check_real(confidence, "confidence", low=0, high=1, low_open=True, high_open=True)
    return t_quantile(1 - (1 - confidence) / 2, n - 1) * float(std) / math.sqrt(n)


def mean_interval(values: Iterable[Any], confidence: float = 0.95) -> Interval:
    """The mean of ``values`` with its t interval: mean +- t(1 - (1-c)/2, n-1) * std(ddof=1) / sqrt(n)."""
    confidence = check_real(confidence, "confidence", low=0, high=1, low_open=True, high_open=True)
    xs = _finite_values(values, "values")
    n = len(xs)
    if n < 2:
        raise ValueError(f"an interval needs at least 2 values (2 seeds), got {n}")
    mean = sum(xs) / n
    half = t_half_width(math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)), n, confidence)
    return Interval(mean, mean - half, mean + half, n, confidence)


def paired_interval(a: Mapping[Any, Any], b: Mapping[Any, Any], confidence: float = 0.95) -> Interval:
    """The t interval of the mean per-seed difference ``a[seed] - b[seed]``.

    ``a`` and ``b`` map a seed to a result (e.g. the final validation loss of two strategies); they
    must hold the same seeds, and the runs of one seed must share initial weights and data order.
    """
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise ValueError(
            "a and b must be dicts {seed: value}, so that each seed's two runs are paired; got "
            f"{type(a).__name__} and {type(b).__name__}"
        )
    if set(a) != set(b):
        raise ValueError(
            f"a and b must hold the same seeds to be paired; only in a: {sorted(set(a) - set(b), key=str)}, "
            f"only in b: {sorted(set(b) - set(a), key=str)}"
        )
    return mean_interval([float(a[s]) - float(b[s]) for s in a], confidence)


# --------------------------------------------------------------------------------------------- basin width
def log_cell_widths(lrs: Sequence[float]) -> list[float]:
    """The width, in decades (log10 units), of the cell around each LR of a sorted grid.

    A cell reaches halfway (in log10) to each neighbour; the first and last cells are as wide on
    their outer side as on their inner side. On a grid of ``np.logspace`` every cell is one step wide.
    """
    xs = [math.log10(check_real(lr, "every lr", low=0, low_open=True)) for lr in lrs]
    if len(xs) < 2 or any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
        raise ValueError(f"lrs must be at least 2 increasing values, got {list(lrs)}")
    gaps = [b - a for a, b in zip(xs, xs[1:], strict=False)]
    return [(gaps[0] if i == 0 else gaps[i - 1]) / 2 + (gaps[-1] if i == len(xs) - 1 else gaps[i]) / 2
            for i in range(len(xs))]


def basin_widths(
    rows: Iterable[Mapping[str, Any]], metric: str = "final_val_loss", tol: float = 0.05
) -> dict[str, dict[Any, float]]:
    """The width of each strategy's good-LR basin, per seed, in decades of LR.

    ``rows`` are a sweep's rows (``strategy``, ``lr``, ``seed`` and ``metric``; lower is better). For
    each seed the reference is the best ``metric`` that **any** strategy reached with that seed; an LR
    is *good* for a strategy when its run is within ``tol`` (relative) of that reference. The width is
    the total log10 width of the good LRs' grid cells (:func:`log_cell_widths`), so a strategy that is
    good at 4 of the grid's LRs, one third of a decade apart, has a basin 4/3 decades wide. A diverged
    run (NaN/inf) is never good. Returns ``{strategy: {seed: width}}``.
    """
    tol = check_real(tol, "tol", low=0)
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: pass a sweep's rows")
    for key in ("strategy", "lr", "seed", metric):
        if key not in rows[0]:
            raise ValueError(f"every row needs the key {key!r}; the keys are {sorted(rows[0])}")
    lrs = sorted({float(r["lr"]) for r in rows})
    cells = dict(zip(lrs, log_cell_widths(lrs), strict=True))
    value = {(r["strategy"], float(r["lr"]), r["seed"]): float(r[metric]) for r in rows}
    seeds = sorted({r["seed"] for r in rows}, key=str)
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    out: dict[str, dict[Any, float]] = {s: {} for s in strategies}
    for seed in seeds:
        finite = [v for (s, lr, sd), v in value.items() if sd == seed and math.isfinite(v)]
        if not finite:
            raise ValueError(f"every run of seed {seed} diverged: no reference to measure a basin against")
        ref = min(finite)
        for s in strategies:
            out[s][seed] = sum(
                cells[lr]
                for lr in lrs
                if math.isfinite(value.get((s, lr, seed), math.nan)) and value[(s, lr, seed)] <= ref * (1 + tol)
            )
    return out
