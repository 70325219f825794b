"""00_pytorch_warmup: the reference passes, other correct answers pass, plausible mistakes lose points."""

import pytest

from nbharness import assert_caught, assert_full_marks, run_assignment

A = "00_pytorch_warmup"


def test_reference_solution_gets_full_marks():
    report = run_assignment(A)
    assert_full_marks(report, 10)


CORRECT = {
    "center_columns": '''
def center_columns(X):
    means = X.sum(0) / X.shape[0]
    return X - means.expand_as(X)
''',
    "pairwise_sq_dist": '''
def pairwise_sq_dist(A, B):
    return (A * A).sum(1, keepdim=True) - 2 * A @ B.T + (B * B).sum(1)
''',
    "derivative_at": '''
def derivative_at(f, x0):
    x = torch.as_tensor(x0, dtype=torch.float64).requires_grad_()
    (g,) = torch.autograd.grad(f(x), x)
    return float(g)
''',
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
    "mc_accumulate": 'ANSWER_ACCUMULATE = " b "',
}


def test_differently_written_correct_answers_get_full_marks():
    report = run_assignment(A, replace=CORRECT)
    assert_full_marks(report)


MISTAKES = {
    "mean over the wrong axis": ("center_columns", "def center_columns(X):\n    return X - X.mean(1, keepdim=True)"),
    "centers in place": ("center_columns", "def center_columns(X):\n    X -= X.mean(0)\n    return X"),
    "hard-coded example": ("center_columns",
                           "def center_columns(X):\n    return torch.tensor([[-1., -2., -3.], [1., 2., 3.]])"),
    "distance with square root": ("pairwise_sq_dist",
                                  "def pairwise_sq_dist(A, B):\n    return torch.cdist(A, B)"),
    "distance transposed": ("pairwise_sq_dist",
                            "def pairwise_sq_dist(A, B):\n    return ((B[:, None] - A[None]) ** 2).sum(-1)"),
    "derivative returns a tensor": ("derivative_at", '''
def derivative_at(f, x0):
    x = torch.tensor(float(x0), requires_grad=True)
    f(x).backward()
    return x.grad
'''),
    "derivative by finite difference on the example only": ("derivative_at", '''
def derivative_at(f, x0):
    return 12.0 if x0 == 2.0 else 1.0
'''),
    "forgets zero_grad": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    return loss.item()
'''),
    "gradient ascent": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w += lr * w.grad
        b += lr * b.grad
    w.grad.zero_(); b.grad.zero_()
    return loss.item()
'''),
    "returns the loss after the step": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
    w.grad.zero_(); b.grad.zero_()
    return ((X @ w + b - y) ** 2).mean().item()
'''),
    "rebinds w instead of updating in place": ("gd_step", '''
def gd_step(w, b, X, y, lr):
    loss = ((X @ w + b - y) ** 2).mean()
    loss.backward()
    w = w.detach() - lr * w.grad
    b = b.detach() - lr * b.grad
    return loss.item()
'''),
    "wrong multiple-choice answer": ("mc_accumulate", 'ANSWER_ACCUMULATE = "A"'),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src})
    assert_caught(report, grade_id, mistake)
