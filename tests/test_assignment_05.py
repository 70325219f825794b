"""05_gradient_variance: the reference passes, other correct answers pass, plausible mistakes lose points,
shortcuts into lrlab.gradients score 0 with the "write it yourself" message, and honest warnings cost nothing."""

import pytest

from nbharness import assert_caught, assert_full_marks, assert_no_stderr, assert_shortcut_caught, run_assignment

A = "05_gradient_variance"
SMALL = {"N_EPOCHS": 1, "NOISE_EVERY": 25}  # the demo runs shrink; the graded cells are unchanged


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params=SMALL)
    assert_full_marks(report, 16)  # + 4 points graded by hand


CORRECT = {
    "block_stats": '''
def block_stats(g, blocks):
    return {
        name: {"mean_abs": float(g[rows].abs().sum() / g[rows].numel()),
               "norm": float(torch.sqrt((g[rows] ** 2).sum()))}
        for name, rows in blocks.items()
    }
''',
    "variance_over_batches": '''
def variance_over_batches(grads):
    n = grads.shape[0]
    centred = grads - grads.mean(dim=0)
    return float((centred ** 2).sum(dim=0).div(n - 1).mean())
''',
    "per_sample_gradients": '''
def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    names = [n for n, _ in model.named_parameters()]
    values = tuple(p.detach() for _, p in model.named_parameters())

    def one(vals, x, t):
        out = torch.func.functional_call(model, dict(zip(names, vals)), x[None])
        return loss_fn(out, t[None])

    grads = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(values, X, y)
    return dict(zip(names, grads))
''',
    "noise_scale_simple": '''
def noise_scale_simple(per_sample):
    M = per_sample.double()
    B = M.shape[0]
    mean = M.mean(0)
    trace = float(((M - mean) ** 2).sum() / (B - 1))
    g2 = float(mean @ mean) - trace / B
    return trace, g2, (trace / g2 if g2 > 0 else float("inf"))
''',
    "noise_scale_two_batch": '''
def noise_scale_two_batch(sq_small, sq_big, b_small, b_big):
    s, b = float(sq_small.mean()), float(sq_big.mean())   # float32 means
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    trace = (s - b) * b_small * b_big / (b_big - b_small)
    return g2, trace, trace / g2 if g2 > 0 else math.inf
''',
    "mc_noise": 'ANSWER_NOISE_SCALE, ANSWER_NORMS, ANSWER_BIAS = " b", "c ", "B."',
}

#: Helpers at the top level of the answer cells, named like the test cells' own variables once were.
HELPERS = {
    "noise_scale_simple": '''
def trace(M):
    return float(M.double().var(dim=0, correction=1).sum())


def noise_scale_simple(per_sample):
    t = trace(per_sample)
    g = float(per_sample.double().mean(0).pow(2).sum()) - t / per_sample.shape[0]
    return t, g, (t / g if g > 0 else math.inf)
''',
    "noise_scale_two_batch": '''
def g2(small, big, b_small, b_big):
    return (b_big * big - b_small * small) / (b_big - b_small)


def b_simple(trace_value, g2_value):
    return trace_value / g2_value if g2_value > 0 else math.inf


def noise_scale_two_batch(sq_small, sq_big, b_small, b_big):
    s, b = float(sq_small.double().mean()), float(sq_big.double().mean())
    g = g2(s, b, b_small, b_big)
    t = (s - b) / (1 / b_small - 1 / b_big)
    return g, t, b_simple(t, g)
''',
}


def test_helpers_named_like_test_variables_keep_full_marks():
    report = run_assignment(A, replace=HELPERS, params=SMALL)
    assert_full_marks(report, 16)


#: More correct readings of the two-batch estimator: numpy, a plain Python loop, float64 throughout.
TWO_BATCH_OK = {
    "numpy": '''
import numpy as np

def noise_scale_two_batch(sq_small, sq_big, b_small, b_big):
    s, b = np.mean(sq_small.numpy()), np.mean(sq_big.numpy())
    g2 = float((b_big * b - b_small * s) / (b_big - b_small))
    trace = float((s - b) / (1 / b_small - 1 / b_big))
    return (g2, trace, trace / g2) if g2 > 0 else (g2, trace, float("inf"))
''',
    "python loop": '''
def noise_scale_two_batch(sq_small, sq_big, b_small, b_big):
    total_small = 0.0
    for v in sq_small.tolist():
        total_small += v
    total_big = 0.0
    for v in sq_big.tolist():
        total_big += v
    s, b = total_small / len(sq_small), total_big / len(sq_big)
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    trace = (s - b) / (1 / b_small - 1 / b_big)
    b_simple = math.inf
    if g2 > 0:
        b_simple = trace / g2
    return g2, trace, b_simple
''',
    "float64 tensors": '''
def noise_scale_two_batch(sq_small, sq_big, b_small, b_big):
    s = sq_small.to(torch.float64).sum() / sq_small.numel()
    b = sq_big.to(torch.float64).sum() / sq_big.numel()
    g2 = ((b_big * b - b_small * s) / (b_big - b_small)).item()
    trace = ((s - b) / (1.0 / b_small - 1.0 / b_big)).item()
    return g2, trace, (trace / g2) if g2 > 0 else math.inf
''',
}


