"""Tests of lrlab.leakage: the normalize-before-split experiment, outside the data pipeline."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch

import lrlab.data
from lrlab.data import make_classification
from lrlab.leakage import STANDARDIZATIONS, LeakageReport, leakage_report


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_leakage_report_measures_the_statistics_leak():
    X, y = make_classification(seed=0)
    r = leakage_report(X, y, train=False)
    assert r.test_share == pytest.approx(0.2)
    assert r.influence == pytest.approx(0.2, abs=1e-4)
    assert 0 < r.mean_gap < 0.3
    assert r.std_ratio >= 1.0
    assert r.accuracy == {}
    drifted = leakage_report(X, y, train=False, shift=1.0)
    assert drifted.mean_gap == pytest.approx(0.2 + r.mean_gap, abs=0.1)
    assert "20.0%" in drifted.table() and "<pre>" in drifted._repr_html_()


def test_leakage_report_accuracy_with_a_drifted_test_set():
    X, y = make_classification(seed=0)
    r = leakage_report(X, y, shift=1.0, epochs=5)
    assert tuple(r.accuracy) == STANDARDIZATIONS
    assert all(0 <= a <= 1 for a in r.accuracy.values())
    # standardizing the test rows with their own statistics hides the drift: optimistic
    assert r.accuracy["test statistics for the test rows"] > r.accuracy["train statistics"] + 0.03
    assert not math.isnan(r.accuracy["all rows (normalize, then split)"])
    # the table lists every standardization with its accuracy, aligned in one column
    lines = r.table().splitlines()
    rows = [line for line in lines if any(name in line for name in STANDARDIZATIONS)]
    assert len(rows) == 3
    assert len({line.rindex(".") for line in rows}) == 1
    for name, acc in r.accuracy.items():
        assert any(name in line and f"{acc:.3f}" in line for line in rows)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shift": float("inf")}, r"shift must be a finite number, got inf"),
        ({"shift": "1"}, r"shift must be a finite number, got '1' \(str\)"),
        ({"epochs": 0}, r"epochs must be an integer >= 1, got 0"),
        ({"epochs": True}, r"epochs must be an integer >= 1, got True \(bool\)"),
        ({"train": 1}, r"train must be True or False, got 1"),
    ],
)
def test_leakage_report_rejects_bad_arguments(kwargs, match):
    X, y = make_classification(n_samples=50, seed=0)
    with pytest.raises(ValueError, match=match):
        leakage_report(X, y, n_train=40, **kwargs)


def test_the_data_pipeline_does_not_hold_the_experiment():
    # the experiment trains models, the pipeline must not: data imports neither training nor models
    assert not hasattr(lrlab.data, "leakage_report") and not hasattr(lrlab.data, "LeakageReport")
    tree = ast.parse(Path(lrlab.data.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {m for m in imported if m.startswith("lrlab") and m not in ("lrlab.args", "lrlab.tables")}
    assert isinstance(leakage_report(*make_classification(n_samples=50, seed=1), n_train=40, train=False),
                      LeakageReport)
