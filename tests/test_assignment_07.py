"""07_optimizers_batch_size: the reference passes, other correct answers pass, plausible mistakes lose points,
shortcuts into lrlab (and torch.optim for AdamW) score 0 with the "write it yourself" message, and honest warnings
cost nothing."""

import pytest

from nbharness import assert_caught, assert_full_marks, assert_no_stderr, assert_shortcut_caught, run_assignment

A = "07_optimizers_batch_size"
POINTS = 25  # + 4 points graded by hand
# the demo runs shrink (2 seeds, 2 epochs, short range tests); every demo cell still runs, the graded cells
# are unchanged
SMALL = {"N_SEEDS": 2, "EPOCHS": 2, "RANGE_STEPS": 40}
EXERCISES = ("adamw_update", "scaled_lr", "scaling_exponent", "fit_critical_batch", "noise_scale_from_norms")


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params=SMALL)
    assert_full_marks(report, POINTS)
    assert_no_stderr(report)


# ------------------------------------------------------------------ correct answers in other idioms
# Each dict is one learner's notebook: one more correct reading of every exercise, run together.
CORRECT = [
    {   # torch, written as torch.optim.AdamW computes it; plain Python; numpy helpers
        "adamw_update": '''
def adamw_update(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    beta1, beta2 = betas
    bias1 = 1 - beta1 ** step
    bias2 = 1 - beta2 ** step
    new_param = param * (1 - lr * weight_decay)
    new_m = torch.lerp(grad, m, beta1)            # beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad.square()
    denom = new_v.sqrt() / math.sqrt(bias2) + eps
    new_param = new_param - (lr / bias1) * new_m / denom
    return new_param, new_m, new_v
''',
        "scaled_lr": '''
def scaled_lr(base_lr, base_batch, batch, rule="linear"):
    rules = {"linear": lambda r: r, "sqrt": math.sqrt}
    if rule not in rules:
        raise ValueError(f"unknown rule {rule!r}: use one of {sorted(rules)}")
    return base_lr * rules[rule](batch / base_batch)
''',
        "scaling_exponent": '''
def scaling_exponent(batch_sizes, lrs):
    slope, _ = np.polyfit(np.log(np.asarray(batch_sizes, dtype=float)), np.log(np.asarray(lrs, dtype=float)), 1)
    return float(slope)
''',
        "fit_critical_batch": '''
def fit_critical_batch(batch_sizes, steps):
    B = np.asarray(batch_sizes, dtype=np.float64)
    S = np.asarray(steps, dtype=np.float64)
    if np.unique(B).size < 2:
        raise ValueError("fit_critical_batch needs at least two different batch sizes")
    slope, intercept = np.polyfit(1.0 / B, S, 1)
    return float(intercept), float(slope / intercept)
''',
        "noise_scale_from_norms": '''
def noise_scale_from_norms(sq, total):
    n = len(sq)
    mean = total.double() / n
    mean_sq = float(torch.dot(mean, mean))
    trace = (float(sq.double().sum()) - n * mean_sq) / (n - 1)
    g2 = mean_sq - trace / n
    b_simple = trace / g2 if g2 > 0 else float("inf")
    return trace, b_simple
''',
    },
    {   # in place on copies; dict dispatch with str methods; torch least squares; plain Python loops
        "adamw_update": '''
def adamw_update(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    b1, b2 = betas
    p = param.clone()
    m = m.clone()
    v = v.clone()
    p.mul_(1 - lr * weight_decay)
    m.mul_(b1).add_(grad, alpha=1 - b1)
    v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
    m_hat = m / (1 - b1 ** step)
    v_hat = v / (1 - b2 ** step)
    p.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)
    return p, m, v
''',
        "scaled_lr": '''
def scaled_lr(base_lr, base_batch, batch, rule="linear"):
    if rule == "sqrt":
        return base_lr * (batch / base_batch) ** 0.5
    elif rule == "linear":
        return base_lr * batch / base_batch
    else:
        raise ValueError("rule must be 'linear' or 'sqrt'")
''',
        "scaling_exponent": '''
def scaling_exponent(batch_sizes, lrs):
    x = [math.log(float(b)) for b in batch_sizes]
    y = [math.log(float(r)) for r in lrs]
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    return sxy / sxx
''',
        "fit_critical_batch": '''
def fit_critical_batch(batch_sizes, steps):
    xs = [1 / float(b) for b in batch_sizes]
    ys = [float(s) for s in steps]
    if len(set(xs)) < 2:
        raise ValueError("one batch size gives no line")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    s_min = my - slope * mx
    b_noise = slope / s_min
    return s_min, b_noise
''',
        "noise_scale_from_norms": '''
def noise_scale_from_norms(sq, total):
    n = sq.numel()
    sum_sq = 0.0
    for value in sq.tolist():
        sum_sq += value
    mean_norm2 = 0.0
    for value in total.tolist():
        mean_norm2 += (value / n) ** 2
    trace = (sum_sq - n * mean_norm2) / (n - 1)
    g2 = mean_norm2 - trace / n
    if g2 <= 0:
        return trace, math.inf
    return trace, trace / g2
''',
    },
    {   # numpy throughout; log10 (the slope does not care which log); lstsq; float64 tensors
        "adamw_update": '''
def adamw_update(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    b1, b2 = betas
    p_, g_, m_, v_ = (t.detach().cpu().numpy() for t in (param, grad, m, v))
    p_ = p_ - lr * weight_decay * p_
    m_ = b1 * m_ + (1 - b1) * g_
    v_ = b2 * v_ + (1 - b2) * g_ ** 2
    p_ = p_ - lr * (m_ / (1 - b1 ** step)) / (np.sqrt(v_ / (1 - b2 ** step)) + eps)
    return tuple(torch.from_numpy(np.asarray(a, dtype=p_.dtype)) for a in (p_, m_, v_))
''',
        "scaled_lr": '''
def scaled_lr(base_lr, base_batch, batch, rule="linear"):
    match rule:
        case "linear":
            factor = batch / base_batch
        case "sqrt":
            factor = np.sqrt(batch / base_batch)
        case _:
            raise ValueError(f"rule {rule!r} is not 'linear' or 'sqrt'")
    return float(base_lr * factor)
''',
        "scaling_exponent": '''
def scaling_exponent(batch_sizes, lrs):
    x = np.log10(np.array([float(b) for b in batch_sizes]))
    y = np.log10(np.array([float(r) for r in lrs]))
    A = np.stack([x, np.ones_like(x)], axis=1)
    (k, _), *_ = np.linalg.lstsq(A, y, rcond=None)
    return float(k)
''',
        "fit_critical_batch": '''
def fit_critical_batch(batch_sizes, steps):
    B = torch.as_tensor(np.asarray(batch_sizes, dtype=float), dtype=torch.float64)
    S = torch.as_tensor(np.asarray(steps, dtype=float), dtype=torch.float64)
    if torch.unique(B).numel() < 2:
        raise ValueError(f"need two different batch sizes, got {B.tolist()}")
    X = torch.stack([torch.ones_like(B), 1 / B], dim=1)
    coef = torch.linalg.lstsq(X, S[:, None]).solution[:, 0]
    s_min, slope = coef.tolist()
    return s_min, slope / s_min
''',
        "noise_scale_from_norms": '''
def noise_scale_from_norms(sq, total):
    sq_ = sq.detach().cpu().numpy().astype(np.float64)
    tot = total.detach().cpu().numpy().astype(np.float64)
    n = sq_.shape[0]
    gbar2 = np.sum((tot / n) ** 2)
    trace = (sq_.sum() - n * gbar2) / (n - 1)
    g2 = gbar2 - trace / n
    return float(trace), float(trace / g2) if g2 > 0 else math.inf
''',
    },
    {   # float32 where the text fixes no dtype (torch's default for lists of floats); an element-wise Python loop;
        # a rule matched whatever its case; |total|^2 / n instead of n |mean|^2
        "adamw_update": '''
def adamw_update(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    b1, b2 = betas
    out_p, out_m, out_v = [], [], []
    for w, g, mi, vi in zip(param.flatten().tolist(), grad.flatten().tolist(), m.flatten().tolist(),
                            v.flatten().tolist()):
        w = w * (1 - lr * weight_decay)
        mi = b1 * mi + (1 - b1) * g
        vi = b2 * vi + (1 - b2) * g * g
        w = w - lr * (mi / (1 - b1 ** step)) / (math.sqrt(vi / (1 - b2 ** step)) + eps)
        out_p.append(w)
        out_m.append(mi)
        out_v.append(vi)
    return tuple(torch.tensor(xs, dtype=param.dtype).reshape(param.shape) for xs in (out_p, out_m, out_v))
''',
        "scaled_lr": '''
def scaled_lr(base_lr, base_batch, batch, rule="linear"):
    kind = str(rule).strip().lower()
    if kind not in ("linear", "sqrt"):
        raise ValueError(f"rule must be 'linear' or 'sqrt', got {rule!r}")
    ratio = float(batch) / float(base_batch)
    return base_lr * (ratio if kind == "linear" else ratio ** 0.5)
''',
        "scaling_exponent": '''
def scaling_exponent(batch_sizes, lrs):
    x = torch.log(torch.tensor([float(b) for b in batch_sizes]))   # float32
    y = torch.log(torch.tensor([float(r) for r in lrs]))
    xc = x - x.mean()
    return (xc * (y - y.mean())).sum().item() / (xc * xc).sum().item()
''',
        "fit_critical_batch": '''
def fit_critical_batch(batch_sizes, steps):
    B = torch.tensor([float(b) for b in batch_sizes])               # float32
    S = torch.tensor([float(s) for s in steps])
    if len(set(B.tolist())) < 2:
        raise ValueError("fit_critical_batch needs at least 2 different batch sizes")
    x = 1 / B
    slope = ((x - x.mean()) * (S - S.mean())).sum() / ((x - x.mean()) ** 2).sum()
    s_min = S.mean() - slope * x.mean()
    return s_min.item(), (slope / s_min).item()
''',
        "noise_scale_from_norms": '''
def noise_scale_from_norms(sq, total):
    n = len(sq)
    t = total.to(torch.float64)
    tt = (t @ t).item()
    trace = (sq.to(torch.float64).sum().item() - tt / n) / (n - 1)
    g2 = tt / n ** 2 - trace / n
    return trace, (trace / g2 if g2 > 0 else math.inf)
''',
    },
    {   # helpers shared between answer cells, with the generic names a learner picks (the test cells must not
        # rebind them): mean, slope and ls for both fits, trace for the noise scale
        "scaling_exponent": '''
def mean(values):
    values = [float(v) for v in values]
    return sum(values) / len(values)


def slope(xs, ys):
    """Least-squares slope of ys against xs."""
    mx, my = mean(xs), mean(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


def ls(xs, ys):
    """Least-squares line: (slope, intercept)."""
    k = slope(xs, ys)
    return k, mean(ys) - k * mean(xs)


def scaling_exponent(batch_sizes, lrs):
    return ls([math.log(float(b)) for b in batch_sizes], [math.log(float(r)) for r in lrs])[0]
''',
        "fit_critical_batch": '''
def fit_critical_batch(batch_sizes, steps):
    xs = [1 / float(b) for b in batch_sizes]
    if len(set(xs)) < 2:
        raise ValueError("one batch size gives no line")
    k, s_min = ls(xs, [float(s) for s in steps])
    return s_min, k / s_min
''',
        "noise_scale_from_norms": '''
def mean_grad_sq(total, n):
    return sum((t / n) ** 2 for t in total.double().tolist())


def trace(sq, total):
    n = len(sq)
    return n * (mean(sq.double().tolist()) - mean_grad_sq(total, n)) / (n - 1)


def noise_scale_from_norms(sq, total):
    n = len(sq)
    tr = trace(sq, total)
    g2 = mean_grad_sq(total, n) - tr / n
    return tr, (tr / g2 if g2 > 0 else math.inf)
''',
    },
]


