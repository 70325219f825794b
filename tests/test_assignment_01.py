"""01_data_pipeline: the reference passes, other correct answers pass, plausible mistakes lose points."""

import pytest

from nbharness import assert_caught, assert_full_marks, run_assignment

A = "01_data_pipeline"


def test_reference_solution_gets_full_marks():
    report = run_assignment(A)
    assert_full_marks(report, 11)


CORRECT = {
    "split_data": '''
def split_data(X, y, n_train, seed):
    import numpy as np
    if n_train < 1 or n_train >= X.shape[0]:
        raise ValueError("n_train must leave at least one row on each side")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(X.shape[0]))
    train_idx, test_idx = perm[:n_train], perm[n_train:]
    return X.index_select(0, train_idx), X.index_select(0, test_idx), y[train_idx], y[test_idx]
''',
    "fit_standardizer": '''
def fit_standardizer(X_train):
    n = X_train.shape[0]
    mean = X_train.sum(0) / n
    std = (((X_train - mean) ** 2).sum(0) / (n - 1)).sqrt()  # the sample standard deviation
    std[std < 1e-8] = 1.0
    return mean, std
''',
    "standardize_pair": '''
def standardize_pair(X_train, X_test):
    stats = fit_standardizer(X_train)
    scale = lambda X: (X - stats[0].unsqueeze(0)) / stats[1].unsqueeze(0)
    return scale(X_train), scale(X_test)
''',
    "make_loaders": '''
from torch.utils.data import RandomSampler

def make_loaders(X_train, y_train, X_test, y_test, batch_size, seed):
    train_set = TensorDataset(X_train, y_train)
    sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(seed))
    train = DataLoader(train_set, batch_size=batch_size, sampler=sampler)
    test = DataLoader(TensorDataset(X_test, y_test), batch_size=len(X_test))
    return train, test
''',
    "mc_leak": 'ANSWER_LEAK = " b"',
}


def test_differently_written_correct_answers_get_full_marks():
    report = run_assignment(A, replace=CORRECT)
    assert_full_marks(report)


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
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_plausible_mistake_loses_the_points_of_its_exercise(mistake):
    grade_id, src = MISTAKES[mistake]
    report = run_assignment(A, replace={grade_id: src}, stop_after=f"{grade_id}_tests")
    assert_caught(report, grade_id, mistake)