@pytest.mark.parametrize("variant", sorted(TWO_BATCH_OK))
def test_other_correct_two_batch_estimators_get_full_marks(variant):
    report = run_assignment(A, replace={"noise_scale_two_batch": TWO_BATCH_OK[variant]},
                            stop_after="noise_scale_two_batch_tests", params=SMALL)
    assert "noise_scale_two_batch_tests" not in report.failed(), report.summary()


def test_differently_written_correct_answers_get_full_marks():
    report = run_assignment(A, replace=CORRECT, params=SMALL)
    assert_full_marks(report)


def test_a_loop_of_backward_passes_is_slow_but_correct():
    loop = '''
def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    rows = {n: [] for n, _ in model.named_parameters()}
    for i in range(len(X)):
        model.zero_grad()
        loss_fn(model(X[i:i + 1]), y[i:i + 1]).backward()
        for n, p in model.named_parameters():
            rows[n].append(p.grad.clone())
    return {n: torch.stack(v) for n, v in rows.items()}
'''
    report = run_assignment(A, replace={"per_sample_gradients": loop}, stop_after="per_sample_gradients_tests")
    assert "per_sample_gradients_tests" not in report.failed(), report.summary()


def _fn(name: str, body: str, args: str) -> str:
    return f"def {name}({args}):\n" + "\n".join("    " + line for line in body.strip().splitlines())


def _block(body: str) -> str:
    return _fn("block_stats", body, "g, blocks")


def _var(body: str) -> str:
    return _fn("variance_over_batches", body, "grads")


def _noise(body: str) -> str:
    return _fn("noise_scale_simple", body, "per_sample")


def _two(body: str) -> str:
    return _fn("noise_scale_two_batch", body, "sq_small, sq_big, b_small, b_big")


TWO_OK = '''
s, b = sq_small.double().mean().item(), sq_big.double().mean().item()
g2 = (b_big * b - b_small * s) / (b_big - b_small)
trace = (s - b) / (1 / b_small - 1 / b_big)
return g2, trace, (trace / g2 if g2 > 0 else math.inf)
'''


def _psg(loss_line: str) -> str:
    return f'''
def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    params = {{name: p.detach() for name, p in model.named_parameters()}}
    B = X.shape[0]

    def sample_loss(p, x, t):
        out = functional_call(model, p, (x.unsqueeze(0),))
        {loss_line}

    return vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, X, y)
'''


NOISE_OK = '''
B = per_sample.shape[0]
trace = per_sample.var(dim=0, correction=1).sum().item()
g2 = per_sample.mean(dim=0).pow(2).sum().item() - trace / B
return trace, g2, (trace / g2 if g2 > 0 else math.inf)
'''

