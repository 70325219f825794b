"""04_convergence: the reference passes, other correct answers pass, plausible mistakes lose points."""

import re

import pytest

from nbharness import (
    assert_caught,
    assert_full_marks,
    assert_no_stderr,
    assert_shortcut_caught,
    run_assignment,
)

A = "04_convergence"
POINTS = 24
# small sizes: every run still trains, on fewer epochs, seeds and LRs
SMALL = {"N_EPOCHS": 3, "N_SEEDS": 2, "STRATEGY_LRS": (0.3, 1.0), "NOISE_LRS": (0.1, 1.0), "RANGE_STEPS": 120}


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params=SMALL)
    assert_full_marks(report, POINTS)


CORRECT = {
    "oscillation": '''
def oscillation(values):
    arr = np.asarray(values, dtype=float)
    if arr.size < 3:
        return 0.0
    travel = np.abs(np.diff(arr)).sum()
    return 0.0 if travel == 0 else float(1 - abs(arr[-1] - arr[0]) / travel)
''',
    "classify_run": '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    arr = np.asarray(train_losses, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr > diverge_factor * initial_loss):
        return "diverged"
    if oscillation(arr) > bounce:
        return "bouncing"
    progress = (initial_loss - arr.min()) / initial_loss
    return "slow" if progress < slow_progress else "converging"
''',
    "smooth_losses": '''
def smooth_losses(losses, beta=0.9):
    losses = np.asarray(losses, dtype=float)
    n = np.arange(1, len(losses) + 1)
    weights = np.tril(float(beta) ** np.clip(n[:, None] - n[None, :], 0, None))
    raw = (1 - beta) * weights @ losses
    return raw / (1 - beta ** n)
''',
    "stop_index": '''
def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    smoothed = smooth_losses(losses, beta)
    best = None
    for i in range(len(losses)):
        if math.isnan(losses[i]) or math.isinf(losses[i]):
            return i
        if i < burn_in:
            continue
        best = smoothed[i] if best is None else min(best, smoothed[i])
        if smoothed[i] / best > stop_factor:
            return i
    return None
''',
    "plateau_start": '''
def plateau_start(values, patience=3, rel_tol=0.01):
    best_i = 0
    for i in range(1, len(values)):
        if values[i] < values[best_i] * (1 - rel_tol):
            best_i = i
        elif i - best_i >= patience:
            return best_i
    return None
''',
    "step_lrs": '''
def step_lrs(schedule, batch_size, budget_samples):
    lrs, seen = [], 0
    while seen < budget_samples:
        lrs.append(schedule(seen))
        seen += batch_size
    return lrs
''',
    "best_per_strategy": '''
def best_per_strategy(rows, metric="final_val_loss"):
    import statistics
    from collections import defaultdict
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["strategy"]][r["lr"]].append(r[metric])
    out = {}
    for strategy, per_lr in by.items():
        if min(len(v) for v in per_lr.values()) < 2:
            raise ValueError("need at least two seeds per setting")
        finite = [k for k in per_lr if math.isfinite(statistics.fmean(per_lr[k]))]
        lr = min(finite, key=lambda k: statistics.fmean(per_lr[k]))
        v = per_lr[lr]
        out[strategy] = dict(lr=lr, mean=statistics.fmean(v), std=statistics.stdev(v), n=len(v))
    return out
''',
    "paired_interval": '''
def paired_interval(a, b, confidence=0.95):
    import statistics
    if sorted(a) != sorted(b):
        raise ValueError("the two dicts must have the same seeds")
    if len(a) < 2:
        raise ValueError("need at least two seeds")
    diffs = [a[seed] - b[seed] for seed in sorted(a)]
    n = len(diffs)
    m = statistics.fmean(diffs)
    t = t_quantile((1 + confidence) / 2, n - 1)
    half = t * statistics.stdev(diffs) / n ** 0.5
    return (m, m - half, m + half)
''',
    "mc_too_high": 'ANSWER_TOO_HIGH = " c "',
    "mc_smoothing": 'ANSWER_SMOOTHING = "b"',
    "mc_budget": "ANSWER_BUDGET = 'b.'",
}


def test_differently_written_correct_answers_get_full_marks():
    report = run_assignment(A, replace=CORRECT, params=SMALL)
    assert_full_marks(report)


MISTAKES = {
    # -- oscillation
    "oscillation: total variation only": ("oscillation", '''
