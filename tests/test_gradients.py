"""Tests of lrlab.gradients: the tracker, per-sample gradients, tr(Σ), SNR and the gradient noise scale.

Every statistic is checked against a brute-force computation, and against the classic wrong versions
(variance over the wrong axis, biased instead of unbiased, per-sample gradients scaled by 1/B, norm of
the mean instead of mean of norms) so that a regression to one of them fails a test.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrlab import gradients as G
from lrlab.data import load_task
from lrlab.models import MLP
from lrlab.training import Callback, fit

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ helpers
def _batches(n_steps: int, batch: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 10, generator=gen), (torch.rand(batch, generator=gen) > 0.5).float())
            for _ in range(n_steps)]


def _run(model: nn.Module, tracker: G.GradientTracker, batches, lr: float = 0.1, start: int = 0):
    """A hand-written loop that also returns every recorded gradient (to compare with the tracker)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    seen: list[dict[str, torch.Tensor]] = []
    for i, (xb, yb) in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(model(xb), yb).backward()
        step = start + i
        tracker.after_backward(model, step)
        if step % tracker.every == 0:
            seen.append({n: p.grad.detach().clone() for n, p in model.named_parameters()})
        opt.step()
    return seen


def _stack(seen, name, sl=None) -> torch.Tensor:
    rows = [g[name] if sl is None else g[name][sl] for g in seen]
    return torch.stack(rows).double()  # [steps, *shape]


BLOCKS = {"h[0:8]": ("hidden.weight", slice(0, 8)), "h[8:32]": ("hidden.weight", slice(8, 32))}


# ------------------------------------------------------------------------------------------ tracker
def test_tracker_matches_brute_force_per_layer_and_block():
    model = MLP(seed=1)
    tracker = G.GradientTracker(model, blocks=BLOCKS)
    seen = _run(model, tracker, _batches(7))
    out = tracker.end_epoch()
    assert list(out) == ["hidden.weight", "hidden.bias", "output.weight", "output.bias", "h[0:8]", "h[8:32]"]
    specs = {n: (n, None) for n in tracker.layers} | {b: v for b, v in BLOCKS.items()}
    for name, (pname, sl) in specs.items():
        g = _stack(seen, pname, sl)
        flat = g.reshape(len(seen), -1)
        assert out[name]["n"] == 7
        assert out[name]["mean_abs"] == pytest.approx(flat.abs().mean(dim=1).mean().item(), rel=1e-5)
        assert out[name]["norm"] == pytest.approx(flat.norm(dim=1).mean().item(), rel=1e-5)
        assert out[name]["var"] == pytest.approx(flat.var(dim=0, correction=1).mean().item(), rel=1e-4)


def test_tracker_variance_is_not_one_of_the_classic_mistakes():
    model = MLP(seed=2)
    tracker = G.GradientTracker(model, layers=["hidden.weight"])
    seen = _run(model, tracker, _batches(3, batch=4))  # few steps: n-1 vs n matters (factor 2/3)
    got = tracker.end_epoch()["hidden.weight"]
    flat = _stack(seen, "hidden.weight").reshape(3, -1)
    right = flat.var(dim=0, correction=1).mean().item()
    wrong = {
        "biased (divide by n)": flat.var(dim=0, correction=0).mean().item(),
        "variance over the elements, not the steps": flat.var(dim=1, correction=1).mean().item(),
        "variance of the step-mean gradient's elements": flat.mean(dim=0).var(correction=1).item(),
    }
    assert got["var"] == pytest.approx(right, rel=1e-4)
    for what, value in wrong.items():
        assert not math.isclose(got["var"], value, rel_tol=0.05), what
    # the recorded norm is a mean of norms: larger than the norm of the mean gradient
    norm_of_mean = flat.mean(dim=0).norm().item()
    assert got["norm"] == pytest.approx(flat.norm(dim=1).mean().item(), rel=1e-5)
    assert got["norm"] > 1.05 * norm_of_mean


