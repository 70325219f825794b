"""01_data_pipeline: the reference passes, other correct answers pass, plausible mistakes lose points,
shortcuts into lrlab score 0, and honest warnings or progress bars cost nothing."""

import pytest

from nbharness import (
    assert_caught,
    assert_full_marks,
    assert_no_stderr,
    assert_shortcut_caught,
    run_assignment,
)

A = "01_data_pipeline"


def test_reference_solution_gets_full_marks():
    report = run_assignment(A)
    assert_full_marks(report, 11)
    assert_no_stderr(report)


# Correct answers in other idioms: (grade_id, source). Each must keep full marks.
CORRECT = {
    "split with a NumPy generator and index_select": ("split_data", '''
def split_data(X, y, n_train, seed):
    import numpy as np
    if n_train < 1 or n_train >= X.shape[0]:
        raise ValueError("n_train must leave at least one row on each side")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(X.shape[0]))
    train_idx, test_idx = perm[:n_train], perm[n_train:]
    return X.index_select(0, train_idx), X.index_select(0, test_idx), y[train_idx], y[test_idx]
'''),
    "split by argsort of seeded uniform numbers, returned as a list": ("split_data", '''
def split_data(X, y, n_train, seed):
    n = X.shape[0]
    if not (0 < n_train < n):
        raise ValueError(f"n_train must be in 1..{n - 1}")
    order = torch.rand(n, generator=torch.Generator().manual_seed(seed)).argsort()
    tr, te = torch.split(order, [n_train, n - n_train])
    return [X[tr], X[te], y[tr], y[te]]
'''),
    "split with Python's own random.Random": ("split_data", '''
import random

def split_data(X, y, n_train, seed):
    if n_train not in range(1, len(X)):
        raise ValueError("n_train out of range")
    rows = list(range(len(X)))
    random.Random(seed).shuffle(rows)
    tr, te = torch.tensor(rows[:n_train]), torch.tensor(rows[n_train:])
    return X[tr], X[te], y[tr], y[te]
'''),
    "sample standard deviation written out": ("fit_standardizer", '''
def fit_standardizer(X_train):
    n = X_train.shape[0]
    mean = X_train.sum(0) / n
    std = (((X_train - mean) ** 2).sum(0) / (n - 1)).sqrt()  # the sample standard deviation
    std[std < 1e-8] = 1.0
    return mean, std
'''),
    "statistics in float64 with std_mean and masked_fill": ("fit_standardizer", '''
def fit_standardizer(X_train):
    std, mean = torch.std_mean(X_train.double(), dim=0, correction=0)
    return mean, std.masked_fill(std < 1e-8, 1.0)
'''),
    "one column at a time": ("fit_standardizer", '''
def fit_standardizer(X_train):
    means, stds = [], []
    for j in range(X_train.shape[1]):
        col = X_train[:, j]
        s = col.std(unbiased=False)
        means.append(col.mean())
        stds.append(s if s >= 1e-8 else torch.ones_like(s))
    return torch.stack(means), torch.stack(stds)
'''),
    "standardize with a lambda and unsqueeze": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    stats = fit_standardizer(X_train)
    scale = lambda X: (X - stats[0].unsqueeze(0)) / stats[1].unsqueeze(0)
    return scale(X_train), scale(X_test)
'''),
    "standardize with torch.sub and torch.div": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_train)
    return tuple(torch.div(torch.sub(X, mean), std) for X in (X_train, X_test))
'''),
    "standardize by multiplying with the reciprocal": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_train)
    inv = 1.0 / std
    return [(X_train - mean) * inv, (X_test - mean) * inv]
'''),
    "loaders with a seeded RandomSampler": ("make_loaders", '''
from torch.utils.data import RandomSampler

def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    train_set = TensorDataset(X_train, y_train)
    sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(seed))
    train = DataLoader(train_set, batch_size=batch_size, sampler=sampler)
    test = DataLoader(TensorDataset(X_test, y_test), batch_size=len(X_test))
    return train, test