def oscillation(values):
    v = list(values)
    return sum(abs(b - a) for a, b in zip(v, v[1:])) if len(v) >= 3 else 0.0
'''),
    "oscillation: share of sign changes": ("oscillation", '''
def oscillation(values):
    d = np.sign(np.diff(np.asarray(values, dtype=float)))
    return float(np.mean(d[1:] != d[:-1])) if len(d) >= 2 else 0.0
'''),
    "oscillation: hard-coded visible expected values": ("oscillation", '''
def oscillation(values):
    v = [round(float(x), 3) for x in values]
    return {(0.5, 0.7, 0.5, 0.7, 0.5): 1.0, (1.0, 0.6, 0.7, 0.5): 0.2 / 0.7}.get(tuple(v), 0.0)
'''),
    # -- classify_run
    "classify: bouncing checked before diverged": ("classify_run", '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    losses = [float(x) for x in train_losses]
    if all(math.isfinite(x) for x in losses) and oscillation(losses) > bounce:
        return "bouncing"
    if any(not math.isfinite(x) or x > diverge_factor * initial_loss for x in losses):
        return "diverged"
    return "slow" if 1 - min(losses) / initial_loss < slow_progress else "converging"
'''),
    "classify: NaN not detected": ("classify_run", '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    losses = [float(x) for x in train_losses]
    if any(x > diverge_factor * initial_loss for x in losses):
        return "diverged"
    if oscillation(losses) > bounce:
        return "bouncing"
    return "slow" if 1 - min(losses) / initial_loss < slow_progress else "converging"
'''),
    "classify: progress from the final loss": ("classify_run", '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    losses = [float(x) for x in train_losses]
    if any(not math.isfinite(x) or x > diverge_factor * initial_loss for x in losses):
        return "diverged"
    if oscillation(losses) > bounce:
        return "bouncing"
    return "slow" if 1 - losses[-1] / initial_loss < slow_progress else "converging"
'''),
    "classify: progress against the first epoch": ("classify_run", '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    losses = [float(x) for x in train_losses]
    if any(not math.isfinite(x) or x > diverge_factor * initial_loss for x in losses):
        return "diverged"
    if oscillation(losses) > bounce:
        return "bouncing"
    return "slow" if 1 - min(losses) / losses[0] < slow_progress else "converging"
'''),
    "classify: thresholds fixed, keyword arguments ignored": ("classify_run", '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    losses = [float(x) for x in train_losses]
    if any(not math.isfinite(x) or x > 3.0 * initial_loss for x in losses):
        return "diverged"
    if oscillation(losses) > 0.25:
        return "bouncing"
    return "slow" if 1 - min(losses) / initial_loss < 0.3 else "converging"
'''),
    # -- smooth_losses
    "smoothing: no bias correction": ("smooth_losses", '''
def smooth_losses(losses, beta=0.9):
    out, avg = [], 0.0
    for loss in losses:
        avg = beta * avg + (1 - beta) * loss
        out.append(avg)
    return out
'''),
    "smoothing: average started at the first loss": ("smooth_losses", '''
def smooth_losses(losses, beta=0.9):
    out, avg = [], None
    for loss in losses:
        avg = loss if avg is None else beta * avg + (1 - beta) * loss
        out.append(avg)
    return out
'''),
    "smoothing: bias correction with the 0-based index": ("smooth_losses", '''
def smooth_losses(losses, beta=0.9):
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 2)))
    return out
'''),
    # -- stop_index
    "stopping on the raw loss": ("stop_index", '''
def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    best = math.inf
    for i, loss in enumerate(losses):
        if not math.isfinite(loss):
            return i
        if i >= burn_in:
            best = min(best, loss)
            if loss > stop_factor * best:
                return i
    return None
'''),
    "stopping: best tracked during the burn-in": ("stop_index", '''
def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    smoothed = smooth_losses(losses, beta)
    best = math.inf
    for i, (loss, s) in enumerate(zip(losses, smoothed)):
        if not math.isfinite(loss):
            return i
        best = min(best, s)
        if i >= burn_in and s > stop_factor * best:
            return i
    return None
'''),
    "stopping: NaN ignored": ("stop_index", '''
def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    smoothed = smooth_losses(losses, beta)
    best = math.inf
    for i, s in enumerate(smoothed):
        if i >= burn_in:
            best = min(best, s)
            if s > stop_factor * best:
                return i
    return None
'''),
    "stopping: compared with the first smoothed loss": ("stop_index", '''
def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    smoothed = smooth_losses(losses, beta)
    for i, (loss, s) in enumerate(zip(losses, smoothed)):
        if not math.isfinite(loss):
            return i
        if i >= burn_in and s > stop_factor * smoothed[burn_in]:
            return i
    return None
'''),
    # -- plateau_start
    "plateau: compares with the previous value": ("plateau_start", '''
def plateau_start(values, patience=3, rel_tol=0.01):
    waited, start = 0, 0
    for i in range(1, len(values)):
        if values[i] < values[i - 1] * (1 - rel_tol):
            waited, start = 0, i
        else:
            waited += 1
            if waited == patience:
                return start
    return None
'''),
    "plateau: absolute tolerance": ("plateau_start", '''
def plateau_start(values, patience=3, rel_tol=0.01):
    best, best_i, waited = values[0], 0, 0
    for i in range(1, len(values)):
        if values[i] < best - rel_tol:
            best, best_i, waited = values[i], i, 0
        else:
            waited += 1
            if waited == patience:
                return best_i
    return None
'''),
    "plateau: returns where the patience ran out": ("plateau_start", '''
def plateau_start(values, patience=3, rel_tol=0.01):
    best, waited = values[0], 0
    for i in range(1, len(values)):
        if values[i] < best * (1 - rel_tol):
            best, waited = values[i], 0
        else:
            waited += 1
            if waited == patience:
                return i
    return None
'''),
    # -- step_lrs
    "budgets in steps instead of samples": ("step_lrs", '''
def step_lrs(schedule, batch_size, budget_samples):
    n_steps = budget_samples // 32          # as many steps as the batch-32 run
    return [schedule(k * batch_size) for k in range(n_steps)]
'''),
    "schedule indexed by steps": ("step_lrs", '''
def step_lrs(schedule, batch_size, budget_samples):
    return [schedule(k) for k in range(math.ceil(budget_samples / batch_size))]
'''),
    "samples counted after the step": ("step_lrs", '''
def step_lrs(schedule, batch_size, budget_samples):
    return [schedule((k + 1) * batch_size) for k in range(math.ceil(budget_samples / batch_size))]
'''),
    "last partial batch dropped": ("step_lrs", '''
def step_lrs(schedule, batch_size, budget_samples):
    return [schedule(k * batch_size) for k in range(budget_samples // batch_size)]
'''),
    # -- best_per_strategy
    "comparing strategies on a single seed": ("best_per_strategy", '''
def best_per_strategy(rows, metric="final_val_loss"):
    seed = rows[0]["seed"]
    best = {}
    for r in rows:
        if r["seed"] != seed:
            continue
        same = [x[metric] for x in rows if x["strategy"] == r["strategy"] and x["lr"] == r["lr"]]
        if len(same) < 2:
            raise ValueError("one seed")
        if r["strategy"] not in best or r[metric] < best[r["strategy"]]["mean"]:
            best[r["strategy"]] = {"lr": r["lr"], "mean": r[metric], "std": float(np.std(same, ddof=1)),
                                   "n": len(same)}
    return best
'''),
    "best single run instead of the best mean": ("best_per_strategy", '''
def best_per_strategy(rows, metric="final_val_loss"):
    best = {}
    for r in rows:
        same = [x[metric] for x in rows if x["strategy"] == r["strategy"] and x["lr"] == r["lr"]]
        if len(same) < 2:
            raise ValueError("one seed")
        if r["strategy"] not in best or r[metric] < best[r["strategy"]]["best_run"]:
            best[r["strategy"]] = {"lr": r["lr"], "mean": float(np.mean(same)), "std": float(np.std(same, ddof=1)),
                                   "n": len(same), "best_run": r[metric]}
    return best
'''),
    "population std (ddof=0)": ("best_per_strategy", '''
def best_per_strategy(rows, metric="final_val_loss"):
    groups = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["lr"]), []).append(float(row[metric]))
    best = {}
    for (strategy, lr), values in groups.items():
        if len(values) < 2:
            raise ValueError("one seed")
        mean = float(np.mean(values))
        if strategy not in best or mean < best[strategy]["mean"]:
            best[strategy] = {"lr": lr, "mean": mean, "std": float(np.std(values)), "n": len(values)}
    return best
'''),
    "no error for a single seed": ("best_per_strategy", '''
def best_per_strategy(rows, metric="final_val_loss"):
    groups = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["lr"]), []).append(float(row[metric]))
    best = {}
    for (strategy, lr), values in groups.items():
        mean = float(np.mean(values))
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        if strategy not in best or mean < best[strategy]["mean"]:
            best[strategy] = {"lr": lr, "mean": mean, "std": std, "n": len(values)}
    return best
'''),
    "best LR: a NaN mean is not skipped": ("best_per_strategy", '''
def best_per_strategy(rows, metric="final_val_loss"):
    groups = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["lr"]), []).append(float(row[metric]))
    if min(len(v) for v in groups.values()) < 2:
        raise ValueError("one seed")
    best = {}
    for s in {k[0] for k in groups}:
        lr = min((k[1] for k in groups if k[0] == s), key=lambda lr: np.mean(groups[(s, lr)]))
        v = groups[(s, lr)]
        best[s] = {"lr": lr, "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)), "n": len(v)}
    return best
'''),
    # -- paired_interval
    "paired: normal quantile 1.96 instead of t": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    d = np.array([a[s] - b[s] for s in a])
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''),
    "paired: n degrees of freedom": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    d = np.array([a[s] - b[s] for s in a])
    half = t_quantile(1 - (1 - confidence) / 2, len(d)) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''),
    "paired: one-sided quantile": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    d = np.array([a[s] - b[s] for s in a])
    half = t_quantile(confidence, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''),
    "paired: the groups treated as independent": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    x, y = np.array([a[s] for s in a]), np.array([b[s] for s in a])
    n = len(x)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * math.sqrt(x.var(ddof=1) / n + y.var(ddof=1) / n)
    m = float(x.mean() - y.mean())
    return m, m - half, m + half
