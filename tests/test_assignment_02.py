"""02_training_loop: the reference passes, other correct answers pass, plausible mistakes lose points,
shortcuts into lrlab score 0, and honest warnings or progress bars cost nothing."""

import pytest

from nbharness import (
    assert_caught,
    assert_full_marks,
    assert_no_stderr,
    assert_shortcut_caught,
    run_assignment,
)

A = "02_training_loop"


def test_reference_solution_gets_full_marks():
    report = run_assignment(A)
    assert_full_marks(report, 12)
    assert_no_stderr(report)


# Correct answers in other idioms: (grade_id, source). Each must keep full marks.
CORRECT = {
    "model as a class with [:, 0]": ("build_model", '''
class TinyNet(nn.Module):
    def __init__(self, n_features, hidden):
        super().__init__()
        self.first = nn.Linear(n_features, hidden)
        self.second = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))[:, 0]


def build_model(n_features, hidden):
    return TinyNet(n_features, hidden)
'''),
    "model as a Sequential of an OrderedDict, output layer defined first": ("build_model", '''
from collections import OrderedDict


class Net(nn.Module):
    def __init__(self, n_features, hidden):
        super().__init__()
        self.out = nn.Linear(hidden, 1)
        self.body = nn.Sequential(OrderedDict(fc=nn.Linear(n_features, hidden), act=nn.ReLU()))

    def forward(self, x):
        return self.out(self.body(x)).view(-1)


def build_model(n_features, hidden):
    return Net(n_features, hidden)
'''),
    "model with functional relu and reshape": ("build_model", '''
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, n_features, hidden):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(n_features, hidden), nn.Linear(hidden, 1)])

    def forward(self, x):
        return self.layers[1](F.relu(self.layers[0](x))).reshape(-1)


def build_model(n_features, hidden):
    return Net(n_features, hidden)
'''),
    "step with gradients set to None": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    for p in model.parameters():
        p.grad = None
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
'''),
    "step with gradients zeroed in place": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    for p in model.parameters():
        if p.grad is not None:
            p.grad.zero_()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return loss.item()
'''),
    "step with zero_grad(set_to_none=False) and float() on the loss": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad(set_to_none=False)
    logits = model(xb)
    loss = loss_fn(logits, yb)
    loss.backward()
    value = float(loss)  # warns (the loss requires grad); the warning must cost nothing
    optimizer.step()
    return value
'''),
    "step with model.zero_grad() and autograd.grad": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    model.zero_grad()
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model(xb), yb)
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    return loss.item()
'''),
    "evaluation by concatenating all logits under inference_mode": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    mode = model.training
    model.eval()
    with torch.inference_mode():
        pairs = [(model(xb), yb) for xb, yb in loader]
        logits = torch.cat([p[0] for p in pairs])
        ys = torch.cat([p[1] for p in pairs])
        loss = loss_fn(logits, ys).item()
        acc = ((torch.sigmoid(logits) > 0.5) == (ys == 1)).float().mean().item()
    model.train(mode)
    return loss, acc
'''),
    "evaluation counting rows with len(loader.dataset) and try/finally": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    try:
        total, correct = 0.0, 0
        with torch.no_grad():
            for xb, yb in loader:
                logits = model(xb)
                total += loss_fn(logits, yb).item() * xb.shape[0]
                correct += int((logits.gt(0) == yb.bool()).sum())
        n = len(loader.dataset)
        return total / n, correct / n
    finally:
        model.train(was_training)
'''),
    "evaluation with a summed loss and torch.round of probabilities": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    was = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64)
    right, n = 0, 0
    with torch.no_grad():
        for xb, yb in loader:
            z = model(xb)
            total += torch.nn.functional.binary_cross_entropy_with_logits(z, yb, reduction="sum").double()
            right += (torch.round(torch.sigmoid(z)) == yb).sum().item()
            n += yb.numel()
    model.train(was)
    return (total / n).item(), right / n
