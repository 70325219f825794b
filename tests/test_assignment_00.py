"""00_pytorch_warmup: the reference passes, other correct answers pass, plausible mistakes lose points (with the
hint for the mistake made), shortcuts into lrlab (or torch.cdist) score 0, honest warnings cost nothing, and the
stability-limit demo's printed prediction lies inside the divergence it observes."""

import re

import pytest

from nbharness import (
    assert_caught,
    assert_full_marks,
    assert_no_stderr,
    assert_shortcut_caught,
    run_assignment,
)

A = "00_pytorch_warmup"
POINTS = 13


@pytest.fixture(scope="module")
def reference():
    return run_assignment(A)


def test_reference_solution_gets_full_marks(reference):
    assert_full_marks(reference, POINTS)
    assert_no_stderr(reference)


def _printed(report, grade_id):
    return "".join(o.get("text", "") for o in report.outputs[grade_id] if o.get("output_type") == "stream")


def test_the_printed_stability_limit_lies_inside_the_observed_divergence(reference):
    text = _printed(reference, "code_stability_check")
    lam = float(re.search(r"lambda_max = ([\d.]+)", text).group(1))
    limit = float(re.search(r"predicted stability limit is 2 / lambda_max = ([\d.]+)", text).group(1))
    ok, bad = map(float, re.search(r"still falls at lr = ([\d.]+) and grows at lr = ([\d.]+)", text).groups())
    assert lam == pytest.approx(2.33, abs=0.01) and limit == pytest.approx(0.86, abs=0.01), text
    assert ok < limit < bad and bad - ok <= 0.02 + 1e-9, text
    assert f"lies inside [{ok:.2f}, {bad:.2f}]: True" in text, text
    # the two runs beside the limit: the loss falls far below its start just under it, and explodes just over it
    runs = dict(re.findall(r"lr = (0\.95|1\.05) x limit = [\d.]+: loss ([\deE.+-]+) at the start", text))
    ends = dict(re.findall(r"lr = (0\.95|1\.05) x limit = [\d.]+: loss [\deE.+-]+ at the start, ([\deE.+-]+) after",
                           text))
    assert float(ends["0.95"]) < 1e-3 * float(runs["0.95"]), text
    assert float(ends["1.05"]) > 1e3 * float(runs["1.05"]), text
    # and the demo above it still shows lr = 1.0 exploding, beyond the limit
    assert re.search(r"lr=1\.0 .* [\d.]+e\+0[3-9]", _printed(reference, "code_016")), _printed(reference, "code_016")