'''),
    "paired: population std (ddof=0)": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    d = np.array([a[s] - b[s] for s in a])
    half = t_quantile(1 - (1 - confidence) / 2, len(d) - 1) * d.std() / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''),
    "paired: paired by position, not by seed": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("bad seeds")
    d = np.array([x - y for x, y in zip(a.values(), b.values())])
    half = t_quantile(1 - (1 - confidence) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''),
    "paired: b minus a": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    d = np.array([b[s] - a[s] for s in a])
    half = t_quantile(1 - (1 - confidence) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''),
    "paired: confidence argument ignored": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    d = np.array([a[s] - b[s] for s in a])
    half = t_quantile(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''),
    # -- multiple choice
    "quiz: LR too high makes the loss fall smoothly": ("mc_too_high", 'ANSWER_TOO_HIGH = "A"'),
    "quiz: smoothing for speed": ("mc_smoothing", 'ANSWER_SMOOTHING = "A"'),
    "quiz: equal steps are fair": ("mc_budget", 'ANSWER_BUDGET = "A"'),
    "quiz: the batch-128 run needed a smaller LR (linear scaling says larger)": ("mc_budget", 'ANSWER_BUDGET = "D"'),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)


# ------------------------------------------------------------------ exercises 7 and 8: more idioms, shortcuts, warnings
OTHER_CORRECT = {
    "best LR with float32 torch tensors": ("best_per_strategy", '''