def test_tracker_every_k_records_only_those_steps():
    model = MLP(seed=3)
    tracker = G.GradientTracker(model, every=3)
    seen = _run(model, tracker, _batches(10))  # steps 0, 3, 6, 9
    out = tracker.end_epoch()
    assert out["output.bias"]["n"] == 4 == len(seen)
    g = _stack(seen, "output.weight").reshape(4, -1)
    assert out["output.weight"]["var"] == pytest.approx(g.var(dim=0).mean().item(), rel=1e-4)
    assert tracker.step_log().steps.tolist() == [0, 3, 6, 9]


def test_tracker_epochs_reset_history_and_step_log():
    model = MLP(seed=4)
    tracker = G.GradientTracker(model, blocks=BLOCKS)
    first = _run(model, tracker, _batches(4, seed=1))
    tracker.end_epoch()
    second = _run(model, tracker, _batches(5, seed=2), start=4)
    out2 = tracker.end_epoch()
    assert len(tracker.history) == 2 and tracker.history[1] is out2
    g2 = _stack(second, "hidden.bias")
    # epoch 1 is forgotten
    assert out2["hidden.bias"]["var"] == pytest.approx(g2.var(dim=0).mean().item(), rel=1e-4)
    assert tracker.series("hidden.bias", "n").tolist() == [4, 5]
    log = tracker.step_log()
    assert log.steps.tolist() == list(range(9)) and log.epoch.tolist() == [1] * 4 + [2] * 5
    assert log.norm.shape == (9, len(tracker.names))
    expect = _stack(first + second, "hidden.weight", slice(8, 32)).reshape(9, -1)
    k = tracker.names.index("h[8:32]")
    np.testing.assert_allclose(log.norm[:, k], expect.norm(dim=1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(log.mean_abs[:, k], expect.abs().mean(dim=1).numpy(), rtol=1e-5)
    empty = tracker.end_epoch()  # an epoch without recorded steps
    assert empty["hidden.bias"]["n"] == 0 and math.isnan(empty["hidden.bias"]["var"])
    tracker.reset()
    assert tracker.history == [] and tracker.step_log().steps.size == 0


def test_tracker_single_step_variance_is_nan_and_missing_grad_counts_as_zero():
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    tracker = G.GradientTracker(model)
    for step, value in enumerate([1.0, 3.0]):
        for name, p in model.named_parameters():
            p.grad = None if (name == "1.bias" and step == 1) else torch.full_like(p, value)
        tracker.after_backward(model, step)
    out = tracker.end_epoch()
    assert out["0.weight"] == {"mean_abs": 2.0, "norm": pytest.approx(2.0 * math.sqrt(6)), "var": 2.0, "n": 2}
    assert out["1.bias"]["var"] == pytest.approx(0.5)  # values 1 and 0: unbiased variance 0.5
    model2 = nn.Linear(2, 1)
    one = G.GradientTracker(model2)
    for p in model2.parameters():
        p.grad = torch.ones_like(p)
    one.after_backward(model2, 0)
    assert math.isnan(one.end_epoch()["weight"]["var"])


@pytest.mark.parametrize("layers", [["hidden.weight"], "all"])
def test_tracker_leaves_the_gradients_alone(layers):
    model = MLP(seed=6)
    tracker = G.GradientTracker(model, layers=layers)
    for step, (xb, yb) in enumerate(_batches(4)):
        model.zero_grad(set_to_none=step % 2 == 0)
        F.binary_cross_entropy_with_logits(model(xb), yb).backward()
        before = {n: p.grad.clone() for n, p in model.named_parameters()}
        tracker.after_backward(model, step)
        for n, p in model.named_parameters():
            assert torch.equal(p.grad, before[n]), f"the tracker changed {n}.grad at step {step}"


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True:UserWarning")
def test_tracker_keeps_its_statistics_out_of_the_autograd_graph():
    model = nn.Linear(3, 1)
    tracker = G.GradientTracker(model)
    for step in range(3):
        model.zero_grad(set_to_none=True)
        model(torch.randn(4, 3)).pow(2).mean().backward(create_graph=True)  # p.grad requires grad
        assert model.weight.grad.requires_grad
        tracker.after_backward(model, step)
    assert not tracker._mean.requires_grad and not tracker._m2.requires_grad
    assert tracker.end_epoch()["weight"]["var"] > 0


def test_tracker_welford_is_numerically_stable():
    """A large constant gradient plus small noise: the naive E[g²] - E[g]² in float32 loses it all."""
    model = nn.Linear(50, 1, bias=False)
    gen = torch.Generator().manual_seed(0)
    values = 1000.0 + 0.01 * torch.randn(200, 1, 50, generator=gen, dtype=torch.float64)
    tracker = G.GradientTracker(model)
    for step, v in enumerate(values):
        model.weight.grad = v.float()
        tracker.after_backward(model, step)
    got = tracker.end_epoch()["weight"]["var"]
    truth = values.float().double().var(dim=0).mean().item()
    assert got == pytest.approx(truth, rel=0.02)
    v32 = values.float()
    naive = ((v32 * v32).mean(0) - v32.mean(0) ** 2).mean().item() * 200 / 199
    assert not math.isclose(naive, truth, rel_tol=0.5)  # the shortcut the tracker must not take


def test_tracker_dense_and_reduction_paths_agree():
    model = MLP(seed=5)
    dense = G.GradientTracker(model, blocks=BLOCKS)
    sparse = G.GradientTracker(model, blocks=BLOCKS)
    sparse.DENSE_LIMIT = 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step, (xb, yb) in enumerate(_batches(6)):
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(xb), yb).backward()
        dense.after_backward(model, step)
        sparse.after_backward(model, step)
        opt.step()
    a, b = dense.end_epoch(), sparse.end_epoch()
    for name in a:
        for key in ("mean_abs", "norm", "var"):
            assert a[name][key] == pytest.approx(b[name][key], rel=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": 0}, "every must be an integer >= 1"),
        ({"layers": "hidden.weight"}, "layers must be 'all'"),
        ({"layers": ["nope"]}, "not a parameter"),
        ({"layers": ["output.bias", "output.bias"]}, "twice"),
        ({"layers": None}, "nothing to track"),
        ({"blocks": {"b": ("hidden.weight", slice(0, 40))}}, "rows within 0..32"),
        ({"blocks": {"b": ("hidden.weight", slice(0, 8, 2))}}, "step 1"),
        ({"blocks": {"b": ("nope", slice(0, 8))}}, "not a parameter"),
        ({"blocks": {"b": ("hidden.weight", (0, 8))}}, "must be \\(parameter_name, slice\\)"),
        ({"blocks": {"output.bias": ("hidden.weight", slice(0, 8))}}, "also a tracked layer"),
    ],
)
def test_tracker_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        G.GradientTracker(MLP(seed=0), **kwargs)