# Correct answers in other idioms: name -> (grade_id, source). Each must keep full marks.
CORRECT = {
    # a helper at the top level of the answer cell, named like the test cell's own variable once was
    "max_curvature by power iteration with a helper named trace": ("max_curvature", '''
def trace(H):
    return float(torch.diagonal(H).sum())


def max_curvature(X):
    Z = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype)], dim=1)
    H = 2 * Z.T @ Z / X.shape[0]
    H = H / trace(H)                    # scale to trace 1, then power iteration
    v = torch.ones(H.shape[0], dtype=H.dtype)
    for _ in range(2000):
        v = H @ v
        v = v / v.norm()
    return float(v @ (2 * Z.T @ Z / X.shape[0]) @ v)
'''),
    "center with expand_as and a sum": ("center_columns", '''
def center_columns(X):
    means = X.sum(0) / X.shape[0]
    return X - means.expand_as(X)
'''),
    "center one column at a time": ("center_columns", '''
def center_columns(X):
    return torch.stack([X[:, j] - X[:, j].mean() for j in range(X.shape[1])], dim=1)
'''),
    "center with torch.sub and a float64 mean": ("center_columns", '''
def center_columns(X):
    return torch.sub(X, X.double().mean(dim=0).to(X.dtype))
'''),
    "center by multiplying with a centering matrix": ("center_columns", '''
def center_columns(X):
    n = X.shape[0]
    C = torch.eye(n, dtype=X.dtype) - torch.full((n, n), 1.0 / n, dtype=X.dtype)
    return C @ X
'''),
    "distances from the expanded square": ("pairwise_sq_dist", '''
def pairwise_sq_dist(A, B):
    return (A * A).sum(1, keepdim=True) - 2 * A @ B.T + (B * B).sum(1)
'''),
    "distances with unsqueeze and pow": ("pairwise_sq_dist", '''
def pairwise_sq_dist(A, B):
    return (A.unsqueeze(1) - B.unsqueeze(0)).pow(2).sum(dim=2)
'''),
    "distances with a loop over the rows of A": ("pairwise_sq_dist", '''
def pairwise_sq_dist(A, B):
    return torch.stack([((a - B) ** 2).sum(-1) for a in A])
'''),
    "distances with einsum": ("pairwise_sq_dist", '''
def pairwise_sq_dist(A, B):
    d = A[:, None, :] - B[None, :, :]
    return torch.einsum("nmd,nmd->nm", d, d)
'''),
    "derivative with autograd.grad in float64": ("derivative_at", '''
def derivative_at(f, x0):
    x = torch.as_tensor(x0, dtype=torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(f(x), x)
    return float(g)
'''),
    "derivative with torch.func.grad": ("derivative_at", '''
def derivative_at(f, x0):
    return torch.func.grad(f)(torch.tensor(float(x0))).item()
'''),
    "derivative with a one-element vector and .sum()": ("derivative_at", '''
def derivative_at(f, x0):
    x = torch.full((1,), x0, requires_grad=True)
    y = f(x)
    y.sum().backward()
    return x.grad[0].item()
'''),
    "gd_step resets the gradients to None, like zero_grad()": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = torch.nn.functional.mse_loss(X @ w + b, y)
    loss.backward()
    with torch.no_grad():
        for p in (w, b):
            p -= lr * p.grad
            p.grad = None
    return loss.item()
'''),
    "gd_step with .data and sub_": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    w.grad = b.grad = None
    loss = ((X @ w + b - y) ** 2).sum() / len(y)
    loss.backward()
    w.data.sub_(lr * w.grad)
    b.data.sub_(lr * b.grad)
    w.grad.zero_()
    b.grad.zero_()
    return loss.detach().item()
'''),
    "gd_step with torch.optim.SGD": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    opt = torch.optim.SGD([w, b], lr=lr)
    opt.zero_grad()
    loss = torch.nn.MSELoss()(X @ w + b, y)
    loss.backward()
    opt.step()
    opt.zero_grad()
    return float(loss.detach())
'''),
    "gd_step with autograd.grad (no .grad at all)": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    gw, gb = torch.autograd.grad(loss, (w, b))
    with torch.no_grad():
        w.add_(gw, alpha=-lr)
        b.add_(gb, alpha=-lr)
    return loss.item()
'''),
    "max_curvature with autograd's Hessian": ("max_curvature", '''
def max_curvature(X):
    n, d = X.shape
    y = torch.zeros(n, dtype=X.dtype)
    def loss(theta):
        return ((X @ theta[:d] + theta[d] - y) ** 2).mean()
    H = torch.autograd.functional.hessian(loss, torch.zeros(d + 1, dtype=X.dtype))
    return float(torch.linalg.eigvalsh(H)[-1])
'''),
    "max_curvature by power iteration in float64": ("max_curvature", '''
def max_curvature(X):
    Z = torch.cat([X.double(), torch.ones(len(X), 1, dtype=torch.float64)], 1)
    H = 2 * Z.T @ Z / len(X)
    v = torch.ones(H.shape[0], dtype=torch.float64)
    for _ in range(2000):
        v = H @ v
        v = v / v.norm()
    return float(v @ H @ v)
'''),
    "max_curvature from the largest singular value of Z": ("max_curvature", '''
def max_curvature(X):
    import numpy as np
    Z = np.hstack([X.numpy(), np.ones((X.shape[0], 1))])
    s = np.linalg.svd(Z, compute_uv=False)
    return float(2 * s[0] ** 2 / X.shape[0])
'''),
    "max_curvature with hand-written blocks of the Hessian": ("max_curvature", '''
def max_curvature(X):
    n = X.shape[0]
    top = torch.cat([X.T @ X, X.sum(0, keepdim=True).T], 1)
    bottom = torch.cat([X.sum(0, keepdim=True), torch.tensor([[float(n)]], dtype=X.dtype)], 1)
    H = 2 / n * torch.cat([top, bottom], 0)
    return max(torch.linalg.eigvals(H).real.tolist())
'''),
    "multiple choice in lower case with spaces": ("mc_accumulate", 'ANSWER_ACCUMULATE = " b "'),
    "multiple choice with a period": ("mc_accumulate", 'ANSWER_ACCUMULATE = "B."'),
    "multiple choice in parentheses with the option's text": ("mc_accumulate",
                                                             'ANSWER_ACCUMULATE = "(B) the sum of the two"'),
}