def best_per_strategy(rows, metric="final_val_loss"):
    keys = sorted({(r["strategy"], r["lr"]) for r in rows})
    vals = {k: torch.tensor([r[metric] for r in rows if (r["strategy"], r["lr"]) == k]) for k in keys}
    if any(len(v) < 2 for v in vals.values()):
        raise ValueError("at least two seeds per (strategy, lr)")
    out = {}
    for (s, lr), v in vals.items():
        m = v.mean()
        if torch.isfinite(m) and (s not in out or m.item() < out[s]["mean"]):
            out[s] = {"lr": lr, "mean": m.item(), "std": v.std().item(), "n": len(v)}
    return out
'''),
    "best LR via a dict of lists and sorted means": ("best_per_strategy", '''
def best_per_strategy(rows, metric="final_val_loss"):
    from collections import defaultdict
    groups = defaultdict(list)
    for r in rows:
        groups[r["strategy"], r["lr"]].append(r[metric])
    if any(len(v) < 2 for v in groups.values()):
        raise ValueError("need two seeds")
    ranked = sorted((np.mean(v), s, lr) for (s, lr), v in groups.items() if np.isfinite(np.mean(v)))
    out = {}
    for mean, s, lr in ranked:
        if s not in out:
            v = groups[s, lr]
            out[s] = {"lr": lr, "mean": mean, "std": np.std(v, ddof=1), "n": len(v)}
    return out
