"""The data pipeline of the course: a synthetic binary task, a split, standardization, loaders.

The tutorial the course grows from works on 1000 rows x 10 features, normalizes them, splits 800/200
and trains on mini-batches. This module does the same, in the right order::

    X, y = make_classification(seed=0)                       # 1. generate (no download)
    X_train, X_test, y_train, y_test = train_test_split(X, y, n_train=800, seed=0)   # 2. split first
    scaler = Standardizer().fit(X_train)                       # 3. statistics of the TRAINING rows only
    X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    train_loader, test_loader = make_loaders(X_train, y_train, X_test, y_test, batch_size=32, seed=0)

or, all at once, ``task = load_task(seed=0)``.

Why split before normalizing? The test rows stand for data the model has never seen. If the mean and
standard deviation come from all 1000 rows, 200 test rows have shaped the preprocessing: information
flowed from the test set into training. :func:`lrlab.leakage.leakage_report` measures how much, with numbers.

How the data is made (:func:`make_classification`)
---------------------------------------------------
* Each row belongs to class 0 or 1 (half and half). In a latent space of ``n_informative`` dimensions,
  class 1 rows are Gaussian around ``+class_sep * u`` and class 0 rows around ``-class_sep * u``
  (``u`` a random unit vector, unit variance in every direction). The best any classifier can do on
  the clean labels is to split along ``u``; it still errs on a fraction ``Phi(-class_sep)`` of rows
  (``Phi`` the standard normal CDF) because the two Gaussians overlap.
* The informative features are a random rotation of the latent coordinates, each stretched a little
  (so they are correlated, and no single feature tells the whole story). ``n_redundant`` features are random
  linear combinations of the informative ones (no new information); the remaining features are pure noise.
* Every feature is then given its own scale and offset, as real measurements have (this is what
  standardization undoes).
* Finally a fraction ``label_noise`` of the labels is flipped at random. No model can predict a coin
  flip, so accuracy has an honest ceiling: :func:`bayes_accuracy` computes it.

imports: args.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lrlab.args import check_bool, check_int, check_real

__all__ = [
    "DATASETS",
    "BatchedTensorDataset",
    "DatasetUnavailable",
    "SealedTestSet",
    "Standardizer",
    "Task",
    "bayes_accuracy",
    "bayes_loss",
    "check_features",
    "check_labels",
    "data_home",
    "keep_batch",
    "load_dataset",
    "load_digits_task",
    "load_fashion_mnist_task",
    "load_task",
    "make_classification",
    "read_idx",
    "make_loaders",
    "train_test_split",
]

# The defaults reproduce the tutorial's task: 1000 rows x 10 features, about 9 in 10 rows classifiable.
N_SAMPLES = 1000
N_FEATURES = 10
N_INFORMATIVE = 4
N_REDUNDANT = 2
CLASS_SEP = 2.0
LABEL_NOISE = 0.05
N_TRAIN = 800
BATCH_SIZE = 32


# --------------------------------------------------------------------------------------------- validation
def _int(value: Any, name: str, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high] (:func:`lrlab.args.check_int`)."""
    return check_int(value, name, low=low, high=high)


def _seed(seed: Any) -> int:
    return check_int(seed, "seed", low=0, high=2**63 - 1)


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise ValueError(
        f"{name} must be a torch tensor (or a NumPy array), got {type(value).__name__}; "
        f"convert it with torch.as_tensor({name})"
    )


def check_features(X: Any, name: str = "X") -> torch.Tensor:
    """Return ``X`` as a tensor after checking it is a finite floating matrix [rows, features].

    Raises a ValueError that names the problem: not a tensor, not 2-D, no rows, integer dtype
    (``nn.Linear`` needs floats: use ``X.float()``), NaN or inf values (with the first bad row).
    """
    X = _as_tensor(X, name)
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [rows, features], got shape {tuple(X.shape)}; "
            "a single row needs X.unsqueeze(0), a single feature X.unsqueeze(1)"
        )
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one feature, got shape {tuple(X.shape)}")
    if not X.is_floating_point():
        raise ValueError(f"{name} must hold floating-point numbers, got dtype {X.dtype}; use {name}.float()")
    finite = torch.isfinite(X)
    if not bool(finite.all()):
        bad_rows = (~finite).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"{name} contains NaN or inf in {len(bad_rows)} row(s), the first is row {int(bad_rows[0])}; "
            "remove or fill those rows before training (allowed: finite numbers only)"
        )
    return X


