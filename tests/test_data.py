"""Tests of lrlab.data: generator, split, standardizer, loaders, task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrlab.data import (
    SealedTestSet,
    Standardizer,
    Task,
    bayes_accuracy,
    bayes_loss,
    check_features,
    check_labels,
    load_task,
    make_classification,
    make_loaders,
    train_test_split,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------- generator
def test_default_task_is_the_tutorials_1000_by_10():
    X, y = make_classification()
    assert X.shape == (1000, 10) and y.shape == (1000,)
    assert X.dtype == torch.float32 and y.dtype == torch.float32
    assert set(y.unique().tolist()) == {0.0, 1.0}
    assert torch.isfinite(X).all()


def test_same_seed_same_data_other_seed_other_data():
    X1, y1 = make_classification(seed=3)
    X2, y2 = make_classification(seed=3)
    X3, _ = make_classification(seed=4)
    assert torch.equal(X1, X2) and torch.equal(y1, y2)
    assert not torch.allclose(X1, X3)


def test_seed_does_not_touch_the_global_generator():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_classification(seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_label_noise_flips_exactly_the_asked_share_and_leaves_x_alone():
    X0, y0 = make_classification(n_samples=500, label_noise=0.0, seed=1)
    X1, y1 = make_classification(n_samples=500, label_noise=0.1, seed=1)
    assert torch.equal(X0, X1)
    assert int((y0 != y1).sum()) == 50
    assert int(y0.sum()) == 250  # balanced before the flips


def test_features_have_different_scales_before_standardization():
    X, _ = make_classification(seed=0)
    std = X.std(dim=0)
    assert float(std.max() / std.min()) > 5
    assert float(X.mean(dim=0).abs().max()) > 0.5


def test_informative_features_carry_signal_and_noise_features_do_not():
    X, y = make_classification(n_samples=6000, n_features=10, n_informative=4, n_redundant=2, seed=2)
    yc = y - y.mean()
    corr = ((X - X.mean(0)) * yc[:, None]).mean(0) / (X.std(0, correction=0) * yc.std(correction=0))
    assert corr[:4].abs().max() > 0.2
    assert corr[6:].abs().max() < 0.06  # the last 4 columns are pure noise


def test_redundant_features_are_linear_combinations_of_informative_ones():
    X, _ = make_classification(n_samples=300, n_features=8, n_informative=3, n_redundant=2, seed=0)
    X = X.double()
    A = torch.cat([X[:, :3], torch.ones(300, 1, dtype=torch.float64)], dim=1)
    coef = torch.linalg.lstsq(A, X[:, 3:5]).solution
    assert float((A @ coef - X[:, 3:5]).abs().max()) < 1e-3


def _logistic_fit(X_tr, y_tr, X_te, y_te):
    w = torch.zeros(X_tr.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")
    X_tr, X_te = X_tr.double(), X_te.double()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(X_tr @ w + b, y_tr.double())
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        logits = X_te @ w + b
        acc = float(((logits > 0) == (y_te > 0.5)).double().mean())
        return acc, float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y_te.double()))


@pytest.mark.parametrize("class_sep, label_noise", [(2.0, 0.05), (1.0, 0.0), (1.5, 0.2)])
def test_bayes_accuracy_and_loss_are_what_the_best_linear_rule_reaches(class_sep, label_noise):
    X, y = make_classification(n_samples=20000, class_sep=class_sep, label_noise=label_noise, seed=7)
    scaler = Standardizer().fit(X[:10000])
    acc, loss = _logistic_fit(scaler.transform(X[:10000]), y[:10000], scaler.transform(X[10000:]), y[10000:])
    assert abs(acc - bayes_accuracy(class_sep, label_noise)) < 0.015
    # the best loss is a lower bound; a linear logit cannot bend its probabilities to the noise level, so it
    # stays a little above it when labels are flipped
    assert bayes_loss(class_sep, label_noise) - 0.01 < loss < bayes_loss(class_sep, label_noise) + 0.04


@pytest.mark.parametrize("class_sep, label_noise", [(2.0, 0.05), (0.7, 0.3)])
def test_bayes_loss_matches_a_simulation_of_the_latent_model(class_sep, label_noise):
    g = torch.Generator().manual_seed(11)
    n = 400_000
    sign = torch.randint(0, 2, (n,), generator=g, dtype=torch.float64) * 2 - 1
    t = torch.randn(n, generator=g, dtype=torch.float64) + class_sep * sign  # the coordinate along the class axis
    y = (sign > 0).double()
    flip = torch.rand(n, generator=g, dtype=torch.float64) < label_noise
    y = torch.where(flip, 1 - y, y)
    q = torch.sigmoid(2 * class_sep * t)
    q = (1 - label_noise) * q + label_noise * (1 - q)  # the true probability of label 1 after the flips
    loss = float(torch.nn.functional.binary_cross_entropy(q, y))
    assert loss == pytest.approx(bayes_loss(class_sep, label_noise), abs=4e-3)


def test_bayes_accuracy_limits():
    assert bayes_accuracy(0.0, 0.1) == pytest.approx(0.5)
    assert bayes_accuracy(10.0, 0.0) == pytest.approx(1.0)
    assert bayes_accuracy(10.0, 0.1) == pytest.approx(0.9)
    assert bayes_accuracy(2.0, 0.05) == pytest.approx(0.9295, abs=1e-4)
    assert bayes_loss(0.0, 0.2) == pytest.approx(math.log(2))
    assert bayes_loss(10.0, 0.0) == pytest.approx(0.0, abs=1e-9)
    assert bayes_loss(10.0, 0.1) == pytest.approx(-(0.1 * math.log(0.1) + 0.9 * math.log(0.9)))
    assert bayes_loss(2.0, 0.05) < bayes_loss(1.0, 0.05) < bayes_loss(1.0, 0.2)
    with pytest.raises(ValueError, match="label_noise"):
        bayes_loss(1.0, 0.9)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"n_informative": 11}, "n_informative"),
        ({"n_informative": 9, "n_redundant": 2}, r"n_informative \+ n_redundant \(9 \+ 2\)"),
        ({"label_noise": 0.7}, "label_noise"),
        ({"class_sep": -1.0}, "class_sep"),
        ({"class_sep": float("nan")}, "class_sep"),
        ({"n_samples": 1}, "n_samples"),
        ({"n_samples": 100.0}, "n_samples must be an integer"),
        ({"seed": True}, "seed"),
        ({"seed": -1}, "seed"),
    ],
)
def test_generator_rejects_bad_parameters_with_clear_messages(kwargs, words):
    with pytest.raises(ValueError, match=words):
        make_classification(**kwargs)


# --------------------------------------------------------------------------------------------- validation
def test_check_features_messages():
    with pytest.raises(ValueError, match="2-D"):
        check_features(torch.zeros(5))
    with pytest.raises(ValueError, match="floating"):
        check_features(torch.zeros(5, 2, dtype=torch.int64))
    X = torch.zeros(6, 3)
    X[4, 1] = float("nan")
    with pytest.raises(ValueError, match="first is row 4"):
        check_features(X)
    with pytest.raises(ValueError, match="tensor"):
        check_features([[1.0, 2.0]])
    assert check_features(np.ones((2, 3), dtype=np.float32)).shape == (2, 3)


def test_check_labels_messages():
    with pytest.raises(ValueError, match="squeeze"):
        check_labels(torch.zeros(5, 1))
    with pytest.raises(ValueError, match="X has 4 rows"):
        check_labels(torch.zeros(5), n_rows=4)
    with pytest.raises(ValueError, match="found 2 at row 1"):
        check_labels(torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="NaN"):
        check_labels(torch.tensor([0.0, float("nan")]))
    assert check_labels(torch.tensor([0, 1, 1])).shape == (3,)


# --------------------------------------------------------------------------------------------- split
def _with_ids(n=100):
    X = torch.randn(n, 3)
    X[:, 0] = torch.arange(n, dtype=torch.float32)  # column 0 identifies the row
    y = (torch.arange(n) % 2).float()
    return X, y


def test_split_sizes_add_up_and_rows_do_not_overlap():
    X, y = _with_ids(100)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, n_train=80, seed=0)
    assert X_tr.shape == (80, 3) and X_te.shape == (20, 3) and y_tr.shape == (80,) and y_te.shape == (20,)
    ids_tr, ids_te = set(X_tr[:, 0].int().tolist()), set(X_te[:, 0].int().tolist())
    assert not ids_tr & ids_te
    assert ids_tr | ids_te == set(range(100))
    # labels travel with their rows
    assert torch.equal(y_tr, (X_tr[:, 0].long() % 2).float())


def test_split_is_shuffled_and_seeded():
    X, y = _with_ids(100)
    a = train_test_split(X, y, 80, seed=1)[1][:, 0]
    b = train_test_split(X, y, 80, seed=1)[1][:, 0]
    c = train_test_split(X, y, 80, seed=2)[1][:, 0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, torch.arange(80, 100, dtype=torch.float32))  # not just the last rows


def test_split_rejects_sizes_that_do_not_add_up():
    X, y = _with_ids(100)
    with pytest.raises(ValueError, match="add up"):
        train_test_split(X, y, n_train=80, n_test=30)
    with pytest.raises(ValueError, match="smaller than the number of rows"):
        train_test_split(X, y, n_train=100)
    with pytest.raises(ValueError, match="n_train"):
        train_test_split(X, y, n_train=0)
    with pytest.raises(ValueError, match="one label per row"):
        train_test_split(X, y[:50], n_train=80)
    assert train_test_split(X, y, n_train=70, n_test=30)[1].shape == (30, 3)


# --------------------------------------------------------------------------------------------- standardize
def test_standardizer_uses_training_statistics_only():
    X, y = make_classification(seed=0)
    X_tr, X_te, _, _ = train_test_split(X, y, 800, seed=0)
    s = Standardizer().fit(X_tr)
    torch.testing.assert_close(s.mean_, X_tr.mean(0))
    torch.testing.assert_close(s.std_, X_tr.std(0, correction=0))
    Z_tr, Z_te = s.transform(X_tr), s.transform(X_te)
    torch.testing.assert_close(Z_tr.mean(0), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(Z_tr.std(0, correction=0), torch.ones(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(Z_te, (X_te - X_tr.mean(0)) / X_tr.std(0, correction=0))
    assert Z_te.mean(0).abs().max() > 1e-3  # the test rows are NOT re-centred on their own mean


def test_standardizer_handles_constant_features():
    X = torch.randn(50, 3)
    X[:, 1] = 4.0
    s = Standardizer().fit(X)
    Z = s.transform(X)
    assert torch.isfinite(Z).all()
    assert s.constant_features_ == [1]
    assert float(s.std_[1]) == 1.0
    assert torch.all(Z[:, 1] == 0)


def test_standardizer_round_trip_and_errors():
    X = torch.randn(30, 4) * 3 + 2
    s = Standardizer()
    with pytest.raises(ValueError, match="not fitted"):
        s.transform(X)
    Z = s.fit_transform(X)
    torch.testing.assert_close(s.inverse_transform(Z), X, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="fitted on 4"):
        s.transform(torch.randn(5, 3))
    X_nan = X.clone()
    X_nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        Standardizer().fit(X_nan)
    with pytest.raises(ValueError, match="eps"):
        Standardizer(eps=-1)


# --------------------------------------------------------------------------------------------- loaders
def _batches(loader):
    return [(xb.clone(), yb.clone()) for xb, yb in loader]


def test_loaders_batch_sizes_and_dtypes():
    t = load_task(0)
    tr, te = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, batch_size=32, seed=0)
    sizes = [len(yb) for _, yb in tr]
    assert sizes == [32] * 25
    xb, yb = next(iter(tr))
    assert xb.dtype == torch.float32 and yb.dtype == torch.float32 and xb.shape == (32, 10)
    tr7, _ = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, batch_size=300, seed=0)
    assert [len(yb) for _, yb in tr7] == [300, 300, 200]
    tr_drop, _ = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, batch_size=300, drop_last=True)
    assert [len(yb) for _, yb in tr_drop] == [300, 300]


def test_loaders_same_seed_same_batches_other_seed_other_batches():
    t = load_task(1)
    a, _ = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, seed=5)
    b, _ = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, seed=5)
    c, _ = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, seed=6)
    ea1, ea2 = _batches(a), _batches(a)
    eb1, eb2 = _batches(b), _batches(b)
    for (x1, y1), (x2, y2) in zip(ea1 + ea2, eb1 + eb2, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(ea1[0][0], ea2[0][0])  # reshuffled every epoch
    assert not torch.equal(ea1[0][0], _batches(c)[0][0])
    torch.manual_seed(0)
    torch.rand(10)  # using the global generator in between changes nothing
    assert torch.equal(_batches(make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, seed=5)[0])[0][0], ea1[0][0])


def test_loaders_match_a_plain_dataloader_with_the_same_generator():
    t = load_task(2)
    fast, _ = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, batch_size=32, seed=9)
    plain = DataLoader(
        TensorDataset(t.X_train, t.y_train), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(9)
    )
    for _ in range(2):
        for (x1, y1), (x2, y2) in zip(fast, plain, strict=True):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_test_loader_keeps_the_order_and_every_row():
    t = load_task(0)
    _, te = make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, test_batch_size=64)
    xs = torch.cat([xb for xb, _ in te])
    assert torch.equal(xs, t.X_test)


def test_loaders_reject_bad_inputs():
    t = load_task(0)
    with pytest.raises(ValueError, match="same features"):
        make_loaders(t.X_train, t.y_train, t.X_test[:, :5], t.y_test)
    with pytest.raises(ValueError, match="batch_size"):
        make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, batch_size=0)
    with pytest.raises(ValueError, match="one label per row"):
        make_loaders(t.X_train, t.y_test, t.X_test, t.y_test)
    with pytest.raises(ValueError, match="floating"):
        make_loaders(t.X_train.long(), t.y_train, t.X_test, t.y_test)
    with pytest.raises(ValueError, match="drop_last"):
        make_loaders(t.X_train, t.y_train, t.X_test, t.y_test, batch_size=900, drop_last=True)


# --------------------------------------------------------------------------------------------- task
def test_load_task_is_the_whole_pipeline():
    t = load_task(4)
    assert isinstance(t, Task)
    assert t.X_train.shape == (800, 10) and t.X_test.shape == (200, 10)
    assert t.X_raw.shape == (1000, 10)
    torch.testing.assert_close(t.X_train.mean(0), torch.zeros(10), atol=1e-5, rtol=0)
    train, test = t
    assert train is t.train and test is t.test
    assert t.info["bayes_accuracy"] == pytest.approx(bayes_accuracy())
    assert t.info["bayes_loss"] == pytest.approx(bayes_loss())
    # the raw rows split the same way as a direct call would
    X_tr, _, _, _ = train_test_split(t.X_raw, t.y_raw, 800, seed=4)
    torch.testing.assert_close(t.scaler.transform(X_tr), t.X_train)
    assert "Task(seed=4" in repr(t)


def test_a_validation_split_comes_out_of_the_training_rows_and_the_test_rows_stay():
    plain = load_task(seed=3)
    task = load_task(seed=3, n_val=200)
    assert task.X_train.shape == (600, 10) and task.X_val.shape == (200, 10) and task.y_val.shape == (200,)
    # the same raw test rows with and without validation (compared before scaling, which differs)
    raw_test = lambda t: t.scaler.inverse_transform(t.X_test)  # noqa: E731
    assert torch.allclose(raw_test(plain), raw_test(task), atol=1e-4)
    # the scaler saw only the 600 training rows
    assert torch.allclose(task.X_train.mean(0), torch.zeros(10), atol=1e-5)
    assert not torch.allclose(task.X_val.mean(0), torch.zeros(10), atol=1e-3)
    rows = {tuple(r.tolist()) for r in torch.cat([task.X_train, task.X_val, task.X_test])}
    assert len(rows) == 1000   # every row in exactly one split
    assert sum(len(b[0]) for b in task.val) == 200
    assert plain.X_val is None and plain.val is None
    with pytest.raises(ValueError, match="n_val"):
        load_task(n_val=800)


def test_a_sealed_task_refuses_its_test_split_until_opened():
    task = load_task(seed=1, n_val=100, sealed=True)
    for name in ("X_test", "y_test", "test"):
        with pytest.raises(SealedTestSet, match=r"validation split .*open_test\(\)"):
            getattr(task, name)
    with pytest.raises(SealedTestSet):
        iter(task)
    assert "sealed" in repr(task) and task.X_val.shape == (100, 10)
    assert task.open_test() is task and task.X_test.shape == (200, 10)
    assert "sealed" not in repr(task)
    with pytest.raises(ValueError, match="needs a validation split"):
        load_task(sealed=True)