def _run(grade_id, src):
    return run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")


@pytest.mark.parametrize("variant", sorted(CORRECT))
def test_other_correct_answers_get_full_marks(variant):
    report = _run(*CORRECT[variant])
    assert_full_marks(report)
    assert_no_stderr(report)


def test_correct_answers_together_get_full_marks_in_every_cell():
    picks = {}
    for grade_id, src in CORRECT.values():
        picks.setdefault(grade_id, src)
    report = run_assignment(A, replace=picks)
    assert_full_marks(report, POINTS)


# Honest code that warns or writes to stderr (nbgrader gives a test cell with stderr 0): these keep full marks.
NOISY = {
    "center_columns": '''
import warnings

def center_columns(X):
    warnings.warn("centering a copy of X", UserWarning)
    return X - X.mean(dim=0)
''',
    "pairwise_sq_dist": '''
import numpy as np
from tqdm import tqdm

def pairwise_sq_dist(A, B):
    for _ in tqdm(range(3), desc="warming up"):
        np.log(np.zeros(1))  # a RuntimeWarning from NumPy
    return ((A[:, None] - B[None]) ** 2).sum(-1)
''',
    "derivative_at": '''
import sys

def derivative_at(f, x0):
    print(f"derivative at {x0}", file=sys.stderr)
    x = torch.tensor(float(x0), requires_grad=True)
    f(x).backward()
    return float(x.grad)
''',
    # float(loss) on a tensor that requires grad makes PyTorch warn: once scored 0 for stderr
    "gd_step": '''
def gd_step(w, b, X, y, lr):
    for p in (w, b):
        p.grad = None
    loss = torch.nn.functional.mse_loss(X @ w + b, y)
    loss.backward()
    with torch.no_grad():
        for p in (w, b):
            p.sub_(lr * p.grad)
            p.grad.zero_()
    return float(loss)
''',
    "max_curvature": '''
import warnings

def max_curvature(X):
    warnings.warn("max_curvature: building the full Hessian", RuntimeWarning)
    Z = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
    return torch.linalg.eigvalsh(2 * Z.T @ Z / len(X)).max().item()
''',
    "mc_accumulate": '''
import warnings

warnings.warn("answering from memory", UserWarning)
ANSWER_ACCUMULATE = "B"
''',
}


@pytest.mark.parametrize("grade_id", sorted(NOISY))
def test_warnings_stderr_and_progress_bars_keep_full_marks(grade_id):
    report = _run(grade_id, NOISY[grade_id])
    assert_full_marks(report)
    assert_no_stderr(report)