def test_tracker_rejects_bad_step_and_model():
    model = MLP(seed=0)
    tracker = G.GradientTracker(model)
    with pytest.raises(ValueError, match=r"step must be an integer >= 0, got .*0-based global step"):
        tracker.after_backward(model, -1)
    with pytest.raises(ValueError, match=r"step must be an integer >= 0, got .*0-based global step"):
        tracker.after_backward(model, 1.0)
    with pytest.raises(ValueError, match="no parameter"):
        tracker.after_backward(nn.Linear(2, 1), 0)
    with pytest.raises(ValueError, match="not tracked"):
        tracker.series("nope")


def test_tracker_is_a_callback_and_fills_the_trace():
    task = load_task(seed=0, batch_size=100)
    model = MLP(seed=0)
    tracker = G.GradientTracker(model, blocks=BLOCKS)
    assert isinstance(tracker, Callback)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    trace = fit(model, task, opt, 3, callbacks=[tracker], device="cpu", progress=False)
    assert [set(r["grad"]) for r in trace.epochs] == [set(tracker.names)] * 3
    assert all(r["grad"]["hidden.weight"]["n"] == 8 for r in trace.epochs)  # 800 samples / 100
    assert tracker.history == [r["grad"] for r in trace.epochs]
    # continuing the run keeps the history; step numbers continue
    fit(model, task, opt, 1, callbacks=[tracker], device="cpu", progress=False, trace=trace)
    assert len(tracker.history) == 4 and tracker.step_log().steps.tolist() == list(range(32))


