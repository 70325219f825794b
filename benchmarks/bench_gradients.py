"""Speed of the gradient-variance tools on the course MLP (CPU, one thread).

Rows:

* per-sample gradients of a batch of 256: ``vmap(grad)`` against a Python loop of 256 single-sample
  backward passes (target >= 20x faster), and against one ordinary batch forward + backward, which gives
  only the mean gradient (target <= 3x its time); the outer-product method (one batched backward, then
  ``δ_i ⊗ a_i`` per ``nn.Linear``) is measured against the same baseline;
* training with :class:`lrlab.gradients.GradientTracker` recording every step against the same loop
  without it (target <= 1.3x), at batch 32 and 256, in a bare loop over batches held in memory (the
  strictest setting: nothing else dilutes the overhead) and through :func:`lrlab.training.fit`.

Both sides of a row are timed in the same process, interleaved, and the medians compared. The clock is the
CPU time of this process (``time.process_time``): everything runs on one thread, so on an idle machine it
equals the wall-clock time, and on a shared machine it is not inflated by the time other processes hold the CPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lrlab.data import load_task
from lrlab.gradients import GradientTracker, per_sample_grads
from lrlab.models import MLP
from lrlab.training import fit


def _median_pair(base: Callable[[], object], cand: Callable[[], object], repeats: int,
                 number: int = 1) -> tuple[float, float]:
    """Median CPU seconds per call of ``base`` and ``cand``, timed alternately after one warm-up call each."""
    base()
    cand()
    tb, tc = [], []
    for _ in range(repeats):
        for fn, out in ((base, tb), (cand, tc)):
            t0 = time.process_time()
            for _ in range(number):
                fn()
            out.append((time.process_time() - t0) / number)
    return statistics.median(tb), statistics.median(tc)


def _row(benchmark: str, baseline: str, tb: float, candidate: str, tc: float, ratio: float, target: str,
         ok: bool, note: str = "") -> dict:
    return {"benchmark": benchmark, "baseline": baseline, "baseline_s": tb, "candidate": candidate,
            "candidate_s": tc, "ratio": ratio, "target": target, "ok": ok, "note": note}


def _per_sample_rows(quick: bool) -> list[dict]:
    model = MLP(seed=0)  # the course MLP: 10 -> 32 -> 1
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(256, 10, generator=gen)
    y = (torch.rand(256, generator=gen) > 0.5).float()
    params = list(model.parameters())

    def loop() -> None:
        for i in range(256):
            loss = F.binary_cross_entropy_with_logits(model(X[i : i + 1]), y[i : i + 1])
            torch.autograd.grad(loss, params)

    def batch() -> None:
        loss = F.binary_cross_entropy_with_logits(model(X), y)
        torch.autograd.grad(loss, params)

    vmap = lambda: per_sample_grads(model, X, y)  # noqa: E731
    outer = lambda: per_sample_grads(model, X, y, method="linear")  # noqa: E731

    reps = 5 if quick else 9
    number = 20 if quick else 50
    rows = []
    tl, tv = _median_pair(loop, vmap, 3 if quick else 5, number=1)
    rows.append(_row("per-sample grads, batch 256, course MLP", "loop of 256 single backwards", tl,
                     "vmap(grad)", tv, tl / tv, ">= 20x", tl / tv >= 20))
    tb, tv = _median_pair(batch, vmap, reps, number=number)
    rows.append(_row("per-sample grads vs one batch backward, batch 256", "one batch forward+backward", tb,
                     "vmap(grad)", tv, tv / tb, "<= 3x", tv / tb <= 3,
                     "the batch pass gives only the mean gradient"))
    tb, to = _median_pair(batch, outer, reps, number=number)
    rows.append(_row("per-sample grads vs one batch backward, batch 256", "one batch forward+backward", tb,
                     "outer products (method='linear')", to, to / tb, "<= 3x", to / tb <= 3,
                     "one batched backward to the layer outputs, then einsum per nn.Linear"))
    return rows


def _tracker_rows(quick: bool) -> list[dict]:
    rows = []
    epochs = 3 if quick else 10  # the tutorial trains 10 epochs
    reps = 5 if quick else 9
    for batch_size in (32, 256):
        task = load_task(seed=0, batch_size=batch_size)
        batches = list(task.train)

        def train(track: bool, batches=batches) -> None:
            model = MLP(seed=0)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            tracker = GradientTracker(model) if track else None
            step = 0
            for _ in range(epochs):
                for xb, yb in batches:
                    opt.zero_grad(set_to_none=True)
                    F.binary_cross_entropy_with_logits(model(xb), yb).backward()
                    if tracker is not None:
                        tracker.after_backward(model, step)
                    opt.step()
                    step += 1
                if tracker is not None:
                    tracker.end_epoch()

        t_off, t_on = _median_pair(lambda: train(False), lambda: train(True), reps)
        steps = epochs * len(batches)
        rows.append(_row(f"training loop, tracker every step, batch {batch_size}", "tracker off", t_off,
                         "tracker on (every=1)", t_on, t_on / t_off, "<= 1.3x", t_on / t_off <= 1.3,
                         f"bare loop, {steps} steps; {1e6 * (t_on - t_off) / steps:.0f} us per step"))

    task = load_task(seed=0, batch_size=32)

    def fit_run(track: bool) -> None:
        model = MLP(seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        fit(model, task, opt, epochs, device="cpu", progress=False,
            callbacks=[GradientTracker(model)] if track else ())

    t_off, t_on = _median_pair(lambda: fit_run(False), lambda: fit_run(True), reps)
    rows.append(_row("lrlab.training.fit, tracker every step, batch 32", "tracker off", t_off,
                     "tracker on (every=1)", t_on, t_on / t_off, "<= 1.3x", t_on / t_off <= 1.3,
                     "includes the per-epoch evaluation"))
    return rows


def run(quick: bool = False) -> list[dict]:
    """All rows of this benchmark (``quick`` uses fewer repeats)."""
    torch.set_num_threads(1)
    return _per_sample_rows(quick) + _tracker_rows(quick)


if __name__ == "__main__":
    for r in run(quick=False):
        flag = "ok  " if r["ok"] else "MISS"
        print(f"{flag} {r['benchmark']}: {r['candidate']} {1e3 * r['candidate_s']:.3f} ms vs "
              f"{r['baseline']} {1e3 * r['baseline_s']:.3f} ms -> {r['ratio']:.2f}x (target {r['target']})"
              + (f"; {r['note']}" if r["note"] else ""))
