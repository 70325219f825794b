"""Tests of lrlab.sweep: batched training equals the course's own loop, fair budgets, the result table."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch
from torch import nn

from lrlab import sweep as S
from lrlab.data import load_task, make_loaders
from lrlab.models import MLP

matplotlib.use("Agg")
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task():
    return load_task(seed=0)


def assert_same_traces(a, b, atol=2e-5):
    """Two traces agree: same steps, samples and LRs exactly; losses and accuracies to float tolerance."""
    assert len(a.steps) == len(b.steps) and len(a.epochs) == len(b.epochs)
    assert [s["samples"] for s in a.steps] == [s["samples"] for s in b.steps]
    assert [s["lr"] for s in a.steps] == [s["lr"] for s in b.steps]
    np.testing.assert_allclose([s["loss"] for s in a.steps], [s["loss"] for s in b.steps], rtol=1e-4, atol=atol)
    for ea, eb in zip(a.epochs, b.epochs, strict=True):
        for key in ("epoch", "samples", "steps", "lr"):
            assert ea[key] == eb[key], key
        for key in ("train_loss", "test_loss", "test_acc"):
            np.testing.assert_allclose(ea[key], eb[key], rtol=1e-4, atol=atol, err_msg=key)
    assert a.diverged == b.diverged


# ------------------------------------------------------------------------------------ data order
def test_epoch_order_is_the_order_of_the_course_loaders(task):
    train, _ = make_loaders(task.X_train, task.y_train, task.X_test, task.y_test, batch_size=32, seed=7)
    orders = S.epoch_order(len(task.X_train), 7, 3)
    for e in range(3):
        seen = torch.cat([xb for xb, _ in train])
        assert torch.equal(seen, task.X_train[orders[e]])
    assert not torch.equal(orders[0], orders[1])


# ------------------------------------------------------------------------------------ vectorized == sequential
@pytest.mark.parametrize(
    "optimizer, lrs, strategies, batch_sizes",
    [
        ("sgd", [0.05, 0.5], ["constant", "one-cycle"], [32, 48]),
        ({"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}, [0.01, 0.1], ["wsd"], [32]),
        ("adam", [0.003, 0.03], ["step"], [32]),
        ({"name": "adamw", "weight_decay": 0.1}, [0.003, 0.03], ["cosine"], [32]),
    ],
    ids=["sgd", "nesterov-wd", "adam", "adamw"],
)
def test_vectorized_equals_sequential(task, optimizer, lrs, strategies, batch_sizes):
    """Same seeds, same traces: the batched update reproduces torch.optim inside the course's fit loop."""
    kw = dict(strategies=strategies, lrs=lrs, seeds=[0, 1], task=task, epochs=2,
              batch_sizes=batch_sizes, optimizer=optimizer, progress=False)
    vec = S.run_sweep(method="vectorized", **kw)
    seq = S.run_sweep(method="sequential", **kw)
    assert vec.settings["method"] == "vectorized" and seq.settings["method"] == "sequential"
    assert {t.config["forward"] for t in vec.traces} == {"bmm"}
    assert len(vec) == len(seq) == len(strategies) * len(lrs) * 2 * len(batch_sizes)
    for ra, rb, ta, tb in zip(vec.rows, seq.rows, vec.traces, seq.traces, strict=True):
        assert (ra["strategy"], ra["lr"], ra["seed"], ra["batch_size"]) == (
            rb["strategy"], rb["lr"], rb["seed"], rb["batch_size"])
        assert_same_traces(ta, tb)


class ScaledMLP(MLP):
    """Not a plain chain (its forward scales the logits), so the sweep must use vmap(functional_call)."""

    def forward(self, x):
        return 0.5 * super().forward(x)


def test_vmap_path_for_other_models_equals_sequential(task):
    kw = dict(strategies=["cosine"], lrs=[0.2], seeds=[3, 4], task=task, epochs=2, progress=False,
              model_fn=lambda seed: ScaledMLP(seed=seed))
    vec = S.run_sweep(method="vectorized", **kw)
    assert {t.config["forward"] for t in vec.traces} == {"vmap"}
    for ta, tb in zip(vec.traces, S.run_sweep(method="sequential", **kw).traces, strict=True):
        assert_same_traces(ta, tb)


def test_divergence_is_recorded_like_fit_does(task):
    kw = dict(strategies=["constant"], lrs=[0.1, 200.0], seeds=[0], task=task, epochs=3, progress=False)
    vec, seq = S.run_sweep(method="vectorized", **kw), S.run_sweep(method="sequential", **kw)
    ok, bad = vec.traces
    assert not ok.diverged and len(ok.epochs) == 3
    assert bad.diverged and bad.epochs[-1]["diverged"] and math.isnan(bad.epochs[-1]["train_loss"])
    assert bad.diverged_at == seq.traces[1].diverged_at
    assert_same_traces(bad, seq.traces[1])
    assert vec.rows[1]["diverged"] and vec.rows[1]["label"] == "diverged"


