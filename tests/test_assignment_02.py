"""02_training_loop: the reference passes, other correct answers pass, plausible mistakes lose points."""

import pytest

from nbharness import assert_caught, assert_full_marks, run_assignment

A = "02_training_loop"


def test_reference_solution_gets_full_marks():
    report = run_assignment(A)
    assert_full_marks(report, 12)


CORRECT = {
    "build_model": '''
class TinyNet(nn.Module):
    def __init__(self, n_features, hidden):
        super().__init__()
        self.first = nn.Linear(n_features, hidden)
        self.second = nn.Linear(hidden, 1)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))[:, 0]


def build_model(n_features, hidden):
    return TinyNet(n_features, hidden)
''',
    "train_step": '''
def train_step(model, xb, yb, optimizer, loss_fn):
    for p in model.parameters():
        p.grad = None
    loss = loss_fn(model(xb), yb)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
''',
    "evaluate_model": '''
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
''',
    "fit_model": '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    history = []
    for epoch in range(epochs):
        model.train()
        losses = [train_step(model, xb, yb, optimizer, loss_fn) for xb, yb in train_loader]
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        history.append(dict(epoch=epoch + 1, train_loss=sum(losses) / len(losses), test_loss=test_loss,
                            test_acc=test_acc))
    return history
''',
    "mc_lr_too_high": 'ANSWER_LR_TOO_HIGH = "c "',
}


def test_differently_written_correct_answers_get_full_marks():
    report = run_assignment(A, replace=CORRECT)
    assert_full_marks(report)


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
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)


def test_a_loop_without_model_train_is_caught_when_evaluation_leaves_eval_mode():
    fit_without_train = '''
def fit_model(model, train_loader, test_loader, optimizer, loss_fn, epochs):
    records = []
    for epoch in range(1, epochs + 1):
        losses = [train_step(model, xb, yb, optimizer, loss_fn) for xb, yb in train_loader]
        test_loss, test_acc = evaluate_model(model, test_loader, loss_fn)
        records.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "test_loss": test_loss,
                        "test_acc": test_acc})
    return records
'''
    report = run_assignment(A, replace={"evaluate_model": _REF_EVAL_NO_RESTORE, "fit_model": fit_without_train},
                            stop_after="fit_model_tests")
    assert "fit_model_tests" in report.failed(), report.summary()
    # the same loop is fine when evaluation restores the mode
    report = run_assignment(A, replace={"fit_model": fit_without_train}, stop_after="fit_model_tests")
    assert "fit_model_tests" not in report.failed(), report.summary()