# ------------------------------------------------------------------------------------------ per-sample
def _data(n=24, d=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), (torch.rand(n, generator=gen) > 0.5).float()


@pytest.mark.parametrize("method", ["vmap", "linear"])
def test_per_sample_grads_equal_a_loop_of_single_backwards(method):
    model = MLP(seed=0)
    X, y = _data()
    ref = G.per_sample_grads_loop(model, X, y)
    got = G.per_sample_grads(model, X, y, method=method)
    assert list(got) == list(ref)
    for k in ref:
        assert got[k].shape == (24, *dict(model.named_parameters())[k].shape)
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6)
    chunked = G.per_sample_grads(model, X, y, method=method, chunk_size=5)
    for k in ref:
        torch.testing.assert_close(chunked[k], ref[k], rtol=1e-4, atol=1e-6)


def test_per_sample_grads_scaling_mean_of_them_is_the_batch_gradient():
    model = MLP(seed=1)
    X, y = _data(32)
    per = G.per_sample_grads(model, X, y)
    model.zero_grad()
    F.binary_cross_entropy_with_logits(model(X), y).backward()
    for k, p in model.named_parameters():
        torch.testing.assert_close(per[k].mean(0), p.grad, rtol=1e-4, atol=1e-7)
    # the classic mistake: each sample's share of the *mean* loss is g_i / B, B times too small
    wrong = {}
    for i in range(3):
        model.zero_grad()
        losses = F.binary_cross_entropy_with_logits(model(X), y, reduction="none")
        (losses[i] / len(X)).backward()
        wrong[i] = model.hidden.weight.grad.clone()
    for i in range(3):
        torch.testing.assert_close(per["hidden.weight"][i], wrong[i] * len(X), rtol=1e-4, atol=1e-7)
        assert not torch.allclose(per["hidden.weight"][i], wrong[i], rtol=0.5)


def test_per_sample_grads_general_models_and_losses():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8, bias=False), nn.ReLU(), nn.Linear(8, 3))
    X, y = torch.randn(10, 6), torch.randn(10, 3)
    ref = G.per_sample_grads_loop(model, X, y, loss_fn=F.mse_loss)
    for method in ("vmap", "linear"):
        got = G.per_sample_grads(model, X, y, loss_fn=F.mse_loss, method=method)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-6)
    # inputs with an extra (sequence) dimension: the linear method sums the outer products over it
    seq = nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 1))
    Xs, ys = torch.randn(7, 3, 4), torch.randn(7, 3, 1)
    a = G.per_sample_grads(seq, Xs, ys, loss_fn=F.mse_loss, method="vmap")
    b = G.per_sample_grads(seq, Xs, ys, loss_fn=F.mse_loss, method="linear")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)
    # frozen parameters are left out
    seq[0].weight.requires_grad_(False)
    assert "0.weight" not in G.per_sample_grads(seq, Xs, ys, loss_fn=F.mse_loss)


def test_per_sample_grads_validation():
    model = MLP(seed=0)
    X, y = _data(8)
    with pytest.raises(ValueError, match="same number of samples"):
        G.per_sample_grads(model, X, y[:5])
    with pytest.raises(ValueError, match="'vmap', 'linear' or 'auto'"):
        G.per_sample_grads(model, X, y, method="hooks")
    with pytest.raises(ValueError, match="chunk_size"):
        G.per_sample_grads(model, X, y, chunk_size=0)
    with pytest.raises(ValueError, match="nn.Linear layers only"):
        G.per_sample_grads(nn.Sequential(nn.Linear(10, 4), nn.LayerNorm(4), nn.Linear(4, 1)), X, y,
                           method="linear")
    with pytest.raises(ValueError, match="torch.nn.Module"):
        G.per_sample_grads(lambda x: x, X, y)