MISTAKES = {
    # part 1: block statistics
    "signed mean instead of mean |g|": ("block_stats", _block(
        'return {n: {"mean_abs": g[r].mean().item(), "norm": g[r].norm().item()} for n, r in blocks.items()}')),
    "blocks of columns instead of rows (wrong axis)": ("block_stats", _block(
        'return {n: {"mean_abs": g[:, r].abs().mean().item(), "norm": g[:, r].norm().item()} '
        "for n, r in blocks.items()}")),
    "squared norm without the square root": ("block_stats", _block(
        'return {n: {"mean_abs": g[r].abs().mean().item(), "norm": (g[r] ** 2).sum().item()} '
        "for n, r in blocks.items()}")),
    "statistics of the whole tensor, not of the block": ("block_stats", _block(
        'return {n: {"mean_abs": g.abs().mean().item(), "norm": g.norm().item()} for n, r in blocks.items()}')),
    "hard-coded visible values": ("block_stats", _block(
        'return {"top": {"mean_abs": 5 / 6, "norm": 3.0}, '
        '"bottom": {"mean_abs": 8 / 6, "norm": math.sqrt(26)}}')),
    # part 2: variance across mini-batches
    "variance over the wrong axis (the elements of each step)": ("variance_over_batches", _var(
        "return grads.reshape(grads.shape[0], -1).var(dim=1).mean().item()")),
    "biased variance (divide by n)": ("variance_over_batches", _var(
        "return grads.var(dim=0, correction=0).mean().item()")),
    "variance of all numbers pooled together": ("variance_over_batches", _var("return grads.var().item()")),
    "variance of the mean gradient's elements": ("variance_over_batches", _var(
        "return grads.mean(dim=0).var().item()")),
    "standard deviation instead of variance": ("variance_over_batches", _var(
        "return grads.std(dim=0).mean().item()")),
    "hard-coded visible value": ("variance_over_batches", _var("return 2.0")),
    # part 3: per-sample gradients
    "per-sample gradients from the mean loss, scaled by 1/B": ("per_sample_gradients", _psg(
        "return loss_fn(out, t.unsqueeze(0)) / B")),
    "batch gradient copied for every sample": ("per_sample_gradients", '''
def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    model.zero_grad()
    loss_fn(model(X), y).backward()
    return {n: p.grad.detach().expand(X.shape[0], *p.shape).clone() for n, p in model.named_parameters()}
'''),
    "ignores the loss_fn argument": ("per_sample_gradients", _psg(
        "return F.binary_cross_entropy_with_logits(out, t.unsqueeze(0))")),
    # part 4: the noise scale
    "norm of the mean confused with the mean of the norms": ("noise_scale_simple", _noise(
        NOISE_OK.replace("per_sample.mean(dim=0).pow(2).sum().item()",
                         "per_sample.pow(2).sum(dim=1).mean().item()"))),
    "trace from the variance over the wrong axis": ("noise_scale_simple", _noise(
        NOISE_OK.replace("per_sample.var(dim=0, correction=1).sum()", "per_sample.var(dim=1).sum()"))),
    "biased trace (divide by B)": ("noise_scale_simple", _noise(
        NOISE_OK.replace("correction=1", "correction=0"))),
    "no noise correction of |G|^2": ("noise_scale_simple", _noise(NOISE_OK.replace(" - trace / B", ""))),
    "norm of the mean not squared": ("noise_scale_simple", _noise(
        NOISE_OK.replace("per_sample.mean(dim=0).pow(2).sum().item()", "per_sample.mean(dim=0).norm().item()"))),
    "negative B_simple instead of inf": ("noise_scale_simple", _noise(
        NOISE_OK.replace("(trace / g2 if g2 > 0 else math.inf)", "trace / g2"))),
    # part 5: the two-batch estimator
    "batch sizes swapped in |G|^2": ("noise_scale_two_batch", _two(
        TWO_OK.replace("(b_big * b - b_small * s)", "(b_small * b - b_big * s)"))),
    "only the first batch of each size": ("noise_scale_two_batch", _two(
        TWO_OK.replace("sq_small.double().mean().item(), sq_big.double().mean().item()",
                       "sq_small[0].item(), sq_big[0].item()"))),
    "trace divided by b_small - b_big": ("noise_scale_two_batch", _two(
        TWO_OK.replace("(1 / b_small - 1 / b_big)", "(b_small - b_big)"))),
    "one ratio per pair of batches, averaged": ("noise_scale_two_batch", _two('''
n = min(len(sq_small), len(sq_big))
ratios, g2s, traces = [], [], []
for s, b in zip(sq_small[:n].tolist(), sq_big[:n].tolist()):
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    trace = (s - b) / (1 / b_small - 1 / b_big)
    g2s.append(g2)
    traces.append(trace)
    ratios.append(trace / g2 if g2 > 0 else math.inf)
return sum(g2s) / n, sum(traces) / n, sum(ratios) / n
''')),
    "negative B_simple instead of inf (two batches)": ("noise_scale_two_batch", _two(
        TWO_OK.replace("(trace / g2 if g2 > 0 else math.inf)", "trace / g2"))),
    "|G|^2 as the plain mean at the big batch": ("noise_scale_two_batch", _two(
        TWO_OK.replace("(b_big * b - b_small * s) / (b_big - b_small)", "b"))),
    # part 6: one point per question
    "wrong answer to question (a)": ("mc_noise", 'ANSWER_NOISE_SCALE, ANSWER_NORMS, ANSWER_BIAS = "A", "C", "B"'),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)