@pytest.mark.parametrize("which", range(len(CORRECT)))
def test_other_correct_answers_get_full_marks(which):
    report = run_assignment(A, replace=CORRECT[which], params=SMALL)
    assert_full_marks(report, POINTS)


def test_multiple_choice_reads_any_spelling_of_the_letter_and_scores_each_question():
    spelled = run_assignment(A, replace={"mc_scaling": 'ANSWER_LINEAR_RULE, ANSWER_DECOUPLED, ANSWER_CRITICAL = '
                                                       '" d", "b.", "Answer: B"'}, params=SMALL)
    assert_full_marks(spelled, POINTS)
    wrong = run_assignment(A, replace={"mc_scaling": 'ANSWER_LINEAR_RULE, ANSWER_DECOUPLED, ANSWER_CRITICAL = '
                                                     '"A", "B", "A"'}, params=SMALL)
    assert sorted(wrong.failed()) == ["mc_critical_tests", "mc_linear_rule_tests"], wrong.summary()
    assert wrong.score == POINTS - 2


def _fn(name: str, body: str, args: str) -> str:
    return f"def {name}({args}):\n" + "\n".join("    " + line for line in body.strip().splitlines())


def _adamw(body: str) -> str:
    return _fn("adamw_update", body, "param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01")


def _scaled(body: str) -> str:
    return _fn("scaled_lr", body, 'base_lr, base_batch, batch, rule="linear"')