# name -> (grade_id, source, a phrase of the hint the learner must see, or None)
MISTAKES = {
    # 1 center_columns
    "mean over the wrong axis": ("center_columns", "def center_columns(X):\n    return X - X.mean(1, keepdim=True)",
                                 "ROW means"),
    "centers in place": ("center_columns", "def center_columns(X):\n    X -= X.mean(0)\n    return X",
                         "changes the caller's data"),
    "hard-coded example": ("center_columns",
                           "def center_columns(X):\n    return torch.tensor([[-1., -2., -3.], [1., 2., 3.]])", None),
    "subtracts the mean of all entries": ("center_columns", "def center_columns(X):\n    return X - X.mean()",
                                          "one mean of all entries"),
    "standardizes instead of centering": ("center_columns",
                                          "def center_columns(X):\n    return (X - X.mean(0)) / X.std(0)",
                                          "divides by the standard deviation"),
    "returns the column means": ("center_columns", "def center_columns(X):\n    return X.mean(0, keepdim=True)",
                                 "do not return the means"),
    "centers in place with sub_ on a float64 copy only": ("center_columns", '''
def center_columns(X):
    if X.dtype == torch.float64:
        return X.sub_(X.mean(0))
    return X - X.mean(0)
''', None),
    # 2 pairwise_sq_dist
    "distance transposed": ("pairwise_sq_dist",
                            "def pairwise_sq_dist(A, B):\n    return ((B[:, None] - A[None]) ** 2).sum(-1)",
                            "rows of A come first"),
    "distance with square root": ("pairwise_sq_dist",
                                  "def pairwise_sq_dist(A, B):\n"
                                  "    return ((A[:, None] - B[None]) ** 2).sum(-1).sqrt()",
                                  "SQUARED"),
    "absolute differences": ("pairwise_sq_dist",
                             "def pairwise_sq_dist(A, B):\n    return (A[:, None] - B[None]).abs().sum(-1)",
                             "absolute differences"),
    "squares after summing": ("pairwise_sq_dist",
                              "def pairwise_sq_dist(A, B):\n    return (A[:, None] - B[None]).sum(-1) ** 2",
                              "square each difference first"),
    "elementwise difference of matching rows only": ("pairwise_sq_dist",
                                                     "def pairwise_sq_dist(A, B):\n"
                                                     "    return ((A[:len(B)] - B) ** 2).sum(-1, keepdim=True)", None),
    # 3 derivative_at
    "derivative returns a tensor": ("derivative_at", '''
def derivative_at(f, x0):
    x = torch.tensor(float(x0), requires_grad=True)
    f(x).backward()
    return x.grad
''', "Python float"),
    "derivative hard-coded for the examples": ("derivative_at", '''
def derivative_at(f, x0):
    return 12.0 if x0 == 2.0 else 1.0
''', "requires grad"),
    "derivative by a central finite difference": ("derivative_at", '''
def derivative_at(f, x0):
    h = 1e-5
    x = torch.tensor(float(x0), dtype=torch.float64)
    return float((f(x + h) - f(x - h)) / (2 * h))
''', "requires grad"),
    "returns f(x0) instead of its derivative": ("derivative_at", '''
def derivative_at(f, x0):
    x = torch.tensor(float(x0), requires_grad=True)
    y = f(x)
    y.backward()
    return y.item()
''', "not the value f(x)"),
    "one tensor kept between calls (gradients accumulate)": ("derivative_at", '''
_x = torch.zeros((), requires_grad=True)

def derivative_at(f, x0):
    with torch.no_grad():
        _x.fill_(x0)
    f(_x).backward()
    return _x.grad.item()
''', "gradients accumulate"),
    # 4 gd_step
    "forgets zero_grad": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    return loss.item()
''', "w.grad.zero_() or w.grad = None"),
    "gradient ascent": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w += lr * w.grad
        b += lr * b.grad
    w.grad.zero_(); b.grad.zero_()
    return loss.item()
''', "WITH the gradient"),
    "returns the loss after the step": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    w.grad.zero_(); b.grad.zero_()
    return ((X @ w + b - y) ** 2).mean().item()
''', "AFTER the update"),
    "rebinds w instead of updating in place": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    w = w.detach() - lr * w.grad
    b = b.detach() - lr * b.grad
    return loss.item()
''', "w did not change"),
    "sum of squared errors instead of the mean": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).sum()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    w.grad.zero_(); b.grad.zero_()
    return loss.item()
''', "SUM of the squared errors"),
    "forgets to update b": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
    w.grad.zero_(); b.grad.zero_()
    return loss.item()
''', "update b as well"),
    "resets only the gradient of w": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    w.grad.zero_()
    return loss.item()