'''),
    "loop with a list comprehension, epochs from 0": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    history = []
    for epoch in range(epochs):
        model.train()
        pairs = [(train_step(model, xb, yb, optimizer, loss_fn), len(yb)) for xb, yb in train_loader]
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        history.append(dict(epoch=epoch + 1, train_loss=sum(l * n for l, n in pairs) / sum(n for _, n in pairs),
                            test_loss=test_loss, test_acc=test_acc))
    return history
'''),
    "loop with enumerate(start=1) and numpy.average": ("fit_model", '''
import numpy as np


def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    out = []
    for epoch, _ in enumerate(range(epochs), start=1):
        model.train(True)
        losses, sizes = [], []
        for xb, yb in train_loader:
            losses.append(train_step(model, xb, yb, optimizer, loss_fn))
            sizes.append(xb.shape[0])
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        out.append({"epoch": epoch, "train_loss": float(np.average(losses, weights=sizes)),
                    "test_loss": test_loss, "test_acc": test_acc})
    return out
'''),
    "loop counting rows with len(train_loader.dataset)": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for xb, yb in train_loader:
            total += train_step(model, xb, yb, optimizer, loss_fn) * len(xb)
        record = {"epoch": epoch, "train_loss": total / len(train_loader.dataset)}
        record["test_loss"], record["test_acc"] = evaluate_model(model, test_loader, loss_fn)
        records.append(record)
    return records
'''),
    "multiple choice in lower case with spaces": ("mc_lr_too_high", 'ANSWER_LR_TOO_HIGH = "c "'),
    "multiple choice with a period": ("mc_lr_too_high", 'ANSWER_LR_TOO_HIGH = "C."'),
    "multiple choice as Option (c)": ("mc_lr_too_high", 'ANSWER_LR_TOO_HIGH = "Option (c)"'),
}


@pytest.mark.parametrize("variant", sorted(CORRECT))
def test_other_correct_answers_get_full_marks(variant):
    grade_id, src = CORRECT[variant]
    report = run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_full_marks(report)
    assert_no_stderr(report)


def test_correct_answers_together_get_full_marks_in_every_cell():
    picks = {}
    for grade_id, src in CORRECT.values():
        picks.setdefault(grade_id, src)
    report = run_assignment(A, replace=picks)
    assert_full_marks(report, 12)


# Honest code that warns, prints to stderr or draws a plain tqdm bar: these keep full marks.
NOISY = {
    "build_model": '''
import sys
import warnings

print("building", file=sys.stderr)


def build_model(n_features, hidden):
    warnings.warn("build_model: a tiny network", UserWarning)
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Flatten(0))
''',
    "train_step": '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return float(loss)  # UserWarning: the loss still requires grad
''',
    "evaluate_model": '''
from tqdm import tqdm


def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0.0, 0
    with torch.no_grad():
        for xb, yb in tqdm(loader, desc="evaluating"):
            logits = model(xb)
            total += float(loss_fn(logits, yb)) * len(yb)
            correct += ((logits > 0).float() == yb).sum().item()
            n += len(yb)
    model.train(was_training)
    import numpy as np
    np.float64(1.0) / np.float64(0.0)  # a RuntimeWarning from NumPy
    return total / n, correct / n
''',
    "fit_model": '''
import sys
from tqdm import tqdm


def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in tqdm(range(1, epochs + 1), desc="epochs"):
        model.train()
        total, n = 0.0, 0
        for xb, yb in tqdm(train_loader, leave=False):
            total += train_step(model, xb, yb, optimizer, loss_fn) * len(yb)
            n += len(yb)
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        print(f"epoch {epoch}: test accuracy {test_acc:.3f}", file=sys.stderr)
        records.append({"epoch": epoch, "train_loss": total / n, "test_loss": test_loss, "test_acc": test_acc})
    return records
''',
}


@pytest.mark.parametrize("grade_id", sorted(NOISY))
def test_warnings_stderr_and_progress_bars_keep_full_marks(grade_id):
    report = run_assignment(A, replace={grade_id: NOISY[grade_id]}, stop_after=f"{grade_id}_tests")
    assert_full_marks(report)
    assert_no_stderr(report)
    out = "".join(o.get("text", "") for o in report.outputs[f"{grade_id}_tests"] if o.get("name") == "stdout")
    assert "Warning" in out or "it/s" in out, out  # the warning or the bar is still shown, on stdout