def _exponent(body: str) -> str:
    return _fn("scaling_exponent", body, "batch_sizes, lrs")


def _critical(body: str) -> str:
    return _fn("fit_critical_batch", body, "batch_sizes, steps")


def _noise(body: str) -> str:
    return _fn("noise_scale_from_norms", body, "sq, total")


ADAMW_OK = '''
b1, b2 = betas
param = param * (1 - lr * weight_decay)
m = b1 * m + (1 - b1) * grad
v = b2 * v + (1 - b2) * grad ** 2
m_hat = m / (1 - b1 ** step)
v_hat = v / (1 - b2 ** step)
return param - lr * m_hat / (torch.sqrt(v_hat) + eps), m, v
'''

SCALED_OK = '''
if rule == "linear":
    return base_lr * (batch / base_batch)
if rule == "sqrt":
    return base_lr * math.sqrt(batch / base_batch)
raise ValueError("rule must be 'linear' or 'sqrt'")
'''

EXPONENT_OK = '''
x = np.log(np.asarray(batch_sizes, dtype=float))
y = np.log(np.asarray(lrs, dtype=float))
return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
'''

CRITICAL_OK = '''
B = np.asarray(batch_sizes, dtype=float)
S = np.asarray(steps, dtype=float)
if len(np.unique(B)) < 2:
    raise ValueError("need two different batch sizes")
x = 1 / B
slope = ((x - x.mean()) * (S - S.mean())).sum() / ((x - x.mean()) ** 2).sum()
s_min = S.mean() - slope * x.mean()
return float(s_min), float(slope / s_min)
'''