# ------------------------------------------------------------------------------------------ statistics
def test_trace_snr_and_noise_scale_from_a_per_sample_matrix():
    gen = torch.Generator().manual_seed(0)
    M = torch.randn(50, 7, generator=gen, dtype=torch.float64) * 2 + torch.arange(7.0, dtype=torch.float64)
    var = M.var(dim=0, correction=1)
    assert G.covariance_trace(M) == pytest.approx(var.sum().item())
    assert not math.isclose(G.covariance_trace(M), M.var(dim=0, correction=0).sum().item(), rel_tol=0.01)
    assert not math.isclose(G.covariance_trace(M), M.var(dim=1).sum().item(), rel_tol=0.01)
    mean = M.mean(0)
    g2 = mean.pow(2).sum().item() - var.sum().item() / 50
    assert G.noise_scale(M) == pytest.approx(var.sum().item() / g2)
    wrong_g2 = M.norm(dim=1).pow(2).mean().item()  # mean of the squared norms instead of norm of the mean
    assert not math.isclose(G.noise_scale(M), var.sum().item() / wrong_g2, rel_tol=0.1)
    torch.testing.assert_close(G.signal_to_noise(M), mean.abs() / var.sqrt())
    as_dict = {"a": M[:, :3].reshape(50, 3, 1), "b": M[:, 3:]}
    assert G.covariance_trace(as_dict) == pytest.approx(G.covariance_trace(M))
    centred = torch.zeros(5, 3) + torch.arange(-2.0, 3.0)[:, None]  # mean exactly 0: no signal at all
    assert G.noise_scale(centred) == math.inf
    with pytest.raises(ValueError, match="at least 2 samples"):
        G.covariance_trace(M[:1])
    with pytest.raises(ValueError, match=r"\[B, P\]"):
        G.noise_scale(torch.zeros(3))


def test_unbiased_grad_norm_correction_is_unbiased_and_plug_in_is_not():
    """Over many small batches, |mean|² - tr/B averages to |G|²; the plug-in |mean|² to |G|² + tr(Σ)/B."""
    gen = torch.Generator().manual_seed(1)
    mu = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)  # |G|² = 0.14, tr(Σ) = 3
    B, reps = 4, 4000
    samples = mu + torch.randn(reps, B, 3, generator=gen, dtype=torch.float64)
    means = samples.mean(1)
    tr = samples.var(dim=1, correction=1).sum(-1)
    plug = means.pow(2).sum(-1)
    corrected = plug - tr / B
    assert corrected.mean().item() == pytest.approx(0.14, abs=0.04)
    assert plug.mean().item() == pytest.approx(0.14 + 3 / B, abs=0.05)
    noise = G.gradient_noise(nn.Linear(1, 1), torch.zeros(2, 1), torch.zeros(2))  # runs on a model too
    assert noise.n == 2