''', "b.grad.zero_() or b.grad = None"),
    "half mean squared error": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = 0.5 * ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    w.grad.zero_(); b.grad.zero_()
    return loss.item()
''', "no factor 1/2"),
    # 5 max_curvature
    "Hessian without b's column of ones": ("max_curvature", '''
def max_curvature(X):
    return torch.linalg.eigvalsh(2 * X.T @ X / len(X)).max().item()
''', "b is a parameter too"),
    "Hessian without the factor 2": ("max_curvature", '''
def max_curvature(X):
    Z = torch.cat([X, torch.ones(len(X), 1)], 1)
    return torch.linalg.eigvalsh(Z.T @ Z / len(X)).max().item()
''', "factor 2"),
    "Hessian of the sum, not the mean": ("max_curvature", '''
def max_curvature(X):
    Z = torch.cat([X, torch.ones(len(X), 1)], 1)
    return torch.linalg.eigvalsh(2 * Z.T @ Z).max().item()
''', "divide Z^T Z by N"),
    "returns the limit 2 / lambda_max": ("max_curvature", '''
def max_curvature(X):
    Z = torch.cat([X, torch.ones(len(X), 1)], 1)
    return 2 / torch.linalg.eigvalsh(2 * Z.T @ Z / len(X)).max().item()
''', "return lambda_max"),
    "smallest eigenvalue": ("max_curvature", '''
def max_curvature(X):
    Z = torch.cat([X, torch.ones(len(X), 1)], 1)
    return torch.linalg.eigvalsh(2 * Z.T @ Z / len(X))[0].item()
''', "SMALLEST"),
    "largest singular value of Z, not squared": ("max_curvature", '''
def max_curvature(X):
    Z = torch.cat([X, torch.ones(len(X), 1)], 1)
    return (2 * torch.linalg.svdvals(Z)[0] / len(X)).item()
''', None),
    "returns a tensor": ("max_curvature", '''
def max_curvature(X):
    Z = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    return torch.linalg.eigvalsh(2 * Z.T @ Z / len(X)).max()
''', "Python float"),
    # 6 multiple choice
    "wrong multiple-choice answer": ("mc_accumulate", 'ANSWER_ACCUMULATE = "A"', None),
    "multiple choice: average": ("mc_accumulate", 'ANSWER_ACCUMULATE = "c."', None),
    "multiple choice: two letters": ("mc_accumulate", 'ANSWER_ACCUMULATE = "B or C"', "single letter"),
    "multiple choice: not answered": ("mc_accumulate", "ANSWER_ACCUMULATE = None", "no answer yet"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src, hint = MISTAKES[mistake]
    report = _run(grade_id, src)
    assert_caught(report, grade_id, mistake)
    if hint is not None:
        assert hint in report.tests[f"{grade_id}_tests"].error, report.summary()


# A call into lrlab (or into torch.cdist, which the text rules out) by any route scores 0 with "write it yourself".
SHORTCUTS = {
    "center_columns": '''
from lrlab.data import Standardizer

def center_columns(X):
    return X - Standardizer().fit(X).mean_
''',
    "derivative_at": '''
import importlib

def derivative_at(f, x0):
    x = torch.tensor(float(x0), requires_grad=True)
    f(x).backward()
    return float(importlib.import_module("lrlab.gradients").flatten_grads([x.grad]))
''',
    "gd_step": '''
import lrlab.training as T

def gd_step(w, b, X, y, lr):
    opt = T.make_optimizer("sgd", [w, b], lr)
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.item()
''',
    "max_curvature": '''
import lrlab

def max_curvature(X):
    X = lrlab.data.check_features(X)
    Z = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], 1)
    return torch.linalg.eigvalsh(2 * Z.T @ Z / len(X)).max().item()
''',
}


@pytest.mark.parametrize("grade_id", sorted(SHORTCUTS))
def test_shortcuts_into_lrlab_score_zero_with_the_write_it_yourself_message(grade_id):
    report = _run(grade_id, SHORTCUTS[grade_id])
    assert_shortcut_caught(report, grade_id, grade_id)


@pytest.mark.parametrize("src", [
    "def pairwise_sq_dist(A, B):\n    return torch.cdist(A, B) ** 2",
    "from torch import cdist as dist\n\ndef pairwise_sq_dist(A, B):\n    return dist(A, B).square()",
])
def test_torch_cdist_scores_zero_in_pairwise_sq_dist(src):
    report = _run("pairwise_sq_dist", src)
    result = report.tests["pairwise_sq_dist_tests"]
    assert result.score == 0 and "ShortcutUsed" in result.error, report.summary()
    assert "write pairwise_sq_dist without torch" in result.error and "cdist" in result.error, report.summary()