def check_labels(y: Any, n_rows: int | None = None, name: str = "y", n_classes: int = 2) -> torch.Tensor:
    """Return ``y`` as a tensor after checking it is a 1-D vector of 0/1 labels (``n_rows`` long if given).

    Labels may be float, integer or bool; anything other than 0 and 1 (or NaN) is an error, and so is
    a column vector [n, 1] (use ``y.squeeze(1)``). With ``n_classes`` above 2 the labels must be the
    whole numbers ``0 .. n_classes - 1`` (class indices).
    """
    y = _as_tensor(y, name)
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D [rows], got shape {tuple(y.shape)}"
            + ("; use y.squeeze(1)" if y.ndim == 2 and y.shape[1] == 1 else "")
        )
    if n_rows is not None and len(y) != n_rows:
        raise ValueError(f"{name} must have one label per row of X: X has {n_rows} rows, {name} has {len(y)}")
    allowed = "0 and 1" if n_classes == 2 else f"the class indices 0 .. {n_classes - 1}"
    if y.is_complex():
        raise ValueError(f"{name} must hold {allowed} as float, int or bool, got dtype {y.dtype}")
    values = y.to(torch.float64)
    if bool(torch.isnan(values).any()):
        raise ValueError(f"{name} contains NaN; labels must be {allowed}")
    bad = (values != values.round()) | (values < 0) | (values > n_classes - 1)
    if bool(bad.any()):
        first = int(bad.nonzero()[0])
        raise ValueError(
            f"{name} must contain only {'the labels ' if n_classes == 2 else ''}{allowed}, "
            f"found {values[first].item():g} at row {first}"
        )
    return y


# --------------------------------------------------------------------------------------------- generate
def _normal_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def bayes_accuracy(class_sep: float = CLASS_SEP, label_noise: float = LABEL_NOISE) -> float:
    """The best expected accuracy any classifier can reach on :func:`make_classification` data.

    On clean labels the best rule errs where the two class Gaussians overlap, a fraction
    ``e = Phi(-class_sep)``. Flipping a fraction ``p`` of the labels turns right answers wrong and
    (luckily) some wrong ones right: ``accuracy = (1 - p) * (1 - e) + p * e``. With the defaults
    (class_sep 2.0, label_noise 0.05) that is about 0.930. A test accuracy above it on 200 rows is
    luck, not skill; far below it means the model has more to learn.
    """
    sep = float(class_sep)
    p = float(label_noise)
    if not math.isfinite(sep) or sep < 0:
        raise ValueError(f"class_sep must be a finite number >= 0, got {class_sep!r}")
    if not 0.0 <= p <= 0.5:
        raise ValueError(f"label_noise must be between 0 and 0.5, got {label_noise!r}")
    e = _normal_cdf(-sep)
    return (1 - p) * (1 - e) + p * e


def bayes_loss(class_sep: float = CLASS_SEP, label_noise: float = LABEL_NOISE) -> float:
    """The lowest expected BCE loss (nats per row) any model can reach on :func:`make_classification` data.

    A model that knows the true probability ``q(x)`` of label 1 for every row pays its entropy
    ``-q log q - (1 - q) log(1 - q)`` on average. Along the class direction ``t`` (Gaussian around
    ``+-class_sep``) the clean log-odds are ``2 * class_sep * t``; flipping a fraction ``p`` of labels
    mixes ``q`` towards 1/2. The expectation over ``t`` is computed with Gauss-Hermite quadrature. With
    the defaults it is about 0.236: a training loss far below it means memorised noise, and a test loss
    cannot go below it except by luck.
    """
    bayes_accuracy(class_sep, label_noise)  # validates both
    sep, p = float(class_sep), float(label_noise)
    nodes, weights = np.polynomial.hermite_e.hermegauss(121)  # integrates against exp(-t^2 / 2)
    t = nodes + sep  # t ~ N(sep, 1): class 1's rows (class 0 is the mirror image)
    q = 1.0 / (1.0 + np.exp(-np.clip(2.0 * sep * t, -700, 700)))
    q = (1 - p) * q + p * (1 - q)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nan_to_num(q * np.log(q)) - np.nan_to_num((1 - q) * np.log1p(-q))
    return float((weights * entropy).sum() / weights.sum())