def _linreg(d=5, n=20000, sigma=1.0, seed=0):
    """Linear regression at a known point: g = (x·u - σε) x, so G = u and tr(Σ) = d(|u|²+σ²) + |u|²."""
    gen = torch.Generator().manual_seed(seed)
    w_star = torch.randn(d, generator=gen)
    u = torch.randn(d, generator=gen)
    u = u / u.norm()  # |u| = 1
    X = torch.randn(n, d, generator=gen)
    y = X @ w_star + sigma * torch.randn(n, generator=gen)
    model = nn.Linear(d, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_((w_star + u)[None])
    loss = lambda out, t: 0.5 * F.mse_loss(out.reshape(-1), t.reshape(-1))  # noqa: E731
    truth = {"g2": 1.0, "trace": d * (1.0 + sigma**2) + 1.0}
    return model, X, y, loss, truth


def test_gradient_noise_matches_the_analytic_truth_and_is_chunk_invariant():
    model, X, y, loss, truth = _linreg()
    full = G.gradient_noise(model, X, y, loss_fn=loss, chunk_size=20000)
    chunked = G.gradient_noise(model, X, y, loss_fn=loss, chunk_size=777, method="linear")
    assert chunked.trace == pytest.approx(full.trace, rel=1e-6)
    assert chunked.grad_sq_norm == pytest.approx(full.grad_sq_norm, rel=1e-6)
    for k in full.mean:
        torch.testing.assert_close(chunked.var[k], full.var[k], rtol=1e-6, atol=0)
    per = G.flatten_grads(G.per_sample_grads(model, X, y, loss_fn=loss)).double()
    se_trace = (per - per.mean(0)).pow(2).sum(1).std().item() / math.sqrt(len(X))
    assert abs(full.trace - truth["trace"]) < 5 * se_trace
    assert full.grad_sq_norm_unbiased == pytest.approx(truth["g2"], rel=0.1)
    assert full.b_simple == pytest.approx(truth["trace"] / truth["g2"], rel=0.12)
    pop = G.gradient_noise(model, X, y, loss_fn=loss, chunk_size=5000, whole_dataset=True)
    assert pop.trace == pytest.approx(full.trace * (len(X) - 1) / len(X), rel=1e-9)
    assert pop.grad_sq_norm_unbiased == pop.grad_sq_norm
    assert set(full.snr()) == {"weight"}
    assert set(full.per_layer()["weight"]) == {"trace", "grad_sq_norm", "ratio"}


def test_two_batch_estimator_agrees_with_per_sample_truth():
    model, X, y, loss, truth = _linreg(n=4000, seed=1)
    exact = G.gradient_noise(model, X, y, loss_fn=loss, chunk_size=4000, whole_dataset=True)
    b_small, b_big, groups, per_group = 4, 64, 16, 100
    small = G.batch_gradient_sq_norms(model, X, y, b_small, groups * per_group, loss_fn=loss, seed=0)
    big = G.batch_gradient_sq_norms(model, X, y, b_big, groups * per_group, loss_fn=loss, seed=1)
    est = G.two_batch_noise_scale(small, big, b_small, b_big)
    parts = [G.two_batch_noise_scale(s, b, b_small, b_big) for s, b in
             zip(small.reshape(groups, -1), big.reshape(groups, -1), strict=True)]
    se_trace = np.std([p.trace for p in parts], ddof=1) / math.sqrt(groups)
    se_g2 = np.std([p.grad_sq_norm for p in parts], ddof=1) / math.sqrt(groups)
    assert abs(est.trace - exact.trace) < 4 * se_trace
    assert abs(est.grad_sq_norm - exact.grad_sq_norm) < 4 * se_g2
    assert est.b_simple == pytest.approx(exact.b_simple, rel=0.25)
    assert exact.b_simple == pytest.approx(truth["trace"] / truth["g2"], rel=0.15)
    # both batch sizes obey E|G_B|² = |G|² + tr(Σ)/B
    assert small.mean() == pytest.approx(exact.grad_sq_norm + exact.trace / b_small, rel=0.1)
    assert big.mean() == pytest.approx(exact.grad_sq_norm + exact.trace / b_big, rel=0.1)
    short = G.estimate_noise_scale_two_batch(model, X, y, b_small=4, b_big=64, repeats=20, loss_fn=loss)
    assert short.b_small == 4 and math.isfinite(short.trace)


def test_two_batch_formulas_and_validation():
    g2, tr = 0.5, 8.0
    est = G.two_batch_noise_scale(g2 + tr / 4, g2 + tr / 32, 4, 32)
    assert est.grad_sq_norm == pytest.approx(g2) and est.trace == pytest.approx(tr)
    assert est.b_simple == pytest.approx(16.0)
    with pytest.raises(ValueError, match="smaller than b_big"):
        G.two_batch_noise_scale(1.0, 0.5, 32, 4)
    with pytest.raises(ValueError, match="finite and >= 0"):
        G.two_batch_noise_scale(-1.0, 0.5, 4, 32)
    with pytest.raises(ValueError, match="replace=False"):
        G.batch_gradient_sq_norms(MLP(seed=0), *_data(8), batch_size=9, repeats=1, replace=False)
    model = MLP(seed=0)
    before = [p.grad for p in model.parameters()]
    G.batch_gradient_sq_norms(model, *_data(8), batch_size=4, repeats=2, replace=False)
    assert [p.grad for p in model.parameters()] == before


# ------------------------------------------------------------------------------------------ plots
def test_plots_draw_lines_bands_and_heatmap(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = MLP(seed=0)
    tracker = G.GradientTracker(model, blocks=BLOCKS)
    task = load_task(seed=0, batch_size=200)
    trace = fit(model, task, torch.optim.SGD(model.parameters(), lr=0.5), 4, callbacks=[tracker],
                device="cpu", progress=False)
    ax = G.plot_gradient_sizes(trace, names=["h[0:8]", "h[8:32]"], background=False)
    assert len(ax.get_lines()) == 4 and len(ax.collections) == 0 and ax.get_yscale() == "log"
    ax = G.plot_gradient_sizes(tracker, names=["h[0:8]", "h[8:32]"])  # bands from the step log + background
    assert len(ax.get_lines()) == 4 and len(ax.collections) == 3
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    per_step = tracker.step_log().mean_abs[:, tracker.names.index("h[0:8]")]
    assert band.min() >= per_step.min() - 1e-12 and band.max() <= per_step.max() + 1e-12
    ax.figure.savefig(tmp_path / "sizes.png")
    ax2 = G.plot_gradient_sizes({"run A": tracker, "run B": tracker.history}, names=["hidden.bias"],
                                background=False, variance=False)
    assert len(ax2.get_lines()) == 2
    ax3 = G.plot_gradient_heatmap(tracker)
    assert ax3.images[0].get_array().shape == (len(tracker.names), 16)
    ax3.figure.savefig(tmp_path / "heat.png")
    plt.close("all")
    with pytest.raises(ValueError, match="was not tracked"):
        G.plot_gradient_sizes(tracker, names=["nope"])
    with pytest.raises(ValueError, match="GradientTracker"):
        G.plot_gradient_sizes(42)
    with pytest.raises(ValueError, match="no finished epoch"):
        G.plot_gradient_heatmap(G.GradientTracker(model))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tracker_and_per_sample_grads_on_the_gpu_match_the_cpu():
    X, y = _data(32)
    results = {}
    for dev in ("cpu", "cuda"):
        model = MLP(seed=0).to(dev)
        tracker = G.GradientTracker(model, blocks=BLOCKS)
        _run(model, tracker, [(xb.to(dev), yb.to(dev)) for xb, yb in _batches(5)])
        per = G.per_sample_grads(model, X, y)
        results[dev] = (tracker.end_epoch(), {k: v.cpu() for k, v in per.items()})
    (a, pa), (b, pb) = results["cpu"], results["cuda"]
    for name in a:
        for key in ("mean_abs", "norm", "var"):
            assert a[name][key] == pytest.approx(b[name][key], rel=1e-3)
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=1e-3, atol=1e-5)


# ------------------------------------------------------------------ the noise scale from per-sample norms
class _Seq(nn.Module):
    """Linear layers on a sequence input [B, T, in], summed over positions: the general form of the norms."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(5, 7)
        self.out = nn.Linear(7, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.inner(x))).sum(1)


class _Twice(nn.Module):
    """One nn.Linear used twice: its per-sample gradient is a sum of two outer products."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.out = nn.Linear(6, 1)

    def forward(self, x):
        return self.out(torch.tanh(self.lin(torch.tanh(self.lin(x)))))


class _Scaled(nn.Module):
    """A trainable parameter outside nn.Linear."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 1)
        self.scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        return self.lin(x) * self.scale


@pytest.mark.parametrize("whole_dataset", [False, True])
@pytest.mark.parametrize("case", ["mlp", "mlp-frozen-first", "sequence", "twice", "scaled", "mse-3-outputs"])
def test_the_norms_path_equals_the_materializing_path_in_float64(case, whole_dataset):
    torch.manual_seed(0)
    loss_fn = None
    if case.startswith("mlp"):
        model, X = MLP(n_features=6, hidden=9, seed=3), torch.randn(40, 6)
        y = (torch.rand(40) > 0.5).float()
        if case == "mlp-frozen-first":
            model.hidden.weight.requires_grad_(False)
    elif case == "sequence":
        model, X, y = _Seq(), torch.randn(30, 4, 5), (torch.rand(30) > 0.5).float()
    elif case == "twice":
        model, X, y = _Twice(), torch.randn(30, 6), (torch.rand(30) > 0.5).float()
    elif case == "scaled":
        model, X, y = _Scaled(), torch.randn(30, 6), (torch.rand(30) > 0.5).float()
    else:
        model, X, y = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), torch.randn(25, 6), torch.randn(25, 3)
        loss_fn = F.mse_loss
    model = model.double()
    X, y = X.double(), y.double()
    want = G.gradient_noise(model, X, y, loss_fn=loss_fn, whole_dataset=whole_dataset)
    got = G.gradient_noise_scale(model, X, y, loss_fn=loss_fn, whole_dataset=whole_dataset, chunk_size=7)
    assert got.method == ("per-sample" if case in ("twice", "scaled") else "norms")
    assert got.n == want.n
    assert got.trace == pytest.approx(want.trace, rel=1e-9)
    assert got.grad_sq_norm == pytest.approx(want.grad_sq_norm, rel=1e-9)
    assert got.grad_sq_norm_unbiased == pytest.approx(want.grad_sq_norm_unbiased, rel=1e-8, abs=1e-12)
    assert got.b_simple == pytest.approx(want.b_simple, rel=1e-8)


def test_the_norms_path_in_float32_matches_the_float64_reference_on_the_course_mlp():
    model, X = MLP(seed=0), torch.randn(256, 10, generator=torch.Generator().manual_seed(1))
    y = (torch.rand(256, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    want = G.gradient_noise(copy.deepcopy(model).double(), X.double(), y.double())
    got = G.gradient_noise_scale(model, X, y)
    assert got.method == "norms"
    assert got.trace == pytest.approx(want.trace, rel=1e-5)
    assert got.b_simple == pytest.approx(want.b_simple, rel=1e-4)


def test_gradient_noise_scale_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="method='norms' cannot be used.*nn.Linear layers only"):
        G.gradient_noise_scale(_Scaled(), torch.randn(4, 6), torch.ones(4), method="norms")
    with pytest.raises(ValueError, match="at least 2 samples"):
        G.gradient_noise_scale(MLP(), torch.randn(1, 10), torch.ones(1))
    with pytest.raises(ValueError, match="method must be"):
        G.gradient_noise_scale(MLP(), torch.randn(4, 10), torch.ones(4), method="fast")


def test_sample_norms_match_per_sample_gradients_on_both_paths():
    from torch import nn

    from lrlab.gradients import flatten_grads, per_sample_grads, sample_norms

    g = torch.Generator().manual_seed(7)
    X, y = torch.randn(37, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (37,), generator=g)
    linear = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    conv_like = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.Linear(8, 3)).double()  # LayerNorm: fallback
    for model, method in ((linear, "norms"), (conv_like, "per-sample")):
        ref = flatten_grads(per_sample_grads(model, X, y))
        got = sample_norms(model, X, y, chunk_size=10)
        assert got.method == method and got.n == 37
        assert torch.allclose(got.sq, ref.pow(2).sum(1), rtol=1e-10)
        assert torch.allclose(got.total, ref.sum(0), rtol=1e-10, atol=1e-12)