NOISE_OK = '''
sq, total = sq.double(), total.double()
n = sq.shape[0]
mean_sq = float((total / n).pow(2).sum())
trace = (float(sq.sum()) - n * mean_sq) / (n - 1)
g2 = mean_sq - trace / n
return trace, (trace / g2 if g2 > 0 else math.inf)
'''

MISTAKES = {
    # part 2: AdamW by hand
    "L2 coupling: the decay added to the gradient (Adam + L2)": ("adamw_update", _adamw(ADAMW_OK.replace(
        "param = param * (1 - lr * weight_decay)\n", "grad = grad + weight_decay * param\n"))),
    "no bias correction": ("adamw_update", _adamw(ADAMW_OK.replace(
        "m / (1 - b1 ** step)", "m").replace("v / (1 - b2 ** step)", "v"))),
    "eps inside the square root": ("adamw_update", _adamw(ADAMW_OK.replace(
        "(torch.sqrt(v_hat) + eps)", "torch.sqrt(v_hat + eps)"))),
    "decay without the learning rate": ("adamw_update", _adamw(ADAMW_OK.replace(
        "(1 - lr * weight_decay)", "(1 - weight_decay)"))),
    "decay after the Adam step instead of before": ("adamw_update", _adamw('''
b1, b2 = betas
m = b1 * m + (1 - b1) * grad
v = b2 * v + (1 - b2) * grad ** 2
new = param - lr * (m / (1 - b1 ** step)) / (torch.sqrt(v / (1 - b2 ** step)) + eps)
return new * (1 - lr * weight_decay), m, v
''')),
    "the inputs modified in place": ("adamw_update", _adamw('''
b1, b2 = betas
param.mul_(1 - lr * weight_decay)
m.mul_(b1).add_(grad, alpha=1 - b1)
v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
param.sub_(lr * (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt() + eps))
return param, m, v
''')),
    "step counter off by one (bias correction with step + 1)": ("adamw_update", _adamw(ADAMW_OK.replace(
        "b1 ** step", "b1 ** (step + 1)").replace("b2 ** step", "b2 ** (step + 1)"))),
    "bias correction (1 - beta) ** step instead of 1 - beta ** step": ("adamw_update", _adamw(ADAMW_OK.replace(
        "(1 - b1 ** step)", "(1 - b1) ** step").replace("(1 - b2 ** step)", "(1 - b2) ** step"))),
    "returns the bias-corrected moments as the new state": ("adamw_update", _adamw(ADAMW_OK.replace(
        ", m, v\n", ", m_hat, v_hat\n"))),
    "betas hard-coded to (0.9, 0.999)": ("adamw_update", _adamw(ADAMW_OK.replace(
        "b1, b2 = betas", "b1, b2 = 0.9, 0.999"))),
    # part 5: the scaling rules
    "ratio upside down (base_batch / batch)": ("scaled_lr", _scaled(SCALED_OK.replace(
        "(batch / base_batch)", "(base_batch / batch)"))),
    "linear and square root swapped": ("scaled_lr", _scaled('''
if rule == "sqrt":
    return base_lr * (batch / base_batch)
if rule == "linear":
    return base_lr * math.sqrt(batch / base_batch)
raise ValueError("rule must be 'linear' or 'sqrt'")
''')),
    "no error for an unknown rule (anything else is sqrt)": ("scaled_lr", _scaled('''
if rule == "linear":
    return base_lr * batch / base_batch
return base_lr * math.sqrt(batch / base_batch)
''')),
    "integer division of the batch sizes": ("scaled_lr", _scaled(SCALED_OK.replace(
        "(batch / base_batch)", "(batch // base_batch)"))),
    "square root of the whole LR": ("scaled_lr", _scaled(SCALED_OK.replace(
        "base_lr * math.sqrt(batch / base_batch)", "math.sqrt(base_lr * batch / base_batch)"))),
    # part 5: the exponent of the scaling law
    "slope of lr against B without logs": ("scaling_exponent", _exponent(EXPONENT_OK.replace(
        "np.log(np.asarray(batch_sizes, dtype=float))", "np.asarray(batch_sizes, dtype=float)").replace(
        "np.log(np.asarray(lrs, dtype=float))", "np.asarray(lrs, dtype=float)"))),
    "slope between the first and the last point only": ("scaling_exponent", _exponent('''
x = np.log(np.asarray(batch_sizes, dtype=float))
y = np.log(np.asarray(lrs, dtype=float))
return float((y[-1] - y[0]) / (x[-1] - x[0]))
''')),
    "axes swapped (log B against log lr)": ("scaling_exponent", _exponent('''
x = np.log(np.asarray(batch_sizes, dtype=float))
y = np.log(np.asarray(lrs, dtype=float))
return float(np.polyfit(y, x, 1)[0])
''')),
    "log of the lr only (a semi-log slope)": ("scaling_exponent", _exponent(EXPONENT_OK.replace(
        "np.log(np.asarray(batch_sizes, dtype=float))", "np.asarray(batch_sizes, dtype=float)"))),
    "a line through the origin (no intercept)": ("scaling_exponent", _exponent('''
x = np.log(np.asarray(batch_sizes, dtype=float))
y = np.log(np.asarray(lrs, dtype=float))
return float((x * y).sum() / (x * x).sum())
''')),
    # part 6: the critical batch size
    "b_noise is the slope itself (not divided by s_min)": ("fit_critical_batch", _critical(CRITICAL_OK.replace(
        "float(slope / s_min)", "float(slope)"))),
    "regressed on B instead of 1/B": ("fit_critical_batch", _critical(CRITICAL_OK.replace("x = 1 / B", "x = B"))),
    "line through the first and the last point only": ("fit_critical_batch", _critical('''
B = np.asarray(batch_sizes, dtype=float)
S = np.asarray(steps, dtype=float)
if len(np.unique(B)) < 2:
    raise ValueError("need two different batch sizes")
x = 1 / B
slope = (S[-1] - S[0]) / (x[-1] - x[0])
s_min = S[0] - slope * x[0]
return float(s_min), float(slope / s_min)
''')),
    "no ValueError for a single batch size": ("fit_critical_batch", _critical(CRITICAL_OK.replace(
        "if len(np.unique(B)) < 2:", "if len(B) < 2:"))),
    "b_noise upside down (s_min / slope)": ("fit_critical_batch", _critical(CRITICAL_OK.replace(
        "float(slope / s_min)", "float(s_min / slope)"))),
    "examples E = B S fitted against B instead of S against 1/B": ("fit_critical_batch", _critical('''
B = np.asarray(batch_sizes, dtype=float)
S = np.asarray(steps, dtype=float)
if len(np.unique(B)) < 2:
    raise ValueError("need two different batch sizes")
s_min, e_min = np.polyfit(B, B * S, 1)
return float(s_min), float(e_min / s_min)
''')),
    "np.polyfit's coefficients unpacked in the wrong order (intercept first)": ("fit_critical_batch", _critical('''
B = np.asarray(batch_sizes, dtype=float)
S = np.asarray(steps, dtype=float)
if len(np.unique(B)) < 2:
    raise ValueError("need two different batch sizes")
s_min, slope = np.polyfit(1 / B, S, 1)
return float(s_min), float(slope / s_min)
''')),
    # part 7: the noise scale from norms
    "no centring (the mean of |g_i|^2 as the trace)": ("noise_scale_from_norms", _noise(NOISE_OK.replace(
        "(float(sq.sum()) - n * mean_sq) / (n - 1)", "float(sq.sum()) / (n - 1)"))),
    "divides by n instead of n - 1": ("noise_scale_from_norms", _noise(NOISE_OK.replace(
        "/ (n - 1)", "/ n"))),
    "biased |G|^2 (no - trace / n)": ("noise_scale_from_norms", _noise(NOISE_OK.replace(
        "g2 = mean_sq - trace / n", "g2 = mean_sq"))),
    "total treated as the mean gradient": ("noise_scale_from_norms", _noise(NOISE_OK.replace(
        "(total / n)", "total"))),
    "n taken from total (the number of parameters)": ("noise_scale_from_norms", _noise(NOISE_OK.replace(
        "n = sq.shape[0]", "n = total.shape[0]"))),
    "negative B_simple instead of inf": ("noise_scale_from_norms", _noise(NOISE_OK.replace(
        "(trace / g2 if g2 > 0 else math.inf)", "trace / g2"))),
}


