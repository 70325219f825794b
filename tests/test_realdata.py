"""Real data: scikit-learn's bundled digits and Fashion-MNIST, with the synthetic task's split discipline.

Fashion-MNIST is never downloaded here: the tests write small files in its real format (the IDX files the
torchvision loader reads) and check the loader on them, and the message it gives offline.
"""

from __future__ import annotations

import struct
import urllib.error
import urllib.request

import pytest
import torch

from lrlab.data import (
    DATASETS,
    DatasetUnavailable,
    SealedTestSet,
    load_dataset,
    load_digits_task,
    load_fashion_mnist_task,
)


def test_digits_task_shapes_classes_and_split_discipline():
    task = load_digits_task(seed=3)
    assert task.X_train.shape == (1197, 64) and task.X_val.shape == (300, 64) and task.X_test.shape == (300, 64)
    assert task.y_train.dtype == torch.long and set(task.y_train.tolist()) == set(range(10))
    assert task.info["n_classes"] == 10 and task.info["name"] == "digits"
    # every image in exactly one split (compared in raw pixels: undo the scaling)
    raw = torch.cat([task.scaler.inverse_transform(x) for x in (task.X_train, task.X_val, task.X_test)])
    assert torch.allclose(raw.sort(0).values, task.X_raw.sort(0).values, atol=1e-3)
    # the scaler saw only the training rows
    assert torch.allclose(task.X_train.mean(0), torch.zeros(64), atol=1e-4)
    assert not torch.allclose(task.X_val.mean(0), torch.zeros(64), atol=1e-2)
    xb, yb = next(iter(task.train))
    assert xb.shape == (32, 64) and xb.dtype == torch.float32 and yb.dtype == torch.long


def test_digits_task_is_seeded_and_can_be_sealed():
    a, b, c = load_digits_task(seed=1), load_digits_task(seed=1), load_digits_task(seed=2)
    assert torch.equal(a.X_test, b.X_test) and not torch.equal(a.X_test, c.X_test)
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a.train, b.train, strict=True))   # same batches
    sealed = load_digits_task(seed=1, sealed=True)
    with pytest.raises(SealedTestSet):
        _ = sealed.X_test
    assert torch.equal(sealed.open_test().X_test, a.X_test)
    with pytest.raises(ValueError, match="n_test"):
        load_digits_task(n_test=1797)


def _idx(path, magic, dims, payload: bytes) -> None:
    """One file in the IDX format of (Fashion-)MNIST: big-endian magic, dimension sizes, then unsigned bytes."""
    path.write_bytes(struct.pack(">" + "I" * (1 + len(dims)), magic, *dims) + payload)


def _write_fashion_mnist(root, n_train=40, n_test=12):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = torch.arange(n, dtype=torch.uint8) % 10
        _idx(raw / f"{prefix}-images-idx3-ubyte", 2051, (n, 28, 28), images.numpy().tobytes())
        _idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, (n,), labels.numpy().tobytes())
    return images, labels


def test_fashion_mnist_loader_reads_files_in_the_real_format(tmp_path):
    test_images, test_labels = _write_fashion_mnist(tmp_path)
    task = load_fashion_mnist_task(seed=0, root=str(tmp_path), download=False, n_val=10, batch_size=8)
    assert task.X_train.shape == (30, 784) and task.X_val.shape == (10, 784) and task.X_test.shape == (12, 784)
    assert torch.equal(task.y_test, test_labels.long())   # the official test images are the test split
    raw_test = task.scaler.inverse_transform(task.X_test)
    assert torch.allclose(raw_test, test_images.reshape(12, -1).float() / 255, atol=1e-4)
    assert task.info["n_classes"] == 10
    xb, yb = next(iter(task.train))
    assert xb.shape == (8, 784) and yb.dtype == torch.long
    assert load_dataset("fashion_mnist", 0, root=str(tmp_path), download=False, n_val=10).X_train.shape[0] == 30
    small = load_fashion_mnist_task(seed=0, root=str(tmp_path), download=False, n_val=10, n_train=7)
    assert small.X_train.shape == (7, 784) and torch.equal(small.y_val, task.y_val)   # the same validation rows
    assert set(small.scaler.inverse_transform(small.X_train).sum(1).round().tolist()) <= set(
        task.scaler.inverse_transform(task.X_train).sum(1).round().tolist())   # a subset of the same training rows
    with pytest.raises(ValueError, match="n_train"):
        load_fashion_mnist_task(seed=0, root=str(tmp_path), download=False, n_val=10, n_train=31)


def test_fashion_mnist_offline_names_the_fallback(tmp_path, monkeypatch):
    with pytest.raises(DatasetUnavailable, match=r"download=False.*DATASET='digits'"):
        load_fashion_mnist_task(root=str(tmp_path), download=False)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetUnavailable, match=r"download failed.*no network.*load_digits_task"):
        load_fashion_mnist_task(root=str(tmp_path / "empty"), download=True)
    assert not list((tmp_path / "empty").rglob("*.gz"))   # nothing half-written left behind