# One call into lrlab in place of the learner's own work: 0 for that exercise, with the "write it yourself" message.
SHORTCUTS = {
    "build_model": '''
from lrlab.models import MLP as _Net


def build_model(n_features, hidden):
    return _Net(n_features, hidden=hidden)
''',
    "train_step": '''
def train_step(model, xb, yb, optimizer, loss_fn):
    stats = lrlab.training.train_one_epoch(model, [(xb, yb)], optimizer, loss_fn=loss_fn, device="cpu")
    return stats["train_loss"]
''',
    "evaluate_model": '''
import lrlab.training as T

evaluate_model = lambda model, loader, loss_fn: T.evaluate(model, loader, loss_fn=loss_fn, device="cpu")
''',
    "fit_model": '''
def _run(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    trace = lrlab.training.fit(model, (train_loader, test_loader), optimizer, epochs, loss_fn=loss_fn,
                               device="cpu", progress=False)
    return [{k: r[k] for k in ("epoch", "train_loss", "test_loss", "test_acc")} for r in trace.epochs]


def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    return _run(model, train_loader, test_loader, optimizer, loss_fn, epochs)
''',
}


@pytest.mark.parametrize("grade_id", sorted(SHORTCUTS))
def test_a_shortcut_into_lrlab_scores_zero_and_says_write_it_yourself(grade_id):
    report = run_assignment(A, replace={grade_id: SHORTCUTS[grade_id]}, stop_after=f"{grade_id}_tests")
    assert_shortcut_caught(report, grade_id, grade_id)


_REF_EVAL_NO_RESTORE = '''
def evaluate_model(model, loader, loss_fn):
    model.eval()
    total, correct, n = 0.0, 0.0, 0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            total += loss_fn(logits, yb).item() * len(yb)
            correct += ((logits > 0).float() == yb).sum().item()
            n += len(yb)
    return total / n, correct / n
'''


def _evaluate(body: str) -> str:
    """An evaluate_model whose per-batch body is `body` (indented 12 spaces; sets logits/loss/correct)."""
    return f'''
def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0.0, 0
    for xb, yb in loader:
{body}
        total += loss.item() * len(yb)
        correct += float(correct_batch)
        n += len(yb)
    model.train(was_training)
    return total / n, correct / n
'''


MISTAKES = {
    # build_model
    "sigmoid at the end of the model (applied twice with the loss)": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid(), nn.Flatten(0))
'''),
    "no ReLU: a linear model": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.Linear(hidden, 1), nn.Flatten(0))
'''),
    "output of shape [N, 1]": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))
'''),
    "squeeze() drops the batch dimension of a one-row batch": ("build_model", '''
class Net(nn.Module):
    def __init__(self, n_features, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze()


def build_model(n_features, hidden):
    return Net(n_features, hidden)
'''),
    "an extra hidden layer": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1), nn.Flatten(0))
'''),
    # train_step
    "missing zero_grad": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return loss.item()
'''),
    "sigmoid applied twice (probabilities into BCEWithLogitsLoss)": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(torch.sigmoid(model(xb)), yb)
    loss.backward()
    optimizer.step()
    return loss.item()
'''),
    "zero_grad between backward and step": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()
'''),
    "step before backward": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    optimizer.step()
    loss.backward()
    return loss.item()
'''),
    "returns the loss tensor": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return loss
'''),
    "returns the loss after the step": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        return loss_fn(model(xb), yb).item()
'''),
    # evaluate_model
    "accuracy from probabilities with threshold 0": ("evaluate_model", _evaluate('''
        with torch.no_grad():
            logits = model(xb)
            loss = loss_fn(logits, yb)
            correct_batch = ((torch.sigmoid(logits) > 0).float() == yb).sum()''')),
    "threshold 0.5 on the logits": ("evaluate_model", _evaluate('''
        with torch.no_grad():
            logits = model(xb)
            loss = loss_fn(logits, yb)
            correct_batch = ((logits > 0.5).float() == yb).sum()''')),
    "evaluation keeps autograd on (no torch.no_grad)": ("evaluate_model", _evaluate('''
        logits = model(xb)
        loss = loss_fn(logits, yb)
        correct_batch = ((logits > 0).float() == yb).sum()''')),
    "evaluation calls backward (keeps gradients)": ("evaluate_model", _evaluate('''
        logits = model(xb)
        loss = loss_fn(logits, yb)
        loss.backward()
        correct_batch = ((logits > 0).float() == yb).sum()''')),
    "evaluation updates the weights": ("evaluate_model", _evaluate('''
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        opt.zero_grad()
        logits = model(xb)
        loss = loss_fn(logits, yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        correct_batch = ((logits > 0).float() == yb).sum()''')),
    "forgets model.eval()": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    total, correct, n = 0.0, 0.0, 0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            total += loss_fn(logits, yb).item() * len(yb)
            correct += ((logits > 0).float() == yb).sum().item()
            n += len(yb)
    return total / n, correct / n