def make_classification(
    n_samples: int = N_SAMPLES,
    n_features: int = N_FEATURES,
    n_informative: int = N_INFORMATIVE,
    class_sep: float = CLASS_SEP,
    label_noise: float = LABEL_NOISE,
    seed: int = 0,
    *,
    n_redundant: int = N_REDUNDANT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A synthetic binary classification task: ``X`` float32 [n_samples, n_features], ``y`` float32 0/1.

    Args:
        n_samples: rows (at least 2; half of them class 0, half class 1).
        n_features: columns; the first ``n_informative`` are informative, the next ``n_redundant`` are
            linear combinations of those, the rest are noise.
        n_informative: informative features (>= 1).
        class_sep: distance of each class centre from the boundary, in within-class standard deviations.
            Larger is easier; 0 makes the classes identical. The clean-label error of the best classifier
            is ``Phi(-class_sep)``.
        label_noise: fraction of labels flipped at random (0 to 0.5); exactly ``round(label_noise * n)``
            rows are flipped.
        seed: the same seed gives the same data, bit for bit.
        n_redundant: redundant features (default 2); ``n_informative + n_redundant <= n_features``.

    The module docstring explains the construction; :func:`bayes_accuracy` gives the ceiling.
    """
    n_samples = _int(n_samples, "n_samples", 2)
    n_features = _int(n_features, "n_features", 1)
    n_informative = _int(n_informative, "n_informative", 1, n_features)
    n_redundant = _int(n_redundant, "n_redundant", 0)
    if n_informative + n_redundant > n_features:
        raise ValueError(
            f"n_informative + n_redundant ({n_informative} + {n_redundant}) "
            f"must be <= n_features ({n_features})"
        )
    bayes_accuracy(class_sep, label_noise)  # validates both
    seed = _seed(seed)

    g = torch.Generator().manual_seed(seed)
    dt = torch.float64

    # Labels: half and half, in random order.
    y = torch.zeros(n_samples, dtype=dt)
    y[n_samples // 2 :] = 1.0
    y = y[torch.randperm(n_samples, generator=g)]
    signs = 2.0 * y - 1.0  # -1 for class 0, +1 for class 1

    # Latent space: unit-variance Gaussians centred at -/+ class_sep along a random unit direction u.
    u = torch.randn(n_informative, generator=g, dtype=dt)
    u = u / u.norm()
    z = torch.randn(n_samples, n_informative, generator=g, dtype=dt) + float(class_sep) * signs[:, None] * u

    # Informative features: a random rotation of the latent coordinates, each stretched by 0.5 to 1.5,
    # so the features are correlated, yet no information is lost and no direction is nearly flat
    # (a badly conditioned mix would make gradient descent crawl along it).
    rotation, _ = torch.linalg.qr(torch.randn(n_informative, n_informative, generator=g, dtype=dt))
    stretch = torch.empty(n_informative, dtype=dt).uniform_(0.5, 1.5, generator=g)
    informative = z @ (rotation * stretch)
    redundant = (
        informative
        @ torch.randn(n_informative, n_redundant, generator=g, dtype=dt)
        / math.sqrt(n_informative)
    )
    n_noise = n_features - n_informative - n_redundant
    noise = torch.randn(n_samples, n_noise, generator=g, dtype=dt)
    X = torch.cat([informative, redundant, noise], dim=1)

    # Each feature gets its own unit and origin: scales from 0.2 to 5, offsets from -3 to 3.
    scale = torch.exp(torch.empty(n_features, dtype=dt).uniform_(math.log(0.2), math.log(5.0), generator=g))
    offset = torch.empty(n_features, dtype=dt).uniform_(-3.0, 3.0, generator=g)
    X = X * scale + offset

    # Label noise: flip exactly round(label_noise * n) labels.
    n_flip = round(float(label_noise) * n_samples)
    if n_flip:
        flip = torch.randperm(n_samples, generator=g)[:n_flip]
        y[flip] = 1.0 - y[flip]
    return X.float(), y.float()


# --------------------------------------------------------------------------------------------- split
def train_test_split(
    X: Any, y: Any, n_train: int = N_TRAIN, seed: int = 0, *, n_test: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shuffle the rows with ``seed`` and cut them into ``n_train`` training and ``n_test`` test rows.

    ``n_test`` defaults to the rest; when given, ``n_train + n_test`` must equal the number of rows
    (no row silently dropped). Every row lands in exactly one of the two sets, and the same seed
    always gives the same split. Returns ``X_train, X_test, y_train, y_test`` (like scikit-learn).
    """
    X = check_features(X)
    y = check_labels(y, len(X))
    n = len(X)
    n_train = _int(n_train, "n_train", 1)
    if n_test is None:
        if n_train >= n:
            raise ValueError(
                f"n_train ({n_train}) must be smaller than the number of rows ({n}) to leave a test set"
            )
        n_test = n - n_train
    n_test = _int(n_test, "n_test", 1)
    if n_train + n_test != n:
        raise ValueError(
            f"n_train + n_test must add up to the number of rows: {n_train} + {n_test} = {n_train + n_test}, "
            f"but X has {n} rows"
        )
    g = torch.Generator().manual_seed(_seed(seed))
    order = torch.randperm(n, generator=g)
    train_idx, test_idx = order[:n_train], order[n_train:]
    return X[train_idx], X[test_idx], y[train_idx], y[test_idx]


# --------------------------------------------------------------------------------------------- standardize
class Standardizer:
    """Rescale every feature to mean 0 and standard deviation 1, with statistics learned by :meth:`fit`.

    Fit it on the training rows only, then transform training and test rows with the SAME numbers::

        scaler = Standardizer().fit(X_train)
        X_train_s, X_test_s = scaler.transform(X_train), scaler.transform(X_test)

    ``mean_`` and ``std_`` hold the learned statistics (``std_`` is the population standard deviation,
    dividing by n). A feature that is constant on the training rows has standard deviation 0; dividing
    by it would give inf/NaN, so its ``std_`` is set to 1 (the feature is only centred) and its index is
    listed in ``constant_features_``. ``eps`` decides what counts as constant.
    """

    def __init__(self, eps: float = 1e-12) -> None:
        self.eps = check_real(eps, "eps", low=0, hint="what counts as a constant feature's standard deviation")
        self.mean_: torch.Tensor | None = None
        self.std_: torch.Tensor | None = None
        self.constant_features_: list[int] = []
        self.n_rows_: int = 0

    def fit(self, X: Any) -> Standardizer:
        """Learn per-feature mean and standard deviation from ``X`` [rows, features]; returns self."""
        X = check_features(X)
        mean = X.mean(dim=0)
        std = X.std(dim=0, correction=0)
        constant = std <= self.eps
        self.mean_ = mean
        self.std_ = torch.where(constant, torch.ones_like(std), std)
        self.constant_features_ = [int(i) for i in constant.nonzero().flatten()]
        self.n_rows_ = len(X)
        return self

    def _check_fitted(self) -> None:
        if self.mean_ is None or self.std_ is None:
            raise ValueError("this Standardizer is not fitted yet: call .fit(X_train) first")

    def _check_width(self, X: torch.Tensor) -> None:
        assert self.mean_ is not None
        if X.shape[1] != len(self.mean_):
            raise ValueError(
                f"X has {X.shape[1]} features but the Standardizer was fitted on {len(self.mean_)}"
            )

    def transform(self, X: Any) -> torch.Tensor:
        """``(X - mean_) / std_`` with the fitted statistics (never re-estimated from ``X``)."""
        self._check_fitted()
        X = check_features(X)
        self._check_width(X)
        return (X - self.mean_.to(X)) / self.std_.to(X)

    def fit_transform(self, X: Any) -> torch.Tensor:
        """``fit(X)`` then ``transform(X)``: use it on the training rows only."""
        return self.fit(X).transform(X)

    def inverse_transform(self, Z: Any) -> torch.Tensor:
        """Undo :meth:`transform`: ``Z * std_ + mean_``."""
        self._check_fitted()
        Z = check_features(Z, "Z")
        self._check_width(Z)
        return Z * self.std_.to(Z) + self.mean_.to(Z)

    def __repr__(self) -> str:
        if self.mean_ is None:
            return "Standardizer(not fitted)"
        return f"Standardizer(fitted on {self.n_rows_} rows x {len(self.mean_)} features)"


# --------------------------------------------------------------------------------------------- loaders
class BatchedTensorDataset(TensorDataset):
    """A ``TensorDataset`` that hands a whole batch of rows to the ``DataLoader`` at once.

    A plain ``TensorDataset`` is read one row at a time and the rows are stacked again into a batch
    (``default_collate``): for a tiny model that bookkeeping costs more than the training step itself.
    ``__getitems__`` (which ``DataLoader`` uses when a dataset has it) slices all rows of a batch in one
    indexing operation instead; :func:`keep_batch` then passes the batch through unchanged. Which rows
    form which batch is decided by the sampler exactly as before, so the batches are the same as those
    of ``DataLoader(TensorDataset(X, y), batch_size, shuffle=True, generator=...)`` with the same seed.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return tuple(t[idx] for t in self.tensors)


def keep_batch(batch: Any) -> Any:
    """The ``collate_fn`` for :class:`BatchedTensorDataset`: the batch is already stacked."""
    return batch


def make_loaders(
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    *,
    test_batch_size: int | None = None,
    drop_last: bool = False,
    n_classes: int = 2,
) -> tuple[DataLoader, DataLoader]:
    """Mini-batch loaders: the training loader reshuffles every epoch, the test loader never does.

    The training loader's shuffling comes from its own ``torch.Generator`` seeded with ``seed``, so
    the same seed gives the same batches in the same order, epoch after epoch, whatever else has used
    the global random generator in between. Tensors are converted to float32 (the dtype of the model's
    weights). ``test_batch_size`` defaults to 256 (evaluation needs no gradients, so bigger is cheaper).
    The loaders yield exactly the batches of ``DataLoader(TensorDataset(X, y), batch_size, shuffle=True,
    generator=torch.Generator().manual_seed(seed))``, only faster (see :class:`BatchedTensorDataset`).
    With ``n_classes`` above 2 the labels are class indices ``0 .. n_classes - 1``, kept as int64 (what
    ``cross_entropy`` takes); with 2 (the default) they are 0/1 labels, converted to float32.
    """
    n_classes = _int(n_classes, "n_classes", 2)
    X_train = check_features(X_train, "X_train")
    y_train = check_labels(y_train, len(X_train), "y_train", n_classes)
    X_test = check_features(X_test, "X_test")
    y_test = check_labels(y_test, len(X_test), "y_test", n_classes)
    if X_train.shape[1] != X_test.shape[1]:
        raise ValueError(
            f"X_train and X_test must have the same features: {X_train.shape[1]} vs {X_test.shape[1]} columns"
        )
    batch_size = _int(batch_size, "batch_size", 1)
    test_batch_size = _int(256 if test_batch_size is None else test_batch_size, "test_batch_size", 1)
    check_bool(drop_last, "drop_last")
    if drop_last and batch_size > len(X_train):
        raise ValueError(
            f"with drop_last=True, batch_size ({batch_size}) must be <= the number of training rows "
            f"({len(X_train)}), or an epoch would have no batch at all"
        )
    g = torch.Generator().manual_seed(_seed(seed))
    label = (lambda y: y.float()) if n_classes == 2 else (lambda y: y.long())
    train = BatchedTensorDataset(X_train.float(), label(y_train))
    test = BatchedTensorDataset(X_test.float(), label(y_test))
    train_loader = DataLoader(
        train, batch_size=batch_size, shuffle=True, generator=g, drop_last=drop_last, collate_fn=keep_batch
    )
    test_loader = DataLoader(test, batch_size=test_batch_size, shuffle=False, collate_fn=keep_batch)
    return train_loader, test_loader


# --------------------------------------------------------------------------------------------- whole task
class SealedTestSet(RuntimeError):
    """The test split of a sealed :class:`Task` was read before :meth:`Task.open_test`."""


_SEALED = frozenset({"X_test", "y_test", "test"})


@dataclass(eq=False)
class Task:
    """The whole seed-002 pipeline's result: raw data, the split, the fitted scaler and the loaders.

    ``X_train``/``X_test`` are standardized with statistics of the training rows; ``X_raw``/``y_raw`` are
    the generated data before the split. ``train``/``test`` are the loaders, so a Task can be passed to
    ``lrlab.training.fit`` directly. Iterating a Task yields ``(train, test)``.

    With a validation split (``load_task(n_val=...)``) there are also ``X_val``/``y_val``/``val``, carved
    out of the training rows (the scaler still sees only ``X_train``). A **sealed** task refuses to give
    out its test split (``X_test``, ``y_test``, ``test``) until :meth:`open_test` is called: every choice
    (learning rate, schedule, number of epochs) is made on validation, and the test set is read once, at
    the end, to report the chosen setting. Reading it earlier raises :class:`SealedTestSet`.
    """

    X_raw: torch.Tensor
    y_raw: torch.Tensor
    X_train: torch.Tensor
    X_test: torch.Tensor
    y_train: torch.Tensor
    y_test: torch.Tensor
    scaler: Standardizer
    train: DataLoader
    test: DataLoader
    seed: int
    info: dict = field(default_factory=dict)
    X_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    val: DataLoader | None = None
    sealed: bool = False

    def __getattribute__(self, name: str) -> Any:
        if name in _SEALED and object.__getattribute__(self, "sealed"):
            raise SealedTestSet(
                f"task.{name}: the test split of this task is sealed. Make every choice on the validation "
                "split (task.X_val, task.y_val, task.val; lrlab.sweep.run_sweep(..., evaluate_on='val')) and "
                "read the test split once, at the end, after task.open_test()"
            )
        return object.__getattribute__(self, name)

    def open_test(self) -> Task:
        """Unseal the test split (for the one final evaluation of the chosen setting); returns the task."""
        self.sealed = False
        return self

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def __iter__(self) -> Iterator[DataLoader]:
        return iter((self.train, self.test))

    def __repr__(self) -> str:
        n_test = int(object.__getattribute__(self, "X_test").shape[0])
        val = "" if self.X_val is None else f", val={tuple(self.X_val.shape)}"
        return (
            f"Task(seed={self.seed}, train={tuple(self.X_train.shape)}{val}, "
            f"test={(n_test, self.n_features)}{' sealed' if self.sealed else ''}, "
            f"batch_size={self.train.batch_size}, "
            + (f"bayes_accuracy={self.info['bayes_accuracy']:.3f})" if "bayes_accuracy" in self.info
               else f"{self.info.get('name', 'data')}, {self.info.get('n_classes', 2)} classes)")
        )


def load_task(
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
    *,
    n_samples: int = N_SAMPLES,
    n_features: int = N_FEATURES,
    n_informative: int = N_INFORMATIVE,
    n_redundant: int = N_REDUNDANT,
    class_sep: float = CLASS_SEP,
    label_noise: float = LABEL_NOISE,
    n_train: int | None = None,
    n_val: int = 0,
    sealed: bool = False,
) -> Task:
    """Generate, split, standardize (train statistics only) and wrap in loaders, all with one ``seed``.

    ``n_train`` defaults to 80 % of the rows (800 of 1000, as in the tutorial); the other rows are the
    test set. ``n_val`` rows of those ``n_train`` become a validation split (so with ``n_val=200`` the
    model trains on 600 rows, chooses on 200 and is tested on 200); the scaler is fitted on the rows
    that remain for training. ``sealed=True`` (needs a validation split) locks the test split until
    :meth:`Task.open_test`.
    """
    seed = _seed(seed)
    sealed = check_bool(sealed, "sealed")
    X, y = make_classification(
        n_samples, n_features, n_informative, class_sep, label_noise, seed, n_redundant=n_redundant
    )
    if n_train is None:
        n_train = max(1, min(n_samples - 1, round(0.8 * n_samples)))
    n_train = _int(n_train, "n_train", 1)
    n_val = _int(n_val, "n_val", 0, n_train - 1)
    if sealed and n_val == 0:
        raise ValueError("sealed=True needs a validation split to choose on: pass n_val > 0 (e.g. n_val=200)")
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, n_train=n_train, seed=seed)
    X_va = y_va = None
    if n_val:
        # a split of its own seed stream, so the test rows are the same with and without validation
        X_tr, X_va, y_tr, y_va = train_test_split(X_tr, y_tr, n_train=n_train - n_val, seed=seed + 1)
    scaler = Standardizer().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    train, test = make_loaders(X_tr, y_tr, X_te, y_te, batch_size=batch_size, seed=seed)
    val = None
    if n_val:
        X_va = scaler.transform(X_va)
        val = DataLoader(BatchedTensorDataset(X_va.float(), y_va.float()), batch_size=256, shuffle=False,
                         collate_fn=keep_batch)
    info = {
        "n_samples": n_samples,
        "n_features": n_features,
        "n_informative": n_informative,
        "n_redundant": n_redundant,
        "class_sep": class_sep,
        "label_noise": label_noise,
        "bayes_accuracy": bayes_accuracy(class_sep, label_noise),
        "bayes_loss": bayes_loss(class_sep, label_noise),
    }
    return Task(X, y, X_tr, X_te, y_tr, y_te, scaler, train, test, seed, info, X_va, y_va, val, sealed)


# --------------------------------------------------------------------------------------------- real data
DATASETS = ("synthetic", "digits", "fashion_mnist")


class DatasetUnavailable(RuntimeError):
    """A data set cannot be loaded here (not downloaded and the machine is offline, or a package is missing)."""


def _image_task(
    X: torch.Tensor,
    y: torch.Tensor,
    order: torch.Tensor,
    n_val: int,
    n_test: int,
    *,
    seed: int,
    batch_size: int,
    sealed: bool,
    info: dict,
    X_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    n_train: int | None = None,
) -> Task:
    """A classification Task with the discipline of :func:`load_task`: split first (test and validation rows
    from ``order``, unless a separate test set is given), scaler fitted on the training rows only, seeded
    loaders. Features are float32, labels int64 class indices."""
    if X_test is None:
        test_idx, val_idx, train_idx = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        X_te, y_te = X[test_idx], y[test_idx]
    else:
        val_idx, train_idx = order[:n_val], order[n_val:]
        X_te, y_te = X_test, y_test
    if n_train is not None:
        train_idx = train_idx[:n_train]
    X_tr, y_tr, X_va, y_va = X[train_idx], y[train_idx], X[val_idx], y[val_idx]
    scaler = Standardizer().fit(X_tr)
    X_tr, X_va, X_te = (scaler.transform(a).float() for a in (X_tr, X_va, X_te))
    y_tr, y_va, y_te = y_tr.long(), y_va.long(), y_te.long()
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(BatchedTensorDataset(X_tr, y_tr), batch_size=batch_size, shuffle=True, generator=g,
                       collate_fn=keep_batch)
    val = DataLoader(BatchedTensorDataset(X_va, y_va), batch_size=256, shuffle=False, collate_fn=keep_batch)
    test = DataLoader(BatchedTensorDataset(X_te, y_te), batch_size=256, shuffle=False, collate_fn=keep_batch)
    info = {**info, "n_classes": int(max(int(y.max()), int(y_te.max())) + 1)}
    return Task(X, y, X_tr, X_te, y_tr, y_te, scaler, train, test, seed, info, X_va, y_va, val, sealed)


def load_digits_task(
    seed: int = 0, batch_size: int = BATCH_SIZE, *, n_val: int = 300, n_test: int = 300, sealed: bool = False
) -> Task:
    """scikit-learn's bundled handwritten digits as a 10-class task (no download: the data ship with the package).

    1,797 images of 8x8 pixels (values 0-16), flattened to 64 features, labels 0-9 (Alpaydin & Kaynak, UCI).
    ``n_test`` and ``n_val`` rows are drawn at random with ``seed`` (300 and 300: 1,197 rows train), the
    scaler sees the training rows only, and the loaders are seeded as in :func:`load_task`. ``sealed`` locks
    the test split until :meth:`Task.open_test`.
    """
    seed = _seed(seed)
    batch_size = _int(batch_size, "batch_size", 1)
    sealed = check_bool(sealed, "sealed")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetUnavailable(
            "the digits data set comes with scikit-learn, which is not installed here: "
            "pip install scikit-learn (the course's environment has it)"
        ) from None
    digits = load_digits()
    X = torch.as_tensor(digits.data, dtype=torch.float32)
    y = torch.as_tensor(digits.target, dtype=torch.long)
    n_test = _int(n_test, "n_test", 1, len(X) - 2)
    n_val = _int(n_val, "n_val", 1, len(X) - n_test - 1)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    info = {"name": "digits", "n_samples": len(X), "n_features": int(X.shape[1])}
    return _image_task(X, y, order, n_val, n_test, seed=seed, batch_size=batch_size, sealed=sealed, info=info)


def data_home() -> str:
    """Where downloaded data sets are kept: ``$LRLAB_DATA``, else ``~/.cache/lrlab``."""
    import os

    return os.environ.get("LRLAB_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "lrlab")


FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_FILES = {  # (images, labels) of the training and the test set, in the IDX format
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str) -> torch.Tensor:
    """An array in the IDX format of (Fashion-)MNIST (gzipped or not): a big-endian header, magic
    ``0x00000803`` for images (3 dimensions) or ``0x00000801`` for labels (1 dimension), the dimension sizes,
    then unsigned bytes. Returns a uint8 tensor; a file that is not such an array raises ``ValueError``."""
    import gzip
    import struct

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path} is not an IDX file: {len(data)} bytes")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise ValueError(f"{path} is not an IDX file of unsigned bytes with 1 or 3 dimensions")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != math.prod(dims):
        raise ValueError(f"{path}: the header says {dims} ({math.prod(dims)} bytes), the file holds {len(body)}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(dims)


def _fashion_file(folder: str, name: str, download: bool) -> str:
    """The path of one Fashion-MNIST file in ``folder`` (plain or .gz), downloaded first when missing."""
    import os
    import urllib.request

    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return path
    if not download:
        raise FileNotFoundError(f"{name} is missing")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name + ".gz")
    with urllib.request.urlopen(FASHION_MNIST_URL + name + ".gz", timeout=60) as response:  # noqa: S310
        payload = response.read()
    with open(path + ".part", "wb") as f:
        f.write(payload)
    os.replace(path + ".part", path)   # a broken download never looks like a file
    return path


def load_fashion_mnist_task(
    seed: int = 0,
    batch_size: int = 128,
    *,
    root: str | None = None,
    download: bool = True,
    n_val: int = 10_000,
    n_train: int | None = None,
    sealed: bool = False,
) -> Task:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) as a 10-class task: 60,000 training images of 28x28 pixels,
    of which ``n_val`` become the validation split, and the official 10,000 test images; flattened to 784
    features scaled to [0, 1], then standardized with the training rows' statistics. ``n_train`` keeps only
    that many of the remaining training rows (drawn with ``seed``; default all of them).

    The four IDX files are read from ``root/FashionMNIST/raw`` (default root :func:`data_home`), plain or
    gzipped (the layout torchvision uses), and downloaded there from the data set's site when missing and
    ``download`` is true. Offline and not downloaded, it raises :class:`DatasetUnavailable`, naming the
    fallback that needs no download: :func:`load_digits_task`.
    """
    import os
    import urllib.error

    seed = _seed(seed)
    batch_size = _int(batch_size, "batch_size", 1)
    download = check_bool(download, "download")
    sealed = check_bool(sealed, "sealed")
    root = data_home() if root is None else str(root)
    folder = os.path.join(root, "FashionMNIST", "raw")
    fallback = "use the digits task instead (DATASET='digits', lrlab.data.load_digits_task): it needs no download"
    arrays = {}
    try:
        for split, names in FASHION_MNIST_FILES.items():
            arrays[split] = [read_idx(_fashion_file(folder, name, download)) for name in names]
    except FileNotFoundError:
        raise DatasetUnavailable(
            f"Fashion-MNIST is not in {folder} and download=False. Run once on a machine that is online (the files "
            f"are cached there), copy that folder here, or {fallback}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise DatasetUnavailable(
            f"Fashion-MNIST is not in {folder} and the download failed ({err}). Run once on a machine that is "
            f"online, copy that folder here, or {fallback}"
        ) from None
    (X, y), (X_te, y_te) = ((images.reshape(len(images), -1).float() / 255.0, labels.long())
                            for images, labels in (arrays["train"], arrays["test"]))
    for (images, labels), split in ((arrays["train"], "train"), (arrays["test"], "test")):
        if len(images) != len(labels) or images.ndim != 3:
            raise ValueError(f"the Fashion-MNIST {split} files do not match: {tuple(images.shape)} images, "
                             f"{tuple(labels.shape)} labels")
    n_val = _int(n_val, "n_val", 1, len(X) - 1)
    if n_train is not None:
        n_train = _int(n_train, "n_train", 1, len(X) - n_val)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))
    info = {"name": "fashion_mnist", "n_samples": len(X) + len(X_te), "n_features": int(X.shape[1]), "root": root}
    return _image_task(X, y, order, n_val, 0, seed=seed, batch_size=batch_size, sealed=sealed, info=info,
                       X_test=X_te, y_test=y_te, n_train=n_train)


def load_dataset(name: str = "synthetic", seed: int = 0, **kwargs: Any) -> Task:
    """The task a notebook's ``DATASET`` parameter names: ``"synthetic"`` (:func:`load_task`), ``"digits"``
    (:func:`load_digits_task`) or ``"fashion_mnist"`` (:func:`load_fashion_mnist_task`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    make = {"synthetic": load_task, "digits": load_digits_task, "fashion_mnist": load_fashion_mnist_task}[name]
    return make(seed, **kwargs)