def test_seeds_change_init_and_order_and_runs_are_deterministic(task):
    a = S.run_sweep(["constant"], [0.1], [0, 1], task=task, epochs=1, progress=False)
    b = S.run_sweep(["constant"], [0.1], [0, 1], task=task, epochs=1, progress=False)
    assert a.rows[0]["final_test_loss"] != a.rows[1]["final_test_loss"]
    assert [r["final_test_loss"] for r in a.rows] == [r["final_test_loss"] for r in b.rows]


# ------------------------------------------------------------------------------------ equal budgets
def test_budgets_are_equal_in_samples_not_steps(task):
    res = S.run_sweep(["cosine"], [0.1], [0], task=task, epochs=2, batch_sizes=[16, 80], progress=False)
    small, big = res.traces
    assert small.steps[-1]["samples"] == big.steps[-1]["samples"] == 2 * len(task.X_train)
    assert len(small.steps) == 5 * len(big.steps)
    # sample-indexed schedules end together: both runs are in the last 5 % of the cosine at the end
    for tr, bs in ((small, 16), (big, 80)):
        assert tr.steps[-1]["lr"] < 0.01 * 0.1
        half_way = next(s for s in tr.steps if s["samples"] - bs == len(task.X_train))  # first step of epoch 2
        assert half_way["lr"] == pytest.approx(0.05)  # cos(pi / 2): half the peak, for both batch sizes
    assert res.rows[0]["samples"] == res.rows[1]["samples"] and res.rows[0]["steps"] == 5 * res.rows[1]["steps"]


def test_strategies_have_their_shapes():
    total = 8000
    for name, check in {
        "constant": lambda f: f(0) == f(total - 1) == 0.1,
        "step": lambda f: f(0) == 0.1 and f(0.6 * total) == pytest.approx(0.01)
        and f(0.8 * total) == pytest.approx(1e-3),
        "cosine": lambda f: f(0) == 0.1 and f(total / 2) == pytest.approx(0.05) and f(total) < 1e-9,
        "wsd": lambda f: f(0) < 0.01 and f(total / 2) == 0.1 and f(total) < 1e-9,
        "one-cycle": lambda f: f(0) == pytest.approx(0.1 / 25) and f(0.3 * total) == pytest.approx(0.1, rel=1e-3),
    }.items():
        assert check(S.get_strategy(name).schedule(0.1, total)), name