'''),
    "leaves the model in eval mode": ("evaluate_model", _REF_EVAL_NO_RESTORE),
    "mean of batch means (unweighted)": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    losses, correct, n = [], 0.0, 0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            losses.append(loss_fn(logits, yb).item())
            correct += ((logits > 0).float() == yb).sum().item()
            n += len(yb)
    model.train(was_training)
    return sum(losses) / len(losses), correct / n
'''),
    "returns tensors": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(xb) for xb, _ in loader])
        ys = torch.cat([yb for _, yb in loader])
        result = loss_fn(logits, ys), ((logits > 0).float() == ys).float().mean()
    model.train(was_training)
    return result
'''),
    # fit_model
    "epochs counted from 0": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(epochs):
        model.train()
        losses = [train_step(model, xb, yb, optimizer, loss_fn) for xb, yb in train_loader]
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        records.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "test_loss": test_loss,
                        "test_acc": test_acc})
    return records
'''),
    "evaluates on the training loader": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(1, epochs + 1):
        model.train()
        losses = [train_step(model, xb, yb, optimizer, loss_fn) for xb, yb in train_loader]
        test_loss, test_acc = evaluate_model(model, train_loader, loss_fn)
        records.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "test_loss": test_loss,
                        "test_acc": test_acc})
    return records
'''),
    "train loss is the last batch's loss": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(1, epochs + 1):
        model.train()
        for xb, yb in train_loader:
            loss = train_step(model, xb, yb, optimizer, loss_fn)
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        records.append({"epoch": epoch, "train_loss": loss, "test_loss": test_loss, "test_acc": test_acc})
    return records
'''),
    "evaluates only after the last epoch": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(1, epochs + 1):
        model.train()
        losses = [train_step(model, xb, yb, optimizer, loss_fn) for xb, yb in train_loader]
        records.append({"epoch": epoch, "train_loss": sum(losses) / len(losses)})
    test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
    for r in records:
        r.update(test_loss=test_loss, test_acc=test_acc)
    return records
'''),
    # multiple choice
    "wrong multiple-choice answer": ("mc_lr_too_high", 'ANSWER_LR_TOO_HIGH = "A"'),
    # build_model (more)
    "ReLU after the output layer": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.ReLU(), nn.Flatten(0))
'''),
    "tanh after the output layer": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Tanh(), nn.Flatten(0))
'''),
    "sigmoid as the hidden activation": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.Sigmoid(), nn.Linear(hidden, 1), nn.Flatten(0))
'''),
    "output layer without a bias": ("build_model", '''
def build_model(n_features, hidden):
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 1, bias=False), nn.Flatten(0))
'''),
    # train_step (more)
    "a new optimizer inside train_step": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    opt.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    opt.step()
    return loss.item()
'''),
    "zero_grad at the end instead of the start": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()
'''),
    "two optimizer steps": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    optimizer.step()
    return loss.item()
'''),
    "returns the detached loss tensor": ("train_step", '''
def train_step(model, xb, yb, optimizer, loss_fn):
    optimizer.zero_grad()
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return loss.detach()
'''),
    # evaluate_model (more)
    "accuracy as the mean of per-batch accuracies": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    total, n, accs = 0.0, 0, []
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            total += loss_fn(logits, yb).item() * len(yb)
            accs.append(((logits > 0).float() == yb).float().mean().item())
            n += len(yb)
    model.train(was_training)
    return total / n, sum(accs) / len(accs)
'''),
    "rows counted as batch_size times the number of batches": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0.0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            total += loss_fn(logits, yb).item() * len(yb)
            correct += ((logits > 0).float() == yb).sum().item()
    model.train(was_training)
    n = loader.batch_size * len(loader)
    return total / n, correct / n
