"""05_gradient_variance: the reference passes, other correct answers pass, plausible mistakes lose points."""

import pytest

from nbharness import assert_caught, assert_full_marks, run_assignment

A = "05_gradient_variance"
SMALL = {"N_EPOCHS": 1, "NOISE_EVERY": 25}  # the demo runs shrink; the graded cells are unchanged


def test_reference_solution_gets_full_marks():
    report = run_assignment(A, params=SMALL)
    assert_full_marks(report, 14)  # + 4 points graded by hand


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
    "mc_noise": 'ANSWER_NOISE_SCALE, ANSWER_NORMS, ANSWER_BIAS = " b", "c ", "B"',
}


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
    # part 5
    "wrong multiple-choice answer": ("mc_noise", 'ANSWER_NOISE_SCALE, ANSWER_NORMS, ANSWER_BIAS = "B", "C", "C"'),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, params=SMALL, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)
