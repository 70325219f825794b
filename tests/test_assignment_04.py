"""04_convergence: the reference passes, other correct answers pass, plausible mistakes lose points."""

import pytest

from nbharness import assert_caught, assert_full_marks, run_assignment

A = "04_convergence"
# small sizes: every run still trains, on fewer epochs, seeds and LRs
SMALL = {"N_EPOCHS": 3, "N_SEEDS": 2, "STRATEGY_LRS": (0.3, 1.0), "RANGE_STEPS": 120}


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params=SMALL)
    assert_full_marks(report, 23)


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
def best_per_strategy(rows, metric="final_test_loss"):
    import statistics
    from collections import defaultdict
    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by[r["strategy"]][r["lr"]].append(r[metric])
    out = {}
    for strategy, per_lr in by.items():
        if min(len(v) for v in per_lr.values()) < 2:
            raise ValueError("need at least two seeds per setting")
        lr = min(per_lr, key=lambda k: statistics.fmean(per_lr[k]))
        v = per_lr[lr]
        out[strategy] = dict(lr=lr, mean=statistics.fmean(v), std=statistics.stdev(v), n=len(v))
    return out
''',
    "pick_winner": '''
def pick_winner(best, z=2.0):
    (a, sa), (b, sb) = sorted(best.items(), key=lambda kv: kv[1]["mean"])[:2]
    gap = sb["mean"] - sa["mean"]
    se2 = sa["std"] ** 2 / sa["n"] + sb["std"] ** 2 / sb["n"]
    return a if gap > z * se2 ** 0.5 else "tie"
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
def best_per_strategy(rows, metric="final_test_loss"):
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
def best_per_strategy(rows, metric="final_test_loss"):
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
def best_per_strategy(rows, metric="final_test_loss"):
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
def best_per_strategy(rows, metric="final_test_loss"):
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
    # -- pick_winner
    "winner: std instead of standard error": ("pick_winner", '''
def pick_winner(best, z=2.0):
    ranked = sorted(best, key=lambda s: best[s]["mean"])
    lead, second = best[ranked[0]], best[ranked[1]]
    spread = math.sqrt(lead["std"] ** 2 + second["std"] ** 2)
    return ranked[0] if second["mean"] - lead["mean"] > z * spread else "tie"
'''),
    "winner: compared with the last strategy": ("pick_winner", '''
def pick_winner(best, z=2.0):
    ranked = sorted(best, key=lambda s: best[s]["mean"])
    lead, last = best[ranked[0]], best[ranked[-1]]
    se = math.sqrt(lead["std"] ** 2 / lead["n"] + last["std"] ** 2 / last["n"])
    return ranked[0] if last["mean"] - lead["mean"] > z * se else "tie"
'''),
    "winner: lowest mean, no error bars": ("pick_winner", '''
def pick_winner(best, z=2.0):
    return min(best, key=lambda s: best[s]["mean"])
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