def test_fashion_mnist_reads_gzipped_files_and_refuses_broken_ones(tmp_path):
    import gzip

    _write_fashion_mnist(tmp_path)
    raw = tmp_path / "FashionMNIST" / "raw"
    for path in list(raw.iterdir()):
        (raw / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    assert load_fashion_mnist_task(root=str(tmp_path), download=False, n_val=10).X_test.shape == (12, 784)
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(ValueError, match="not an IDX file"):
        load_fashion_mnist_task(root=str(tmp_path), download=False, n_val=10)


def test_load_dataset_names_what_is_allowed():
    assert DATASETS == ("synthetic", "digits", "fashion_mnist")
    assert load_dataset("synthetic", 0).X_train.shape == (800, 10)
    with pytest.raises(ValueError, match="unknown data set 'mnist'; choose one of synthetic, digits, fashion_mnist"):
        load_dataset("mnist")


# ------------------------------------------------------------------------- training on a 10-class task
def test_classification_loss_is_bce_for_binary_and_cross_entropy_for_classes():
    from torch import nn

    from lrlab.training import accuracy_from_logits, classification_loss

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(7, 4, generator=g), torch.tensor([0, 3, 1, 2, 2, 0, 1])
    assert torch.allclose(classification_loss(logits, y), nn.CrossEntropyLoss()(logits, y))
    assert accuracy_from_logits(logits, y) == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    z, t = torch.randn(7, generator=g), torch.tensor([0.0, 1, 1, 0, 1, 0, 0])
    assert torch.allclose(classification_loss(z, t), nn.BCEWithLogitsLoss()(z, t))
    with pytest.raises(ValueError, match="integer class indices"):
        accuracy_from_logits(logits, y.float())


def test_fit_and_evaluate_train_a_ten_class_model_and_name_a_label_dtype_mistake():
    from lrlab.models import MLP
    from lrlab.training import evaluate, fit, make_optimizer

    task = load_digits_task(0, n_val=200, n_test=200)
    model = MLP(64, 32, n_outputs=10, seed=0)
    trace = fit(model, (task.train, task.val), make_optimizer("sgd", model.parameters(), 0.1), 3, progress=False)
    assert trace.final["test_acc"] > 0.8 and not trace.diverged
    loss, acc = evaluate(model, task.val)
    assert acc == pytest.approx(trace.final["test_acc"]) and loss < 1.0
    with pytest.raises(ValueError, match="integer class indices"):
        evaluate(model, [(task.X_val, task.y_val.float())])


def test_make_loaders_keeps_class_indices_and_refuses_labels_out_of_range():
    from lrlab.data import make_loaders

    X, y = torch.randn(20, 3), torch.arange(20) % 5
    train, _ = make_loaders(X, y, X, y, batch_size=4, n_classes=5)
    assert next(iter(train))[1].dtype == torch.long
    with pytest.raises(ValueError, match=r"class indices 0 \.\. 3, found 4"):
        make_loaders(X, y, X, y, n_classes=4)
    with pytest.raises(ValueError, match="the labels 0 and 1, found 2"):
        make_loaders(X, y, X, y)


def test_the_vectorized_sweep_equals_the_sequential_one_on_digits():
    from lrlab.sweep import run_sweep

    task = load_digits_task(0, n_val=200, n_test=200, sealed=True)
    kw = dict(task=task, epochs=2, evaluate_on="val", progress=False)
    for opt in ("sgd", "adam"):
        fast = run_sweep(["cosine"], [0.05], [0, 1], optimizer=opt, method="vectorized", **kw)
        slow = run_sweep(["cosine"], [0.05], [0, 1], optimizer=opt, method="sequential", **kw)
        for a, b in zip(fast.rows, slow.rows, strict=True):
            assert a["final_val_loss"] == pytest.approx(b["final_val_loss"], rel=1e-3, abs=1e-4)
            assert a["final_val_acc"] == pytest.approx(b["final_val_acc"], abs=1 / 200 + 1e-6)
    assert fast.rows[0]["final_val_acc"] > 0.5


def test_the_noise_scale_of_a_ten_class_model_agrees_between_paths():
    from lrlab.gradients import gradient_noise_scale
    from lrlab.models import MLP

    task = load_digits_task(1)
    model = MLP(64, 16, n_outputs=10, seed=1).double()
    X, y = task.X_train[:300].double(), task.y_train[:300]
    fast = gradient_noise_scale(model, X, y, method="norms")
    ref = gradient_noise_scale(model, X, y, method="per-sample")
    assert fast.b_simple == pytest.approx(ref.b_simple, rel=1e-9)
    assert fast.trace == pytest.approx(ref.trace, rel=1e-9)