def _rounds() -> list[dict[str, tuple[str, str]]]:
    """The mistakes dealt into rounds: round k holds the k-th mistake of every exercise that has one, so a round is
    one notebook with at most one mistake per exercise (the test cells do not share state)."""
    per_exercise: dict[str, list[tuple[str, str]]] = {}
    for name, (grade_id, src) in MISTAKES.items():
        per_exercise.setdefault(grade_id, []).append((name, src))
    n = max(len(v) for v in per_exercise.values())
    return [{g: v[k] for g, v in per_exercise.items() if k < len(v)} for k in range(n)]


ROUNDS = _rounds()


@pytest.mark.parametrize("k", range(len(ROUNDS)))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(k):
    mistakes = ROUNDS[k]
    last = max(mistakes, key=EXERCISES.index)  # the run stops after the last test cell a mistake is in
    report = run_assignment(A, replace={g: src for g, (_, src) in mistakes.items()}, params=SMALL,
                            stop_after=f"{last}_tests")
    for grade_id, (name, _) in mistakes.items():
        assert_caught(report, grade_id, name)
    # and only those: the other exercises keep their points
    assert sorted(report.failed()) == sorted(f"{g}_tests" for g in mistakes), report.summary()


def test_every_exercise_has_at_least_three_mistakes_and_correct_variants():
    for grade_id in EXERCISES:
        assert sum(g == grade_id for g, _ in MISTAKES.values()) >= 3, grade_id
        assert sum(grade_id in variant for variant in CORRECT) >= 3, grade_id