'''),
    "paired with float32 torch": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    if a.keys() != b.keys():
        raise ValueError("a and b need the same seeds")
    if len(a) < 2:
        raise ValueError("two seeds at least")
    d = torch.tensor([a[k] for k in a]) - torch.tensor([b[k] for k in a])
    half = t_quantile(0.5 + confidence / 2, len(d) - 1) * d.std() / len(d) ** 0.5
    return d.mean().item(), (d.mean() - half).item(), (d.mean() + half).item()
'''),
    "paired with a Python loop and numpy floats": ("paired_interval", '''
def paired_interval(a, b, confidence=0.95):
    seeds = list(a)
    if len(seeds) < 2 or set(seeds) != set(b):
        raise ValueError("same seeds, at least two")
    diffs = []
    for s in seeds:
        diffs.append(a[s] - b[s])
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((x - mean) ** 2 for x in diffs) / (n - 1)
    half = t_quantile(1 - (1 - confidence) / 2, n - 1) * np.sqrt(var / n)
    return np.float64(mean), np.float64(mean - half), np.float64(mean + half)
'''),
}


@pytest.mark.parametrize("variant", sorted(OTHER_CORRECT))
def test_other_correct_answers_of_the_comparison_exercises_get_full_marks(variant):
    grade_id, src = OTHER_CORRECT[variant]
    report = run_assignment(A, replace={grade_id: src}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_full_marks(report)


SHORTCUTS = {
    "paired_interval": '''
from lrlab import stats as S

def paired_interval(a, b, confidence=0.95):
    iv = S.paired_interval(a, b, confidence)
    return iv.mean, iv.low, iv.high
''',
    "best_per_strategy": '''
import importlib

def _summary(rows, metric):
    sweep = importlib.import_module("lrlab.sweep")
    return sweep.SweepResult(list(rows), [None] * len(rows)).summary([metric])

def best_per_strategy(rows, metric="final_val_loss"):
    out = {}
    for s in _summary(rows, metric):
        if s["n"] < 2:
            raise ValueError("one seed")
        m = s[f"{metric}_mean"]
        if s["strategy"] not in out or m < out[s["strategy"]]["mean"]:
            out[s["strategy"]] = {"lr": s["lr"], "mean": m, "std": s[f"{metric}_std"], "n": s["n"]}
    return out
''',
}


@pytest.mark.parametrize("grade_id", sorted(SHORTCUTS))
def test_a_shortcut_into_lrlab_scores_zero_and_says_write_it_yourself(grade_id):
    report = run_assignment(A, replace={grade_id: SHORTCUTS[grade_id]}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_shortcut_caught(report, grade_id, grade_id)


def test_an_honest_warning_keeps_full_marks():
    src = '''
import warnings

def paired_interval(a, b, confidence=0.95):
    if set(a) != set(b) or len(a) < 2:
        raise ValueError("bad seeds")
    warnings.warn("few seeds: the interval is wide", UserWarning)
    d = np.array([a[s] - b[s] for s in a])
    half = t_quantile(1 - (1 - confidence) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
'''
    report = run_assignment(A, replace={"paired_interval": src}, params=SMALL, stop_after="paired_interval_tests")
    assert_full_marks(report)
    assert_no_stderr(report)


# ------------------------------------------------------------------ the test split is read once, at the end
def test_only_the_last_code_cell_opens_the_test_split():
    from nbharness import source_notebook

    code = [c for c in source_notebook(A).cells if c.cell_type == "code"]
    opening = [i for i, c in enumerate(code) if "open_test(" in c.source]
    assert opening == [len(code) - 1], opening
    assert "sealed=True" in code[1].source, code[1].source   # the setup cell loads the task sealed


def test_reading_the_test_split_before_the_end_raises_a_clear_error():
    peek = '''
def paired_interval(a, b, confidence=0.95):
    raise NotImplementedError()

print(task.X_test.shape)   # a learner who peeks at the test split while choosing
'''
    report = run_assignment(A, replace={"paired_interval": peek}, params=SMALL, stop_after="paired_interval")
    err = report.errors["paired_interval"]
    assert "SealedTestSet" in err and "validation split" in err and "open_test()" in err, err


# ------------------------------------------------------------------ what the text says is what the run prints
@pytest.fixture(scope="module")
def full_run():
    return run_assignment(A)   # the default parameters: 8 seeds, the quarter-decade grid, batch 4 for the floor


def _printed(report, grade_id):
    return "".join(o.get("text", "") for o in report.outputs[grade_id] if o.get("output_type") == "stream")


_IV = r"([+-][\d.]+) \[([+-][\d.]+), ([+-][\d.]+)\]"


def test_the_printed_results_back_the_text(full_run):
    assert_full_marks(full_run, POINTS)
    decision = _printed(full_run, "code_038")
    low, high = map(float, re.search(r"paired over seeds: " + _IV, decision).groups()[1:])
    assert low < 0 < high, decision                                    # "at their own best LR the strategies tie"
    unpaired, paired = map(float, re.search(r"be ± ([\d.]+) wide instead of ± ([\d.]+)", decision).groups())
    assert paired < unpaired / 2, decision                             # "far narrower than the unpaired one"

    basin = _printed(full_run, "code_basin")
    diffs = [tuple(map(float, m)) for m in re.findall(r"(?:step|cosine|wsd|one-cycle)\s+" + _IV, basin.split(
        "paired over seeds")[1])]
    assert len(diffs) == 4 and all(d[0] > 0 for d in diffs), basin    # "on average wider, by a fraction of a decade"
    assert all(d[0] < 1 for d in diffs), basin
    assert sum(d[1] < 0 < d[2] for d in diffs) >= 3, basin    # "for most of them the interval contains 0"

    noise = _printed(full_run, "code_noise")
    train = tuple(map(float, re.search(r"final_train_loss:.*\n.*paired over \d+ seeds: " + _IV, noise).groups()))
    val = tuple(map(float, re.search(r"final_val_loss:.*\n.*paired over \d+ seeds: " + _IV, noise).groups()))
    assert train[2] < 0, noise            # cosine sinks below the constant LR's floor, beyond the seed noise
    assert val[2] > 0, noise              # ... and is not better on validation ("as good or better")
    const_top, cos_top = map(float, re.search(r"validation loss constant ([\d.]+), cosine ([\d.]+)", noise).groups())
    assert cos_top < const_top - 0.05, noise   # "at a high peak LR cosine is still far better on validation"

    final = _printed(full_run, "code_final")
    assert "chosen on validation" in final and "test loss" in final, final


# ------------------------------------------------------------------ exercises 1-6: two more idioms each, all at once
CORRECT_B = {
    "oscillation": '''
def oscillation(values):
    t = torch.as_tensor(list(values), dtype=torch.float32)
    if len(t) < 3:
        return 0.0
    tv = t.diff().abs().sum()
    return 0.0 if tv == 0 else ((tv - (t[-1] - t[0]).abs()) / tv).item()
''',
    "classify_run": '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    losses = list(map(float, train_losses))
    for x in losses:
        if math.isnan(x) or math.isinf(x) or x > diverge_factor * initial_loss:
            return "diverged"
    if oscillation(losses) > bounce:
        return "bouncing"
    if min(losses) / initial_loss > 1 - slow_progress:
        return "slow"
    return "converging"
''',
    "smooth_losses": '''
def smooth_losses(losses, beta=0.9):
    avg, out = torch.tensor(0.0, dtype=torch.float64), []
    for n, x in enumerate(losses):
        avg = beta * avg + (1 - beta) * x
        out.append(float(avg / (1 - beta ** (n + 1))))
    return out
''',
    "stop_index": '''
def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    smooth = np.asarray(smooth_losses(losses, beta), dtype=np.float32)
    raw = np.asarray(losses, dtype=float)
    best = None
    for i in range(len(raw)):
        if not np.isfinite(raw[i]):
            return i
        if i < burn_in:
            continue
        best = smooth[i] if best is None else min(best, smooth[i])
        if smooth[i] > stop_factor * best:
            return i
    return None
''',
    "plateau_start": '''
def plateau_start(values, patience=3, rel_tol=0.01):
    values = np.asarray(values, dtype=np.float32)
    best, best_i, bad = values[0], 0, 0
    for i, v in enumerate(values[1:], start=1):
        if v < best * (1 - rel_tol):
            best, best_i, bad = v, i, 0
            continue
        bad += 1
        if bad >= patience:
            return best_i
    return None
''',
    "step_lrs": '''
def step_lrs(schedule, batch_size, budget_samples):
    starts = range(0, budget_samples, batch_size)   # samples seen before each step
    return list(map(schedule, starts))
''',
    "mc_too_high": 'ANSWER_TOO_HIGH = "C."',
    "mc_smoothing": 'ANSWER_SMOOTHING = " B "',
    "mc_budget": 'ANSWER_BUDGET = "b"',
}

CORRECT_C = {
    "oscillation": '''
def oscillation(values):
    v = list(values)
    if len(v) < 3:
        return 0.0
    steps = [abs(b - a) for a, b in zip(v, v[1:])]
    travel = math.fsum(steps)
    if travel == 0:
        return 0.0
    return (travel - abs(v[-1] - v[0])) / travel
''',
    "classify_run": '''
def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    t = torch.tensor([float(x) for x in train_losses], dtype=torch.float64)
    if not torch.isfinite(t).all() or (t > diverge_factor * initial_loss).any():
        return "diverged"
    if oscillation(t.tolist()) > bounce:
        return "bouncing"
    return "slow" if 1 - t.min().item() / initial_loss < slow_progress else "converging"
''',
    "smooth_losses": '''
def smooth_losses(losses, beta=0.9):
    x = np.asarray(losses, dtype=np.float64)
    out = np.empty_like(x)
    a = 0.0
    for i in range(len(x)):
        a = beta * a + (1 - beta) * x[i]
        out[i] = a / (1 - beta ** (i + 1))
    return out
''',
    "stop_index": '''
def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    s = smooth_losses(losses, beta)
    for i, raw in enumerate(losses):
        if raw != raw or raw in (float("inf"), float("-inf")):
            return i
        if i >= burn_in and s[i] > stop_factor * min(s[burn_in:i + 1]):
            return i
    return None
''',
    "plateau_start": '''
def plateau_start(values, patience=3, rel_tol=0.01):
    best_i = 0
    since = 0
    for i in range(1, len(values)):
        if values[i] < (1 - rel_tol) * values[best_i]:
            best_i, since = i, 0
        else:
            since += 1
        if since == patience:
            return best_i
    return None
''',
    "step_lrs": '''
def step_lrs(schedule, batch_size, budget_samples):
    n = -(-budget_samples // batch_size)
    return [float(schedule(k * batch_size)) for k in np.arange(n).tolist()]
''',
    "mc_too_high": "ANSWER_TOO_HIGH = 'c'",
    "mc_smoothing": 'ANSWER_SMOOTHING = "b."',
    "mc_budget": 'ANSWER_BUDGET = " B."',
}


@pytest.mark.parametrize("variants", ["B", "C"])
def test_two_more_idioms_for_every_exercise_of_parts_1_to_3_get_full_marks(variants):
    replace = CORRECT_B if variants == "B" else CORRECT_C
    report = run_assignment(A, replace=replace, params=SMALL, stop_after="step_lrs_tests")
    assert_full_marks(report)
    report = run_assignment(A, replace={k: v for k, v in replace.items() if k.startswith("mc_")}, params=SMALL)
    assert_full_marks(report, POINTS)


SHORTCUTS_1_TO_6 = {
    "oscillation": '''
from lrlab import metrics as _m

def oscillation(values):
    return _m.oscillation(list(values))
''',
    "classify_run": '''
import lrlab.metrics as LM

def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    epochs = [{"epoch": i + 1, "train_loss": x} for i, x in enumerate(train_losses)]
    return LM.classify(epochs)
''',
    "smooth_losses": '''
import importlib

def smooth_losses(losses, beta=0.9):
    return list(importlib.import_module("lrlab.lr_finder").smooth_losses(losses, beta))
''',
    "stop_index": '''
def _course(losses, beta, stop_factor, burn_in):
    from lrlab.lr_finder import stop_index as course_stop
    return course_stop(losses, beta, stop_factor, burn_in)

def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    return _course(losses, beta, stop_factor, burn_in)
''',
    "plateau_start": '''
plateau_start = lambda values, patience=3, rel_tol=0.01: lrlab.metrics.detect_plateau(
    values, patience=patience, rel_tol=rel_tol)
''',
    "step_lrs": '''
from lrlab.schedules import samples_to_steps as n_steps

def step_lrs(schedule, batch_size, budget_samples):
    return [schedule(k * batch_size) for k in range(n_steps(budget_samples, batch_size))]
''',
}


@pytest.mark.parametrize("grade_id", sorted(SHORTCUTS_1_TO_6))
def test_shortcuts_in_parts_1_to_4_score_zero_and_say_write_it_yourself(grade_id):
    report = run_assignment(A, replace={grade_id: SHORTCUTS_1_TO_6[grade_id]}, params=SMALL,
                            stop_after=f"{grade_id}_tests")
    assert_shortcut_caught(report, grade_id, grade_id)


def test_warnings_in_parts_1_to_4_keep_full_marks():
    noisy = {
        "oscillation": '''
import warnings

def oscillation(values):
    v = np.asarray(values, dtype=float)
    if len(v) < 3:
        return 0.0
    with np.errstate(all="warn"):
        tv = np.abs(np.diff(v)).sum()
    warnings.warn("measuring the bounce", RuntimeWarning)
    return 0.0 if tv == 0 else float((tv - abs(v[-1] - v[0])) / tv)
''',
        "smooth_losses": '''
import sys

def smooth_losses(losses, beta=0.9):
    print("smoothing", len(losses), "losses", file=sys.stderr)
    out, a = [], 0.0
    for n, x in enumerate(losses, 1):
        a = beta * a + (1 - beta) * float(x)
        out.append(a / (1 - beta ** n))
    return out
''',
    }
    report = run_assignment(A, replace=noisy, params=SMALL, stop_after="smooth_losses_tests")
    assert_full_marks(report)
    assert_no_stderr(report)


def test_warnings_in_the_other_exercises_keep_full_marks():
    noisy = {
        "classify_run": '''
import warnings

def classify_run(train_losses, initial_loss, diverge_factor=3.0, bounce=0.25, slow_progress=0.3):
    losses = [float(x) for x in train_losses]
    if any(not math.isfinite(x) or x > diverge_factor * initial_loss for x in losses):
        warnings.warn("this run diverged", RuntimeWarning)
        return "diverged"
    if oscillation(losses) > bounce:
        return "bouncing"
    return "slow" if 1 - min(losses) / initial_loss < slow_progress else "converging"
''',
        "stop_index": '''
import warnings

def stop_index(losses, beta=0.9, stop_factor=4.0, burn_in=10):
    smoothed, best = smooth_losses(losses, beta), math.inf
    for i, (loss, s) in enumerate(zip(losses, smoothed)):
        if not math.isfinite(loss):
            warnings.warn(f"non-finite loss at step {i}", UserWarning)
            return i
        if i >= burn_in:
            best = min(best, s)
            if s > stop_factor * best:
                return i
    return None
''',
        "plateau_start": '''
import numpy as np

def plateau_start(values, patience=3, rel_tol=0.01):
    v = np.asarray(values, dtype=float)
    np.log(np.zeros(1))   # a RuntimeWarning from numpy, as honest code sometimes triggers
    best, best_i, waited = v[0], 0, 0
    for i in range(1, len(v)):
        if v[i] < best * (1 - rel_tol):
            best, best_i, waited = v[i], i, 0
        else:
            waited += 1
            if waited == patience:
                return best_i
    return None
''',
        "step_lrs": '''
import warnings

def step_lrs(schedule, batch_size, budget_samples):
    n = math.ceil(budget_samples / batch_size)
    if budget_samples % batch_size:
        warnings.warn("the last batch is cut short", UserWarning)
    return [schedule(k * batch_size) for k in range(n)]
''',
        "best_per_strategy": '''
import warnings

def best_per_strategy(rows, metric="final_val_loss"):
    groups = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["lr"]), []).append(float(row[metric]))
    best = {}
    for (strategy, lr), values in groups.items():
        if len(values) < 2:
            raise ValueError("one seed")
        mean = float(np.mean(values))
        if not math.isfinite(mean):
            warnings.warn(f"{strategy} at lr {lr} diverged in some seed", RuntimeWarning)
            continue
        if strategy not in best or mean < best[strategy]["mean"]:
            best[strategy] = {"lr": lr, "mean": mean, "std": float(np.std(values, ddof=1)), "n": len(values)}
    return best
''',
        "mc_too_high": 'import warnings\nwarnings.warn("second thoughts", UserWarning)\nANSWER_TOO_HIGH = "C"',
    }
    report = run_assignment(A, replace=noisy, params=SMALL)
    assert_full_marks(report, POINTS)
    assert_no_stderr(report)