'''),
    "loaders with keyword arguments and the test batch size of the training loader": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    g = torch.Generator()
    g.manual_seed(seed)
    train_loader = DataLoader(dataset=TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True,
                              generator=g, drop_last=False)
    test_loader = DataLoader(dataset=TensorDataset(X_test, y_test), batch_size=batch_size)
    return train_loader, test_loader
'''),
    "loaders with a BatchSampler over a seeded RandomSampler": ("make_loaders", '''
from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler

def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    train_set, test_set = TensorDataset(X_train, y_train), TensorDataset(X_test, y_test)
    sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(seed))
    train = DataLoader(train_set, batch_sampler=BatchSampler(sampler, batch_size, drop_last=False))
    test = DataLoader(test_set, sampler=SequentialSampler(test_set), batch_size=64)
    return train, test
'''),
    # helpers at the top level of the answer cell, named like the test cell's own variables once were
    "fit_standardizer with helpers named mean and std": ("fit_standardizer", '''
def mean(X):
    return X.sum(dim=0) / X.shape[0]


def std(X):
    s = ((X - mean(X)) ** 2).mean(dim=0).sqrt()
    return torch.where(s < 1e-8, torch.ones_like(s), s)


def fit_standardizer(X_train):
    return mean(X_train), std(X_train)
'''),
    "multiple choice in lower case with spaces": ("mc_leak", 'ANSWER_LEAK = " b "'),
    "multiple choice with a period": ("mc_leak", 'ANSWER_LEAK = "b."'),
    "multiple choice in parentheses": ("mc_leak", 'ANSWER_LEAK = "(B)"'),
    "multiple choice with the option's text": ("mc_leak", 'ANSWER_LEAK = "B. The test rows help set the mean"'),
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
    assert_full_marks(report, 11)


# Honest code that warns, prints to stderr or draws a plain tqdm bar: nbgrader would give 0 for stderr in a test
# cell; the course sends all of it to stdout, so these keep full marks.
NOISY = {
    "split_data": '''
import sys
import warnings

print("defining split_data", file=sys.stderr)  # stderr in the answer cell itself

def split_data(X, y, n_train, seed):
    if not 1 <= n_train <= len(X) - 1:
        raise ValueError("n_train must leave a row on each side")
    print(f"splitting {len(X)} rows", file=sys.stderr)
    warnings.warn("this split is not stratified by class", UserWarning)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]
''',
    "fit_standardizer": '''
import numpy as np
from tqdm import tqdm

def fit_standardizer(X_train):
    cols = []
    for j in tqdm(range(X_train.shape[1]), desc="features"):
        np.log(np.zeros(1))  # a RuntimeWarning from NumPy
        cols.append(X_train[:, j])
    X = torch.stack(cols, dim=1)
    std = X.std(0, correction=0)
    return X.mean(0), torch.where(std < 1e-8, torch.ones_like(std), std)
''',
    "standardize_pair": '''
import warnings

def standardize_pair(X_train, X_test):
    warnings.warn("standardize_pair: statistics from the training rows", RuntimeWarning)
    mean, std = fit_standardizer(X_train)
    return (X_train - mean) / std, (X_test - mean) / std
''',
    "make_loaders": '''
import warnings

def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    warnings.warn("make_loaders: shuffling the training rows", UserWarning)
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
''',
}


@pytest.mark.parametrize("grade_id", sorted(NOISY))
def test_warnings_stderr_and_progress_bars_keep_full_marks(grade_id):
    report = run_assignment(A, replace={grade_id: NOISY[grade_id]}, stop_after=f"{grade_id}_tests")
    assert_full_marks(report)
    assert_no_stderr(report)
    out = "".join(o.get("text", "") for o in report.outputs[f"{grade_id}_tests"] if o.get("name") == "stdout")
    assert "Warning" in out, out


# One call into lrlab in place of the learner's own work: 0 for that exercise, with the "write it yourself" message.
SHORTCUTS = {
    "split_data": '''
import lrlab.data as d

def split_data(X, y, n_train, seed):
    return d.train_test_split(X, y, n_train=n_train, seed=seed)
''',
    "fit_standardizer": '''
from lrlab.data import Standardizer

def fit_standardizer(X_train):
    scaler = Standardizer(eps=1e-8).fit(X_train)
    return scaler.mean_, scaler.std_
''',
    "standardize_pair": '''
import importlib

def standardize_pair(X_train, X_test):
    scaler = importlib.import_module("lrlab.data").Standardizer().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test)
''',
    "make_loaders": '''
import functools

make_loaders = functools.partial(lrlab.data.make_loaders)
''',
}