# ------------------------------------------------------------------------------------ fallbacks and errors
def test_custom_optimizer_falls_back_to_the_sequential_loop(task):
    def rmsprop(params, lr):
        return torch.optim.RMSprop(params, lr=lr)

    res = S.run_sweep(["constant"], [1e-3], [0], task=task, epochs=1, optimizer=rmsprop, progress=False)
    assert res.settings["method"] == "sequential" and "custom optimizer" in res.settings["fallback_reason"]
    with pytest.raises(ValueError, match="cannot vectorize"):
        S.run_sweep(["constant"], [1e-3], [0], task=task, epochs=1, optimizer=rmsprop, method="vectorized")


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(8), nn.Dropout(0.1)], ids=["batchnorm", "dropout"])
def test_models_with_train_eval_modes_fall_back_and_match_fit(task, layer):
    def model_fn(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(10, 8), type(layer)(*([8] if isinstance(layer, nn.BatchNorm1d) else [0.1])),
                             nn.ReLU(), nn.Linear(8, 1), nn.Flatten(0))

    res = S.run_sweep(["constant"], [0.05], [0], task=task, epochs=1, model_fn=model_fn, progress=False)
    assert res.settings["method"] == "sequential"
    assert type(layer).__name__ in res.settings["fallback_reason"]
    with pytest.raises(ValueError, match="cannot vectorize"):
        S.run_sweep(["constant"], [0.05], [0], task=task, epochs=1, model_fn=model_fn, method="vectorized")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(strategies=["linear"]), "strategy must be one of"),
        (dict(lrs=[0.1, -1.0]), "every lr"),
        (dict(seeds=[0, 1.5]), "every seed"),
        (dict(batch_sizes=[0]), "batch size"),
        (dict(batch_sizes=[5000]), "<= the 800 training rows"),
        (dict(epochs=0), "epochs"),
        (dict(method="fast"), "method"),
        (dict(optimizer="lbfgs"), "optimizer name"),
        (dict(optimizer={"name": "adam", "momentum": 0.9}), "momentum applies to 'sgd'"),
        (dict(strategies=[]), "must not be empty"),
    ],
)
def test_run_sweep_validates_its_arguments(task, kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.run_sweep(**{"task": task, "epochs": 1, **kwargs})


# ------------------------------------------------------------------------------------ the result table
@pytest.fixture(scope="module")
def result(task):
    return S.run_sweep(["constant", "cosine"], [0.05, 0.5, 100.0], [0, 1, 2], task=task, epochs=3,
                       target_acc=0.85, progress=False)


def test_summary_mean_and_std_per_group(result):
    summary = result.summary(["final_test_loss", "diverged", "samples_to_acc", "label"])
    assert len(summary) == 6 and all(s["n"] == 3 for s in summary)
    s = next(s for s in summary if s["strategy"] == "cosine" and s["lr"] == 0.5)
    values = [r["final_test_loss"] for r in result.rows if r["strategy"] == "cosine" and r["lr"] == 0.5]
    assert s["final_test_loss_mean"] == pytest.approx(np.mean(values))
    assert s["final_test_loss_std"] == pytest.approx(np.std(values, ddof=1))
    assert s["diverged_mean"] == 0.0
    assert "samples_to_acc_reached" in s and sum(s["labels"].values()) == 3
    blown = next(s for s in summary if s["strategy"] == "constant" and s["lr"] == 100.0)
    assert blown["diverged_mean"] == 1.0 and blown["label"] == "diverged"


def test_best_skips_groups_that_diverged(result):
    best = result.best("final_test_loss")
    assert best["lr"] != 100.0
    means = [s["final_test_loss_mean"] for s in result.summary(["final_test_loss", "diverged"])
             if s["diverged_mean"] == 0]
    assert best["final_test_loss_mean"] == min(means)
    best_acc = result.best("final_test_acc")
    accs = [s["final_test_acc_mean"] for s in result.summary(["final_test_acc", "diverged"]) if s["diverged_mean"] == 0]
    assert best_acc["final_test_acc_mean"] == max(accs)  # accuracy: higher is better


def test_markdown_filter_curves_and_plot(result, tmp_path):
    md = result.to_markdown(["final_test_loss", "final_test_acc"])
    lines = md.splitlines()
    assert lines[0] == "| strategy | lr | n | final_test_loss | final_test_acc |" and len(lines) == 2 + 6
    assert "±" in md
    assert len(result.to_markdown(summary=False).splitlines()) == 2 + 18
    sub = result.filter(strategy="cosine", lr=0.5)
    assert len(sub) == 3 and {r["seed"] for r in sub} == {0, 1, 2}
    with pytest.raises(ValueError, match="unknown column"):
        result.filter(colour="red")
    curves = result.curves("test_loss")
    c = curves[("cosine", 0.5)]
    assert c["mean"].shape == (3,) and np.all(c["n"] == 3) and np.all(c["std"] >= 0)
    assert np.allclose(c["samples"], [800, 1600, 2400])
    ax = result.filter(lr=0.5).plot("test_loss", by="strategy", band="sem")
    ax.figure.savefig(tmp_path / "curves.png")
    assert len(ax.lines) == 2
    with pytest.raises(ValueError, match="band"):
        result.plot(band="iqr")


def test_the_sweep_shares_fit_s_progress_switch_and_optimizer_table(task, monkeypatch):
    import tqdm.auto

    from lrlab import training

    made = []

    class FakeBar:
        def __init__(self, *args, total=None, **kwargs):
            made.append(total)

        def update(self, k):
            pass

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", FakeBar)
    per_epoch = 25  # 800 rows / 32
    at_limit = training.PROGRESS_AUTO_STEPS // per_epoch
    S.run_sweep(["constant"], [0.1], [0], task=task, epochs=at_limit, progress="auto")
    assert made == []
    S.run_sweep(["constant"], [0.1], [0], task=task, epochs=at_limit + 1, progress="auto")
    assert made == [(at_limit + 1) * per_epoch]
    assert S.OPTIMIZERS is training.OPTIMIZERS and S.PROGRESS_AUTO_STEPS == training.PROGRESS_AUTO_STEPS
    with pytest.raises(ValueError, match="progress must be True, False or 'auto'"):
        S.run_sweep(["constant"], [0.1], [0], task=task, epochs=1, progress="yes")


def test_a_sweep_can_choose_on_validation_and_never_touches_a_sealed_test_split():
    task = load_task(seed=0, n_val=200, sealed=True)
    with pytest.raises(Exception, match="sealed"):
        S.run_sweep("constant", 0.1, seeds=[0], task=task, epochs=1, progress=False)   # evaluate_on="test"
    res = {}
    for method in ("vectorized", "sequential"):
        res[method] = S.run_sweep(["constant", "cosine"], (0.1, 0.5), seeds=[0, 1], task=task, epochs=2,
                                  method=method, progress=False, evaluate_on="val", target_acc=0.8)
        r = res[method]
        assert {"final_val_loss", "final_val_acc", "best_val_acc"} <= set(r.rows[0])
        assert not any(k.startswith(("final_test", "best_test")) for k in r.rows[0])
        assert all("val_loss" in e and "test_loss" not in e for t in r.traces for e in t.epochs)
        assert r.split == "val" and r.best()["final_val_loss_mean"] == min(
            s["final_val_loss_mean"] for s in r.summary(["final_val_loss"]))
        assert "final_val_loss" in r.to_markdown() and "val accuracy" in r.traces[0].message
        assert "Val loss" in r.traces[0].table()
        assert len(r.curves()) == 4
    a = [x["final_val_loss"] for x in res["vectorized"].rows]
    b = [x["final_val_loss"] for x in res["sequential"].rows]
    assert a == pytest.approx(b, abs=1e-5)
    # the validation numbers are those of the validation rows: evaluate one model by hand
    task.open_test()
    on_test = S.run_sweep("constant", 0.1, seeds=[0], task=task, epochs=2, progress=False)
    on_val = res["vectorized"].filter(strategy="constant", lr=0.1, seed=0)
    assert on_test.rows[0]["final_train_loss"] == pytest.approx(on_val.rows[0]["final_train_loss"], rel=1e-6)
    assert on_test.rows[0]["final_test_loss"] != pytest.approx(on_val.rows[0]["final_val_loss"], rel=1e-3)


def test_evaluate_on_val_needs_a_validation_split():
    with pytest.raises(ValueError, match=r"n_val=200.*missing X_val"):
        S.run_sweep("constant", 0.1, seeds=[0], task=load_task(seed=0), epochs=1, evaluate_on="val")
    with pytest.raises(ValueError, match="evaluate_on"):
        S.run_sweep("constant", 0.1, seeds=[0], task=load_task(seed=0), epochs=1, evaluate_on="train")


# ------------------------------------------------------------------------- steps to a target loss
def test_steps_to_target_counts_what_a_plain_loop_counts():
    import torch.nn.functional as F

    from lrlab.data import load_digits_task, make_loaders
    from lrlab.models import MLP
    from lrlab.sweep import steps_to_target

    task = load_digits_task(0, n_val=200, n_test=200)
    got = steps_to_target(task, 64, [0.3, 1.0], seeds=(0, 1), target_loss=0.5, max_epochs=20, device="cpu")

    def plain(lr, seed):
        model = MLP(64, 32, n_outputs=10, seed=seed)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        train, _ = make_loaders(task.X_train, task.y_train, task.X_val, task.y_val, batch_size=64, seed=seed,
                                n_classes=10)
        step = 0
        for _ in range(20):
            for xb, yb in train:
                opt.zero_grad()
                F.cross_entropy(model(xb), yb).backward()
                opt.step()
                step += 1
                with torch.no_grad():
                    if F.cross_entropy(model(task.X_train), task.y_train) <= 0.5:
                        return step
        return math.inf

    want = [[plain(lr, s) for s in (0, 1)] for lr in (0.3, 1.0)]
    # training stops once one LR has brought every seed there: the first LR to do so in the plain loops
    stop = min(max(row) for row in want)
    assert math.isfinite(stop)
    for i, row in enumerate(want):
        for j, v in enumerate(row):
            assert got.steps[i, j] == (v if v <= stop else math.inf)
    lr, per_seed = got.best()
    fastest = int(np.argmin([max(row) for row in want]))
    assert lr == (0.3, 1.0)[fastest] and list(per_seed) == want[fastest]


def test_steps_to_target_marks_diverged_runs_and_says_when_nothing_arrived():
    from lrlab.data import load_digits_task
    from lrlab.sweep import steps_to_target

    task = load_digits_task(0, n_val=200, n_test=200)
    got = steps_to_target(task, 32, [1e-5, 1e4], seeds=(0,), target_loss=0.1, max_epochs=1, device="cpu")
    assert np.isinf(got.steps).all()
    with pytest.raises(ValueError, match="no learning rate reached the training loss 0.1 at batch size 32"):
        got.best()
    with pytest.raises(ValueError, match="batch_size must be <="):
        steps_to_target(task, 5000, [0.1], target_loss=0.1)


def test_the_warmup_strategy_climbs_for_a_tenth_of_the_budget_then_holds():
    from lrlab.sweep import get_strategy

    sched = get_strategy("warmup").schedule(0.5, 1000)
    assert sched(0) == pytest.approx(0.5 / 100) and sched(99) == pytest.approx(0.5) and sched(999) == 0.5
