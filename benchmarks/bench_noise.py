"""The gradient noise scale and per-sample gradients at peer speed (CPU, one thread).

Rows:

* ``tr(Σ)`` and ``B_simple`` of a batch of 256 on an MLP 784-256-256-10 (cross-entropy):
  :func:`lrlab.gradients.gradient_noise_scale` (per-sample squared norms from one backward pass, no
  per-sample gradient stored) against :func:`lrlab.gradients.gradient_noise` (materializes every per-sample
  gradient; target >= 20x faster), and against BackPACK's ``Variance`` + ``BatchL2Grad`` extensions
  (target <= 1x its time);
* per-sample gradients (:func:`lrlab.gradients.per_sample_grads`) against Opacus' ``GradSampleModule`` and
  BackPACK's ``BatchGrad``, on the course MLP (10-32-1, batch 256) and the wide MLP (784-256-256-10, batch
  256); target <= 1x.

The peers are installed only for benchmarking: ``pip install -e '.[bench]'``. Without them their rows say so
and are skipped. Every row also checks that both sides computed the same numbers.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.bench_gradients import _median_pair
from lrlab.gradients import gradient_noise, gradient_noise_scale, per_sample_grads

B = 256


def _row(benchmark: str, baseline: str, tb: float, candidate: str, tc: float, target: float, note: str) -> dict:
    ratio = tc / tb if target <= 1 else tb / tc
    ok = ratio <= target if target <= 1 else ratio >= target
    return {"benchmark": benchmark, "baseline": baseline, "baseline_s": tb, "candidate": candidate,
            "candidate_s": tc, "ratio": ratio, "target": f"<= {target:g}x" if target <= 1 else f">= {target:g}x",
            "ok": ok, "note": note}


def _wide() -> nn.Sequential:
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def _course() -> nn.Sequential:
    # the course MLP's layers as an nn.Sequential (BackPACK reserves the attribute name `output`)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))


def _bce(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(out.reshape(-1), t)


def _data(wide: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    if wide:
        X = torch.randn(B, 784, generator=g)
        return X, (X[:, :10] + 0.5 * torch.randn(B, 10, generator=g)).argmax(1)   # labels with some signal
    X = torch.randn(B, 10, generator=g)
    return X, (X[:, 0] + 0.5 * torch.randn(B, generator=g) > 0).float()


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _noise_rows(quick: bool) -> list[dict]:
    torch.manual_seed(0)
    model = _wide()
    X, y = _data(wide=True)
    reps = 3 if quick else 7
    mat = gradient_noise(model, X, y, loss_fn=F.cross_entropy)
    fast = gradient_noise_scale(model, X, y, loss_fn=F.cross_entropy)
    same = abs(fast.trace - mat.trace) <= 1e-4 * mat.trace
    t_mat, t_fast = _median_pair(lambda: gradient_noise(model, X, y, loss_fn=F.cross_entropy),
                                 lambda: gradient_noise_scale(model, X, y, loss_fn=F.cross_entropy),
                                 2 if quick else 3)
    rows = [_row("tr(Σ) and B_simple, MLP 784-256-256-10, batch 256", "gradient_noise (per-sample grads)", t_mat,
                 "gradient_noise_scale (norms)", t_fast, 20,
                 f"tr(Σ) {fast.trace:.5g} vs {mat.trace:.5g} (same: {same}), B_simple {fast.b_simple:.4g}")]
    if not _have("backpack"):
        return rows + [_row("tr(Σ) and B_simple vs BackPACK", "BackPACK (not installed: pip install -e '.[bench]')",
                            float("nan"), "gradient_noise_scale", t_fast, 1, "skipped")]
    from backpack import backpack, extend
    from backpack.extensions import BatchL2Grad, Variance

    bm = extend(_wide())
    bm.load_state_dict(model.state_dict())
    loss_fn = extend(nn.CrossEntropyLoss())

    def peer() -> float:
        bm.zero_grad()
        loss = loss_fn(bm(X), y)
        with backpack(Variance(), BatchL2Grad()):
            loss.backward()
        # BackPACK's quantities are of the per-sample gradients of the MEAN loss, g_i / B, with a 1/B variance
        var = sum(float(p.variance.sum()) for p in bm.parameters())
        sq = sum(float(p.batch_l2.sum()) for p in bm.parameters())
        g2 = sum(float(p.grad.pow(2).sum()) for p in bm.parameters())
        trace = var * B * B * B / (B - 1)
        return trace / (g2 - trace / B) if g2 - trace / B > 0 else float("inf"), sq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # BackPACK's full backward hooks warn about inputs without gradients
        peer_trace = peer()
        t_peer, t_fast = _median_pair(peer, lambda: gradient_noise_scale(model, X, y, loss_fn=F.cross_entropy), reps)
    rows.append(_row("tr(Σ) and B_simple, MLP 784-256-256-10, batch 256", "BackPACK Variance + BatchL2Grad", t_peer,
                     "gradient_noise_scale (norms)", t_fast, 1,
                     f"B_simple {fast.b_simple:.4g} vs BackPACK's {peer_trace[0]:.4g}"))
    return rows


def _per_sample_rows(quick: bool) -> list[dict]:
    rows = []
    reps = 3 if quick else 7
    for name, make, loss, peer_loss in (("course MLP 10-32-1", _course, _bce, nn.BCEWithLogitsLoss),
                                        ("MLP 784-256-256-10", _wide, F.cross_entropy, nn.CrossEntropyLoss)):
        wide = name.startswith("MLP 784")
        torch.manual_seed(0)
        model = make()
        X, y = _data(wide)
        ours = lambda model=model, X=X, y=y, loss=loss: per_sample_grads(model, X, y, loss_fn=loss, method="auto")  # noqa: E731
        mine = ours()
        if _have("opacus"):
            from opacus import GradSampleModule

            om = GradSampleModule(make())
            om._module.load_state_dict(model.state_dict())

            def opacus(om=om, X=X, y=y, loss=loss) -> list:
                om.zero_grad()
                loss(om(X), y).backward()
                return [p.grad_sample for p in om.parameters()]

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = opacus()
                # with loss_reduction="mean" Opacus rescales to each sample's own loss gradient, as ours are
                err = max(float((m - t).abs().max()) for m, t in zip(mine.values(), theirs, strict=True))
                scale = max(float(v.abs().max()) for v in mine.values())
                tb, tc = _median_pair(opacus, ours, reps)
            rows.append(_row(f"per-sample grads, {name}, batch 256", "Opacus GradSampleModule", tb,
                             "per_sample_grads", tc, 1, f"largest difference {err / scale:.1e} of the largest value"))
        else:
            rows.append(_row(f"per-sample grads, {name}", "Opacus (not installed: pip install -e '.[bench]')",
                             float("nan"), "per_sample_grads", float("nan"), 1, "skipped"))
        if _have("backpack"):
            from backpack import backpack, extend
            from backpack.extensions import BatchGrad

            bm = extend(make())
            bm.load_state_dict(model.state_dict())
            lf = extend(peer_loss())

            def backpack_grads(bm=bm, lf=lf, X=X, y=y, wide=wide) -> list:
                bm.zero_grad()
                out = bm(X)
                with backpack(BatchGrad()):
                    lf(out if wide else out.reshape(-1), y).backward()
                return [p.grad_batch for p in bm.parameters()]

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = backpack_grads()   # per-sample gradients of the MEAN loss: g_i / B
                err = max(float((m - t * B).abs().max()) for m, t in zip(mine.values(), theirs, strict=True))
                scale = max(float(v.abs().max()) for v in mine.values())
                tb, tc = _median_pair(backpack_grads, ours, reps)
            rows.append(_row(f"per-sample grads, {name}, batch 256", "BackPACK BatchGrad", tb,
                             "per_sample_grads", tc, 1, f"largest difference {err / scale:.1e} of the largest value"))
        else:
            rows.append(_row(f"per-sample grads, {name}", "BackPACK (not installed: pip install -e '.[bench]')",
                             float("nan"), "per_sample_grads", float("nan"), 1, "skipped"))
    return rows


def run(quick: bool = False) -> list[dict]:
    """All rows of this benchmark (``quick`` uses fewer repeats)."""
    torch.set_num_threads(1)
    return _noise_rows(quick) + _per_sample_rows(quick)


if __name__ == "__main__":
    for r in run(quick=False):
        print(r)
