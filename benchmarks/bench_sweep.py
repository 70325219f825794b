"""Speed of :func:`lrlab.sweep.run_sweep`: many small models at once against one after another.

The grid: 4 strategies (constant, cosine, WSD, one-cycle) x 4 peak LRs x 2 seeds = 32 runs of the
course's task (the seed-002 MLP, plain SGD, batch 32, 10 epochs = 8000 samples each).

Rows:

* the vectorized sweep (all 32 models stacked, explicit batched matrix products, one batched SGD
  update with a per-model LR vector) against the sequential fallback (the course's own
  :func:`lrlab.training.fit` with a torch optimizer and a sample-indexed scheduler, run after run):
  target >= 5x;
* the same with the generic vectorized path (``vmap`` over ``functional_call``, used for models that are
  not a plain Linear/activation chain): target >= 5x;
* the vectorized sweep with 2 threads against 1 thread (information: on a 2-core machine shared with
  other work the second thread buys little for these small matrices, which is why the course runs
  with ``torch.set_num_threads(1)``).

Both sides of a row run in the same process, alternately, and the medians are compared.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from lrlab.data import load_task
from lrlab.models import MLP
from lrlab.sweep import run_sweep

STRATEGIES = ["constant", "cosine", "wsd", "one-cycle"]
LRS = [0.03, 0.1, 0.3, 1.0]
SEEDS = [0, 1]


class _NotAChain(MLP):
    """The course MLP under another class name, so the sweep takes its generic ``vmap`` path."""


def _medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, timed round-robin (so load changes hit every side alike)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _row(benchmark: str, baseline: str, tb: float, candidate: str, tc: float, ratio: float, target: str,
         ok: bool, note: str = "") -> dict:
    return {"benchmark": benchmark, "baseline": baseline, "baseline_s": tb, "candidate": candidate,
            "candidate_s": tc, "ratio": ratio, "target": target, "ok": ok, "note": note}


def run(quick: bool = False) -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = load_task(seed=0)
        epochs = 2 if quick else 10
        repeats = 1 if quick else 3
        kw = dict(strategies=STRATEGIES, lrs=LRS, seeds=SEEDS, task=task, epochs=epochs, progress=False)
        n_runs = len(STRATEGIES) * len(LRS) * len(SEEDS)
        name = f"sweep {n_runs} configs x {epochs} epochs, course task, SGD batch 32"
        device = "cuda" if torch.cuda.is_available() else "cpu"
        sequential = lambda: run_sweep(method="sequential", device=device, **kw)  # noqa: E731
        vectorized = lambda: run_sweep(method="vectorized", device=device, **kw)  # noqa: E731
        generic = lambda: run_sweep(method="vectorized", device=device,  # noqa: E731
                                    model_fn=lambda seed: _NotAChain(seed=seed), **kw)
        def two_threads() -> object:
            torch.set_num_threads(2)
            try:
                return vectorized()
            finally:
                torch.set_num_threads(1)

        # warm-up: one short run of each path (imports, allocator, first-call costs)
        warm = {**kw, "epochs": 1, "lrs": LRS[:1]}
        for method in ("sequential", "vectorized"):
            run_sweep(method=method, device=device, **warm)
        fns = {"seq": sequential, "vec": vectorized, "gen": generic}
        if device == "cpu":
            fns["vec2"] = two_threads
        t = _medians(fns, repeats)
        ts = t["seq"]
        rows = [
            _row(name, "sequential fit loop", ts, "vectorized (batched matmul)", t["vec"], ts / t["vec"], ">= 5x",
                 ts / t["vec"] >= 5, f"1 thread, {device}"),
            _row(name, "sequential fit loop", ts, "vectorized (vmap functional_call)", t["gen"], ts / t["gen"],
                 ">= 5x", ts / t["gen"] >= 5, f"1 thread, {device}"),
        ]
        if "vec2" in t:
            rows.append(_row(name, "vectorized, 1 thread", t["vec"], "vectorized, 2 threads", t["vec2"],
                             t["vec"] / t["vec2"], "info", True, "speed-up from a second thread"))
        return rows
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    for r in run():
        print(r)
