"""The normalize-before-split experiment: what standardizing with the test rows' statistics leaks.

An experiment on top of the data pipeline, not part of it: it splits and standardizes with
:mod:`lrlab.data` in the right and in two wrong orders, measures how far the statistics move, and
trains the same model (:mod:`lrlab.models`, :func:`lrlab.training.fit`) on each version to compare
test accuracies. :func:`leakage_report` runs it and returns a :class:`LeakageReport`.

imports: args, tables, data, models, training
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lrlab.args import check_bool, check_int, check_real
from lrlab.data import N_TRAIN, Standardizer, check_features, check_labels, make_loaders, train_test_split
from lrlab.models import MLP
from lrlab.tables import format_table
from lrlab.training import default_recipe, fit

__all__ = ["STANDARDIZATIONS", "LeakageReport", "leakage_report"]

STANDARDIZATIONS = (
    "train statistics",
    "all rows (normalize, then split)",
    "test statistics for the test rows",
)
"""The three ways of standardizing that :func:`leakage_report` compares (the first is the correct one)."""


@dataclass
class LeakageReport:
    """What normalizing before the split (the tutorial's order) leaks, measured.

    Statistics (in units of the training rows' standard deviation, per feature):

    * ``mean_gap``: largest |mean of all rows - mean of training rows| over features;
      ``std_ratio``: largest std(all rows) / std(training rows) (or its inverse) over features.
    * ``test_share``: the fraction of the rows behind the leaky statistics that are test rows.
    * ``influence``: how far the leaky mean moves (in training standard deviations) when every test
      row moves by one training standard deviation: exactly ``test_share``; the clean mean does not move.

    ``accuracy`` maps each way of standardizing to the test accuracy of the same model trained on the
    same rows: ``"train statistics"`` (correct), ``"all rows (normalize, then split)"`` (the tutorial)
    and ``"test statistics for the test rows"`` (another common mistake). ``shift`` is how far the test
    rows were moved (in training standard deviations, along every feature) to imitate data that drifts
    after training; with ``shift=0`` the rows are i.i.d. and the accuracies barely differ.
    """

    n_train: int
    n_test: int
    shift: float
    mean_gap: float
    std_ratio: float
    test_share: float
    influence: float
    accuracy: dict[str, float]

    def table(self) -> str:
        lines = [
            f"rows: {self.n_train} train + {self.n_test} test, test rows shifted by {self.shift:g} std",
            f"largest gap between the leaky and the clean mean : {self.mean_gap:.4f} train std",
            f"largest ratio between the leaky and the clean std: {self.std_ratio:.4f}",
            f"share of test rows inside the leaky statistics   : {self.test_share:.1%}",
            f"leaky mean moves per 1 std move of the test rows : {self.influence:.3f} std (clean: 0)",
        ]
        if self.accuracy:
            lines.append("test accuracy by standardization:")
            rows = [[name, f"{acc:.3f}"] for name, acc in self.accuracy.items()]
            table = format_table(["standardization", "test accuracy"], rows, align="lr", rule=False)
            lines += ["  " + line for line in table.splitlines()]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        return "<pre>" + self.table() + "</pre>"


def _fit_accuracy(
    X_tr: torch.Tensor, y_tr: torch.Tensor, X_te: torch.Tensor, y_te: torch.Tensor, seed: int, epochs: int
) -> float:
    recipe = default_recipe()
    loaders = make_loaders(X_tr, y_tr, X_te, y_te, batch_size=recipe.batch_size, seed=seed)
    model = MLP(X_tr.shape[1], hidden=recipe.hidden, seed=seed)
    trace = fit(model, loaders, recipe.make_optimizer(model), epochs, device="cpu", progress=False)
    return float(trace.final["test_acc"])


def leakage_report(
    X: Any,
    y: Any,
    n_train: int = N_TRAIN,
    seed: int = 0,
    *,
    shift: float = 0.0,
    train: bool = True,
    epochs: int = 10,
) -> LeakageReport:
    """Measure what "normalize, then split" leaks compared with "split, then normalize".

    The split uses ``seed``; the test rows are then moved by ``shift`` training standard deviations
    (0 = no drift). With ``train=True`` the same MLP (default recipe, ``epochs`` epochs, same seed) is
    trained on each version of the data to compare test accuracies (a few tenths of a second each).
    """
    X = check_features(X)
    y = check_labels(y, len(X))
    shift = check_real(shift, "shift", hint="test rows moved by this many training standard deviations")
    train = check_bool(train, "train")
    epochs = check_int(epochs, "epochs", low=1)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, n_train=n_train, seed=seed)
    clean = Standardizer().fit(X_tr)
    X_te = X_te + shift * clean.std_  # drift after training time (0 by default)
    X_all = torch.cat([X_tr, X_te])
    leaky = Standardizer().fit(X_all)
    mean_gap = float(((leaky.mean_ - clean.mean_).abs() / clean.std_).max())
    ratio = leaky.std_ / clean.std_
    std_ratio = float(torch.maximum(ratio, 1 / ratio).max())
    test_share = len(X_te) / len(X_all)
    # Move every test row by one training std and refit: the leaky mean follows, the clean one cannot.
    moved = Standardizer().fit(torch.cat([X_tr, X_te + clean.std_]))
    influence = float(((moved.mean_ - leaky.mean_) / clean.std_).mean())
    accuracy: dict[str, float] = {}
    if train:
        own = Standardizer().fit(X_te)
        versions = {
            STANDARDIZATIONS[0]: (clean.transform(X_tr), clean.transform(X_te)),
            STANDARDIZATIONS[1]: (leaky.transform(X_tr), leaky.transform(X_te)),
            STANDARDIZATIONS[2]: (clean.transform(X_tr), own.transform(X_te)),
        }
        for name, (a, b) in versions.items():
            accuracy[name] = _fit_accuracy(a, y_tr, b, y_te, seed, epochs)
    return LeakageReport(len(X_tr), len(X_te), shift, mean_gap, std_ratio, test_share, influence, accuracy)