# One call into lrlab (or torch.optim for AdamW), by any route, in place of the learner's own work: 0 with
# "write it yourself". Two notebooks, each with one shortcut in every exercise.
SHORTCUTS = [
    {
        "adamw_update": '''
import lrlab.scaling

def adamw_update(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    param, m, v = param.clone(), m.clone(), v.clone()
    lrlab.scaling.adamw_step(param, grad, m, v, step, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return param, m, v
''',
        "scaled_lr": '''
from lrlab.scaling import scaled_lr as _library_rule

def scaled_lr(base_lr, base_batch, batch, rule="linear"):
    return _library_rule(base_lr, base_batch, batch, rule)
''',
        "scaling_exponent": '''
from lrlab import stats as _stats

def scaling_exponent(batch_sizes, lrs):
    x = np.log(np.asarray(batch_sizes, dtype=float))
    y = np.log(np.asarray(lrs, dtype=float))
    mx, my = _stats.mean_interval(x).mean, _stats.mean_interval(y).mean
    return float(((x - mx) * (y - my)).sum() / ((x - mx) ** 2).sum())
''',
        "fit_critical_batch": '''
import lrlab

def fit_critical_batch(batch_sizes, steps):
    fit = lrlab.scaling.fit_critical_batch(list(batch_sizes), list(steps))
    return fit.s_min, fit.b_noise
''',
        "noise_scale_from_norms": '''
import lrlab.gradients as lib_gradients

def noise_scale_from_norms(sq, total):
    flat = lib_gradients.flatten_grads([total]).double()
    n = len(sq)
    mean_sq = float((flat / n).pow(2).sum())
    trace = (float(sq.double().sum()) - n * mean_sq) / (n - 1)
    g2 = mean_sq - trace / n
    return trace, (trace / g2 if g2 > 0 else math.inf)
''',
    },
    {
        "adamw_update": '''
def adamw_update(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    p = param.clone().requires_grad_(True)
    opt = torch.optim.AdamW([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    opt.state[p] = {"step": torch.tensor(float(step - 1)), "exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    p.grad = grad.clone()
    opt.step()
    st = opt.state[p]
    return p.detach(), st["exp_avg"], st["exp_avg_sq"]
''',
        "scaled_lr": '''
import importlib

def scaled_lr(base_lr, base_batch, batch, rule="linear"):
    return importlib.import_module("lrlab.scaling").scaled_lr(base_lr, base_batch, batch, rule=rule)
''',
        "scaling_exponent": '''
def _fit(batch_sizes, lrs):
    from lrlab.scaling import fit_critical_batch   # any call into lrlab.scaling counts
    try:
        fit_critical_batch(batch_sizes, lrs)
    except ValueError:
        pass
    return float(np.polyfit(np.log(np.asarray(batch_sizes, dtype=float)), np.log(np.asarray(lrs, dtype=float)), 1)[0])

def scaling_exponent(batch_sizes, lrs):
    return _fit(batch_sizes, lrs)
''',
        "fit_critical_batch": '''
from lrlab import sweep as _sweep
from lrlab.scaling import fit_critical_batch as _fit

def fit_critical_batch(batch_sizes, steps):
    if len(set(np.asarray(batch_sizes).tolist())) < 2:
        raise ValueError("need two different batch sizes")
    fit = _fit(batch_sizes, steps)
    return fit.s_min, fit.b_noise
''',
        "noise_scale_from_norms": '''
from lrlab import gradients

def noise_scale_from_norms(sq, total):
    n = len(sq)
    fake = torch.zeros(2, n, dtype=torch.float64)   # any call into lrlab.gradients counts
    gradients.covariance_trace(fake)
    mean_sq = float((total.double() / n).pow(2).sum())
    trace = (float(sq.double().sum()) - n * mean_sq) / (n - 1)
    g2 = mean_sq - trace / n
    return trace, (trace / g2 if g2 > 0 else math.inf)
''',
    },
]