@pytest.mark.parametrize("wrong, cell", [
    ('"A", "C", "B"', "mc_noise_tests"), ('"B", "D", "B"', "mc_noise_b_tests"), ('"B", "C", "C"', "mc_noise_c_tests"),
])
def test_one_wrong_letter_costs_one_point_only(wrong, cell):
    report = run_assignment(A, replace={"mc_noise": f"ANSWER_NOISE_SCALE, ANSWER_NORMS, ANSWER_BIAS = {wrong}"},
                            params=SMALL)
    assert report.failed() == [cell], report.summary()
    assert report.score == report.max_score - 1, report.summary()


# One call into lrlab.gradients, by any route, in place of the learner's own work: 0 with "write it yourself".
SHORTCUTS = {
    "per_sample_gradients": '''
from lrlab import gradients as _g

def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    return _g.per_sample_grads(model, X, y, loss_fn=loss_fn)
''',
    "noise_scale_simple": '''
import lrlab.gradients as G

def noise_scale_simple(per_sample):
    trace = G.covariance_trace(per_sample)
    b_simple = G.noise_scale(per_sample)
    return trace, (trace / b_simple if b_simple != math.inf else 0.0), b_simple
''',
    "noise_scale_two_batch": '''
import importlib

def noise_scale_two_batch(sq_small, sq_big, b_small, b_big):
    est = importlib.import_module("lrlab.gradients").two_batch_noise_scale(
        sq_small.numpy(), sq_big.numpy(), b_small, b_big)
    return est.grad_sq_norm, est.trace, est.b_simple
''',
    "variance_over_batches": '''
def _helper(grads):
    import lrlab
    return lrlab.gradients.flatten_grads([grads])

def variance_over_batches(grads):
    _helper(grads)
    return float(grads.var(dim=0).mean())
''',
}