@pytest.mark.parametrize("grade_id", sorted(SHORTCUTS))
def test_a_shortcut_into_lrlab_scores_zero_and_says_write_it_yourself(grade_id):
    report = run_assignment(A, replace={grade_id: SHORTCUTS[grade_id]}, stop_after=f"{grade_id}_tests")
    assert_shortcut_caught(report, grade_id, grade_id)


MISTAKES = {
    # split_data
    "split samples rows with replacement (sets overlap)": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    g = torch.Generator().manual_seed(seed)
    tr = torch.randint(0, len(X), (n_train,), generator=g)
    te = torch.randint(0, len(X), (len(X) - n_train,), generator=g)
    return X[tr], X[te], y[tr], y[te]
'''),
    "split from two different permutations (sets overlap)": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    g = torch.Generator().manual_seed(seed)
    tr = torch.randperm(len(X), generator=g)[:n_train]
    te = torch.randperm(len(X), generator=g)[n_train:]
    return X[tr], X[te], y[tr], y[te]
'''),
    "non-seeded split (global generator)": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    order = torch.randperm(len(X))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]
'''),
    "split without shuffling": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    return X[:n_train], X[n_train:], y[:n_train], y[n_train:]
'''),
    "labels shuffled apart from their rows": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    g = torch.Generator().manual_seed(seed)
    ox, oy = torch.randperm(len(X), generator=g), torch.randperm(len(X), generator=g)
    return X[ox[:n_train]], X[ox[n_train:]], y[oy[:n_train]], y[oy[n_train:]]
'''),
    "split ignores the seed": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(42))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]
'''),
    "split accepts an empty test set": ("split_data", '''
def split_data(X, y, n_train, seed):
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]
'''),
    # fit_standardizer
    "zero standard deviation left as is": ("fit_standardizer", '''
def fit_standardizer(X_train):
    return X_train.mean(0), X_train.std(0, correction=0)
'''),
    "statistics over the rows instead of the features": ("fit_standardizer", '''
def fit_standardizer(X_train):
    std = X_train.std(1)
    return X_train.mean(1), torch.where(std < 1e-8, torch.ones_like(std), std)
'''),
    "variance instead of standard deviation": ("fit_standardizer", '''
def fit_standardizer(X_train):
    var = X_train.var(0, correction=0)
    return X_train.mean(0), torch.where(var < 1e-8, torch.ones_like(var), var)
'''),
    "hard-coded visible expected values": ("fit_standardizer", '''
def fit_standardizer(X_train):
    return torch.tensor([4.0, 10.0, 1.0]), torch.tensor([2.2360680, 1.0, 2.2360680])
'''),
    # standardize_pair
    "statistics from the test set": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_test)
    return (X_train - mean) / std, (X_test - mean) / std
'''),
    "statistics from the whole data (normalize before the split)": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(torch.cat([X_train, X_test]))
    return (X_train - mean) / std, (X_test - mean) / std
'''),
    "each set standardized with its own statistics": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    m1, s1 = fit_standardizer(X_train)
    m2, s2 = fit_standardizer(X_test)
    return (X_train - m1) / s1, (X_test - m2) / s2
'''),
    "standardizes the inputs in place": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_train)
    X_train -= mean
    X_train /= std
    X_test -= mean
    X_test /= std
    return X_train, X_test
'''),
    "centres but does not scale": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_train)
    return X_train - mean, X_test - mean
'''),
    # make_loaders
    "non-seeded training loader": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    "global manual_seed instead of a generator": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    torch.manual_seed(seed)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    "training loader not shuffled": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=False),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    "drops the last partial batch": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g,
                       drop_last=True),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    "shuffled test loader": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed)))
'''),
    "loader ignores the seed": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    g = torch.Generator().manual_seed(0)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    # multiple choice
    "wrong multiple-choice answer": ("mc_leak", 'ANSWER_LEAK = "C"'),
    # split_data (more)
    "split reseeds PyTorch's global generator": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    torch.manual_seed(seed)
    order = torch.randperm(len(X))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]
'''),
    "split reseeds NumPy's global generator": ("split_data", '''
import numpy as np

def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    np.random.seed(seed)
    order = torch.from_numpy(np.random.permutation(len(X)))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]