@pytest.mark.parametrize("which", range(len(SHORTCUTS)))
def test_a_shortcut_scores_zero_and_says_write_it_yourself(which):
    report = run_assignment(A, replace=SHORTCUTS[which], params=SMALL)
    for grade_id, src in SHORTCUTS[which].items():
        if "torch.optim" in src:  # AdamW's own optimizer: the message names torch.optim instead of lrlab
            result = report.tests[f"{grade_id}_tests"]
            assert result.score == 0, report.summary()
            assert "ShortcutUsed" in result.error and f"write {grade_id} without torch.optim" in result.error, (
                report.summary())
        else:
            assert_shortcut_caught(report, grade_id, grade_id)


# Honest code that warns or writes to stderr keeps full marks (nbgrader gives a test cell with stderr 0).
WARNS = {
    "adamw_update": '''
import warnings

def adamw_update(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
    if step == 1:
        warnings.warn("first AdamW step: the moments start at zero", UserWarning)
    b1, b2 = betas
    param = param * (1 - lr * weight_decay)
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad * grad
    return param - lr * (m / (1 - b1 ** step)) / ((v / (1 - b2 ** step)).sqrt() + eps), m, v
''',
    "scaled_lr": '''
import warnings

def scaled_lr(base_lr, base_batch, batch, rule="linear"):
    if rule not in ("linear", "sqrt"):
        raise ValueError(f"rule must be 'linear' or 'sqrt', got {rule!r}")
    if batch > 8 * base_batch:
        warnings.warn("scaling the LR far beyond the tuned batch size", RuntimeWarning)
    ratio = batch / base_batch
    return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))
''',
    "scaling_exponent": '''
import sys

def scaling_exponent(batch_sizes, lrs):
    x = np.log(np.asarray(batch_sizes, dtype=float))
    y = np.log(np.asarray(lrs, dtype=float))
    print(f"fitting {len(x)} points", file=sys.stderr)
    return float(np.polyfit(x, y, 1)[0])
''',
    "fit_critical_batch": '''
import warnings

def fit_critical_batch(batch_sizes, steps):
    B = np.asarray(batch_sizes, dtype=float)
    S = np.asarray(steps, dtype=float)
    if len(np.unique(B)) < 2:
        raise ValueError("need two different batch sizes")
    slope, s_min = np.polyfit(1 / B, S, 1)
    if s_min <= 0:
        warnings.warn(f"the fitted S_min is {s_min:.3g} <= 0: the steps do not follow S_min (1 + B_noise / B)")
    return float(s_min), float(slope / s_min)
''',
    "noise_scale_from_norms": '''
import warnings

def noise_scale_from_norms(sq, total):
    sq, total = sq.double(), total.double()
    n = sq.shape[0]
    mean_sq = float((total / n).pow(2).sum())
    trace = (float(sq.sum()) - n * mean_sq) / (n - 1)
    g2 = mean_sq - trace / n
    if g2 <= 0:
        warnings.warn("the |G|^2 estimate is not positive: B_simple is inf", RuntimeWarning)
        return trace, math.inf
    return trace, trace / g2
''',
}


def test_honest_code_that_warns_keeps_full_marks():
    report = run_assignment(A, replace=WARNS, params=SMALL)
    assert_full_marks(report, POINTS)
    assert_no_stderr(report)
    # the warnings were raised inside the test cells (and shown there on stdout), not silenced
    shown = "".join(o.get("text", "") for g in EXERCISES for o in report.outputs[f"{g}_tests"])
    assert "Warning" in shown and "fitting" in shown, shown[:2000]