@pytest.mark.parametrize("grade_id", sorted(SHORTCUTS))
def test_a_shortcut_into_lrlab_scores_zero_and_says_write_it_yourself(grade_id):
    report = run_assignment(A, replace={grade_id: SHORTCUTS[grade_id]}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_shortcut_caught(report, grade_id, grade_id)


WARNS = {
    "variance_over_batches": '''
import warnings

def variance_over_batches(grads):
    warnings.warn("averaging the per-element variances", UserWarning)
    return float(grads.var(dim=0).mean())
''',
    "noise_scale_two_batch": '''
import warnings

def noise_scale_two_batch(sq_small, sq_big, b_small, b_big):
    s, b = sq_small.double().mean().item(), sq_big.double().mean().item()
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    trace = (s - b) / (1 / b_small - 1 / b_big)
    if g2 <= 0:
        warnings.warn("the |G|^2 estimate is not positive: B_simple is inf", RuntimeWarning)
        return g2, trace, math.inf
    warnings.warn("B_simple from two batch sizes", UserWarning)
    return g2, trace, trace / g2
''',
}


@pytest.mark.parametrize("grade_id", sorted(WARNS))
def test_honest_code_that_warns_keeps_full_marks(grade_id):
    report = run_assignment(A, replace={grade_id: WARNS[grade_id]}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert f"{grade_id}_tests" not in report.failed(), report.summary()
    assert_no_stderr(report)


# ------------------------------------------------------------------ two more idioms for every exercise, all at once
MORE_CORRECT = [
    {
        "block_stats": '''
def block_stats(g, blocks):
    out = {}
    for name, rows in blocks.items():
        part = g[rows].double()
        out[name] = {"mean_abs": part.abs().mean().item(), "norm": part.pow(2).sum().sqrt().item()}
    return out
''',
        "variance_over_batches": '''
def variance_over_batches(grads):
    import numpy as np
    arr = grads.detach().numpy().astype(np.float64)
    return float(np.var(arr, axis=0, ddof=1).mean())
''',
        "per_sample_gradients": '''
def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    out = {name: [] for name, _ in model.named_parameters()}
    params = [p for _, p in model.named_parameters()]
    for i in range(X.shape[0]):
        grads = torch.autograd.grad(loss_fn(model(X[i:i + 1]), y[i:i + 1]), params)
        for (name, _), g in zip(model.named_parameters(), grads):
            out[name].append(g)
    return {name: torch.stack(gs) for name, gs in out.items()}
''',
        "noise_scale_simple": '''
def noise_scale_simple(per_sample):
    B = per_sample.shape[0]
    mean = per_sample.mean(0)
    trace = ((per_sample - mean) ** 2).sum().item() / (B - 1)
    g2 = float(torch.dot(mean, mean)) - trace / B
    return trace, g2, trace / g2 if g2 > 0 else float("inf")
''',
        "mc_noise": 'ANSWER_NOISE_SCALE = "B."\nANSWER_NORMS = "c"\nANSWER_BIAS = " b "',
    },
    {
        "block_stats": '''
def block_stats(g, blocks):
    import numpy as np
    arr = g.detach().numpy()
    return {name: {"mean_abs": float(np.abs(arr[rows]).mean()), "norm": float(np.linalg.norm(arr[rows]))}
            for name, rows in blocks.items()}
''',
        "variance_over_batches": '''
def variance_over_batches(grads):
    n = grads.shape[0]
    flat = grads.reshape(n, -1)
    total = 0.0
    for j in range(flat.shape[1]):
        col = flat[:, j]
        m = col.mean()
        total += float(((col - m) ** 2).sum() / (n - 1))
    return total / flat.shape[1]
''',
        "per_sample_gradients": '''
def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    from torch.func import functional_call, grad, vmap
    params = dict(model.named_parameters())
    detached = {k: v.detach() for k, v in params.items()}

    def one(p, x, t):
        return loss_fn(functional_call(model, p, (x[None],)), t[None])

    return vmap(grad(one), in_dims=(None, 0, 0))(detached, X, y)
''',
        "noise_scale_simple": '''
def noise_scale_simple(per_sample):
    import numpy as np
    M = per_sample.detach().numpy().astype(np.float32)
    B = M.shape[0]
    trace = float(M.var(axis=0, ddof=1).sum())
    g2 = float((M.mean(axis=0) ** 2).sum()) - trace / B
    return trace, g2, (trace / g2 if g2 > 0 else math.inf)
''',
        "mc_noise": "ANSWER_NOISE_SCALE = 'b'\nANSWER_NORMS = 'C.'\nANSWER_BIAS = 'B'",
    },
]


@pytest.mark.parametrize("which", [0, 1])
def test_two_more_idioms_for_every_exercise_get_full_marks(which):
    report = run_assignment(A, replace=MORE_CORRECT[which], params=SMALL)
    assert_full_marks(report)


def test_a_block_stats_shortcut_scores_zero():
    src = '''
from lrlab.gradients import GradientTracker as _T

def block_stats(g, blocks):
    _T(torch.nn.Linear(1, 1))   # any call into lrlab.gradients counts
    return {name: {"mean_abs": float(g[rows].abs().mean()), "norm": float(g[rows].norm())}
            for name, rows in blocks.items()}
'''
    report = run_assignment(A, replace={"block_stats": src}, params=SMALL, stop_after="block_stats_tests")
    assert_shortcut_caught(report, "block_stats", "block_stats")


MORE_WARNS = {
    "block_stats": '''
import warnings

def block_stats(g, blocks):
    warnings.warn("blocks are slices of rows", UserWarning)
    return {name: {"mean_abs": float(g[rows].abs().mean()), "norm": float(g[rows].norm())}
            for name, rows in blocks.items()}
''',
    "per_sample_gradients": '''
import sys

def per_sample_gradients(model, X, y, loss_fn=F.binary_cross_entropy_with_logits):
    print(f"{len(X)} samples, one gradient each", file=sys.stderr)
    out = {name: [] for name, _ in model.named_parameters()}
    for i in range(len(X)):
        grads = torch.autograd.grad(loss_fn(model(X[i:i + 1]), y[i:i + 1]), list(model.parameters()))
        for (name, _), g in zip(model.named_parameters(), grads):
            out[name].append(g)
    return {name: torch.stack(v) for name, v in out.items()}
''',
    "noise_scale_simple": '''
import numpy as np

def noise_scale_simple(per_sample):
    B = per_sample.shape[0]
    trace = per_sample.double().var(dim=0, correction=1).sum().item()
    g2 = per_sample.double().mean(dim=0).pow(2).sum().item() - trace / B
    with np.errstate(divide="warn"):
        ratio = np.float64(trace) / np.float64(g2) if g2 > 0 else np.float64(trace) / np.float64(0.0)
    return trace, g2, float(ratio)
''',
}


@pytest.mark.parametrize("grade_id", sorted(MORE_WARNS))
def test_more_honest_warnings_keep_full_marks(grade_id):
    report = run_assignment(A, replace={grade_id: MORE_WARNS[grade_id]}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert f"{grade_id}_tests" not in report.failed(), report.summary()
    assert_no_stderr(report)