'''),
    "split refuses a single training row": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 < n_train < len(X):
        raise ValueError("bad n_train")
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    return X[order[:n_train]], X[order[n_train:]], y[order[:n_train]], y[order[n_train:]]
'''),
    "split returns X_train, y_train, X_test, y_test": ("split_data", '''
def split_data(X, y, n_train, seed):
    if not 1 <= n_train < len(X):
        raise ValueError("bad n_train")
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    return X[order[:n_train]], y[order[:n_train]], X[order[n_train:]], y[order[n_train:]]
'''),
    # fit_standardizer (more)
    "only exact zeros replaced": ("fit_standardizer", '''
def fit_standardizer(X_train):
    std = X_train.std(0, correction=0)
    std[std == 0] = 1.0
    return X_train.mean(0), std
'''),
    "std clamped at 1e-8 instead of replaced by 1": ("fit_standardizer", '''
def fit_standardizer(X_train):
    return X_train.mean(0), X_train.std(0, correction=0).clamp(min=1e-8)
'''),
    "returns NumPy arrays": ("fit_standardizer", '''
def fit_standardizer(X_train):
    X = X_train.numpy()
    std = X.std(0)
    std[std < 1e-8] = 1.0
    return X.mean(0), std
'''),
    "centres X_train in place": ("fit_standardizer", '''
def fit_standardizer(X_train):
    mean = X_train.mean(0)
    X_train -= mean
    std = X_train.std(0, correction=0)
    return mean, torch.where(std < 1e-8, torch.ones_like(std), std)
'''),
    # standardize_pair (more)
    "test rows centred with their own mean": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_train)
    return (X_train - mean) / std, (X_test - X_test.mean(0)) / std
'''),
    "returns the test set first": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_train)
    return (X_test - mean) / std, (X_train - mean) / std
'''),
    "std taken directly, constant feature not fixed": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = X_train.mean(0), X_train.std(0, correction=0)
    return (X_train - mean) / std, (X_test - mean) / std
'''),
    "only the test set standardized": ("standardize_pair", '''
def standardize_pair(X_train, X_test):
    mean, std = fit_standardizer(X_train)
    return X_train, (X_test - mean) / std
'''),
    # make_loaders (more)
    "loaders swapped": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size),
            DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g))
'''),
    "one generator shared by every loader": ("make_loaders", '''
_shared = torch.Generator()

def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    _shared.manual_seed(seed)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=_shared),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    "training rows sampled with replacement": ("make_loaders", '''
from torch.utils.data import RandomSampler

def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    train_set = TensorDataset(X_train, y_train)
    sampler = RandomSampler(train_set, replacement=True, generator=torch.Generator().manual_seed(seed))
    return (DataLoader(train_set, batch_size=batch_size, sampler=sampler),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    "test loader drops its last partial batch": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size, drop_last=True))
'''),
    "seeded global generator plus shuffle": ("make_loaders", '''
def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    return (DataLoader(TensorDataset(X_train, y_train), batch_size=batch_size, shuffle=True, generator=g),
            DataLoader(TensorDataset(X_test, y_test), batch_size=batch_size))
'''),
    # multiple choice (more)
    "multiple choice: two letters": ("mc_leak", 'ANSWER_LEAK = "B or C"'),
    "multiple choice: D": ("mc_leak", 'ANSWER_LEAK = "d."'),
    "multiple choice: the option's text of A": ("mc_leak", 'ANSWER_LEAK = "A. The 200 test rows are used"'),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)


# Mistakes whose failure message names what went wrong (a recognised mistake gets its own hint).
HINTS = {
    "loaders swapped": "the loaders are swapped",
    "split reseeds PyTorch's global generator": "changed PyTorch's global random generator",
    "statistics from the whole data (normalize before the split)": "statistics of ALL rows",
    "each set standardized with its own statistics": "scaled with their OWN statistics",
    "drops the last partial batch": "keep the last, smaller batch",
    "only exact zeros replaced": "BELOW 1e-8",
}


@pytest.mark.parametrize("mistake", sorted(HINTS))
def test_a_recognised_mistake_gets_a_hint_that_names_it(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")
    assert HINTS[mistake] in report.tests[f"{grade_id}_tests"].error, report.summary()