'''),
    "mode set back to train instead of restored": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    model.eval()
    total, correct, n = 0.0, 0.0, 0
    with torch.no_grad():
        for xb, yb in loader:
            logits = model(xb)
            total += loss_fn(logits, yb).item() * len(yb)
            correct += ((logits > 0).float() == yb).sum().item()
            n += len(yb)
    model.train()
    return total / n, correct / n
'''),
    "loss of the probabilities": ("evaluate_model", '''
def evaluate_model(model, loader, loss_fn):
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0.0, 0
    with torch.no_grad():
        for xb, yb in loader:
            probs = torch.sigmoid(model(xb))
            total += loss_fn(probs, yb).item() * len(yb)
            correct += ((probs > 0.5).float() == yb).sum().item()
            n += len(yb)
    model.train(was_training)
    return total / n, correct / n
'''),
    # fit_model (more)
    "train loss as the unweighted mean of batch losses": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    history = []
    for epoch in range(epochs):
        model.train()
        losses = [train_step(model, xb, yb, optimizer, loss_fn) for xb, yb in train_loader]
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        history.append(dict(epoch=epoch + 1, train_loss=sum(losses) / len(losses), test_loss=test_loss,
                            test_acc=test_acc))
    return history
'''),
    "no model.train() in the loop": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(1, epochs + 1):
        total, n = 0.0, 0
        for xb, yb in train_loader:
            total += train_step(model, xb, yb, optimizer, loss_fn) * len(yb)
            n += len(yb)
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        records.append({"epoch": epoch, "train_loss": total / n, "test_loss": test_loss, "test_acc": test_acc})
    return records
'''),
    "model.train() once before the loop": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    model.train()
    for epoch in range(1, epochs + 1):
        total, n = 0.0, 0
        for xb, yb in train_loader:
            total += train_step(model, xb, yb, optimizer, loss_fn) * len(yb)
            n += len(yb)
        model.eval()
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        records.append({"epoch": epoch, "train_loss": total / n, "test_loss": test_loss, "test_acc": test_acc})
    return records
'''),
    "train loss divided by the number of batches": ("fit_model", '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(1, epochs + 1):
        model.train()
        total = 0.0
        for xb, yb in train_loader:
            total += train_step(model, xb, yb, optimizer, loss_fn) * len(yb)
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        records.append({"epoch": epoch, "train_loss": total / len(train_loader), "test_loss": test_loss,
                        "test_acc": test_acc})
    return records
'''),
    # multiple choice (more)
    "multiple choice: B": ("mc_lr_too_high", 'ANSWER_LR_TOO_HIGH = "b."'),
    "multiple choice: C or D": ("mc_lr_too_high", 'ANSWER_LR_TOO_HIGH = "C or D"'),
    "multiple choice: D": ("mc_lr_too_high", 'ANSWER_LR_TOO_HIGH = "(D)"'),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)


def test_a_loop_without_model_train_is_caught_even_when_evaluation_restores_the_mode():
    fit_without_train = MISTAKES["no model.train() in the loop"][1]
    for evaluate in (_REF_EVAL_NO_RESTORE, None):
        replace = {"fit_model": fit_without_train}
        if evaluate:
            replace["evaluate_model"] = evaluate
        report = run_assignment(A, replace=replace, stop_after="fit_model_tests")
        assert "fit_model_tests" in report.failed(), report.summary()


# Mistakes whose failure message names what went wrong (a recognised mistake gets its own hint).
HINTS = {
    "sigmoid at the end of the model (applied twice with the loss)": "a sigmoid after the output layer",
    "ReLU after the output layer": "activation (ReLU) after the output layer",
    "no ReLU: a linear model": "no ReLU between the layers",
    "missing zero_grad": "still in p.grad",
    "sigmoid applied twice (probabilities into BCEWithLogitsLoss)": "a sigmoid before the loss",
    "returns the loss after the step": "the loss AFTER optimizer.step()",
    "accuracy as the mean of per-batch accuracies": "mean of per-batch accuracies",
    "threshold 0.5 on the logits": "0.5 is the threshold for a PROBABILITY",
    "accuracy from probabilities with threshold 0": "every row was predicted as class 1",
    "train loss as the unweighted mean of batch losses": "weight each by its batch's number of rows",
}


@pytest.mark.parametrize("mistake", sorted(HINTS))
def test_a_recognised_mistake_gets_a_hint_that_names_it(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")
    assert HINTS[mistake] in report.tests[f"{grade_id}_tests"].error, report.summary()
