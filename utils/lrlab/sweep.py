"""Sweeps: train a grid of LR strategies x learning rates x seeds, fast, and tabulate the results.

One run of the course's task takes a fraction of a second, but a fair comparison needs many: every
strategy, at several peak LRs, over several seeds (one seed can make any strategy look best). This
module runs such grids and returns a tidy table -- one row per run -- with a summary of mean and
spread per (strategy, LR).

How it is fast
--------------
A small MLP is far too small to keep a CPU busy: one training step is mostly Python and kernel-launch
overhead, not arithmetic. So instead of training 32 models one after another, we train them *at the
same time*: their weights are stacked into tensors with a leading "model" dimension
(``torch.func.stack_module_state``) and one forward pass runs all of them as batched matrix products
(``torch.func.vmap`` over ``torch.func.functional_call``). Each model still gets

* its own initial weights and its own data order (its seed),
* its own learning rate at every step: a vector of LRs, one per model, applied in a batched
  SGD / momentum / Adam update written here (:class:`OptimizerSpec`),

and because the total loss is the *sum* of the models' losses, one backward pass gives every model
exactly its own gradient. Where that is impossible (an arbitrary ``torch.optim`` optimizer, a model
that ``vmap`` cannot run) the sweep falls back to a plain loop over :func:`lrlab.training.fit`.
The two produce the same traces to float tolerance for the same seeds (a test checks it).

Fair budgets
------------
Every run sees the same number of training **samples**: ``epochs x n_train``. With a batch of 64 that
is half as many optimizer steps as with a batch of 32; counting steps would hand the small batches
twice the data. The schedules are indexed by samples too (``unit="sample"``), so every schedule
reaches its end exactly when the budget runs out, whatever the batch size.

:func:`steps_to_target` counts the other way round, with the same stacked training: the optimizer steps
each (LR, seed) needs until the whole training set's loss reaches a target, the ``S(B)`` of the critical
batch size (:func:`lrlab.scaling.fit_critical_batch`). A task of C > 2 classes (integer class indices)
trains with cross-entropy on C outputs.

imports: args, device, data, models, schedules, metrics, training (its optimizer table and progress switch).
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrlab import metrics as _metrics
from lrlab.args import check_choice, check_int, check_real
from lrlab.data import load_task, make_loaders
from lrlab.device import pick_device
from lrlab.models import MLP
from lrlab.schedules import WSD, Constant, Cosine, MultiStep, OneCycle, Warmup, as_lambda_lr
from lrlab.training import (
    OPTIMIZERS,
    PROGRESS_AUTO_STEPS,
    Trace,
    fit,
    is_divergent,
    make_optimizer,
    progress_enabled,
)

__all__ = [
    "METHODS",
    "OPTIMIZERS",
    "PROGRESS_AUTO_STEPS",
    "STRATEGIES",
    "OptimizerSpec",
    "StepsToTarget",
    "Strategy",
    "SweepResult",
    "epoch_order",
    "get_strategy",
    "run_sweep",
    "steps_to_target",
]

METHODS = ("auto", "vectorized", "sequential")
SUMMARY_METRICS = (
    "final_test_loss",
    "final_test_acc",
    "best_test_acc",
    "auc_train_loss",
    "oscillation",
    "diverged",
)


# --------------------------------------------------------------------------------------------- strategies
@dataclass(frozen=True)
class Strategy:
    """An LR strategy: a name and a recipe ``make(peak_lr, total_samples) -> schedule``.

    The schedule it makes is a callable ``schedule(samples_seen) -> lr``; the sweep evaluates it at the
    number of samples seen *before* each step, so the first step uses ``schedule(0)``.
    """

    name: str
    make: Callable[[float, int], Callable[[float], float]]
    description: str = ""

    def schedule(self, lr: float, total_samples: int) -> Callable[[float], float]:
        check_real(lr, "lr", low=0, low_open=True)
        sched = self.make(float(lr), int(total_samples))
        if not callable(sched):
            raise ValueError(
                f"strategy {self.name!r} must make a callable schedule, got {type(sched).__name__}"
            )
        return sched


def _constant(lr: float, total: int) -> Callable[[float], float]:
    return Constant(lr, unit="sample")


def _step(lr: float, total: int) -> Callable[[float], float]:
    return MultiStep(lr, milestones=(round(0.5 * total), round(0.75 * total)), gamma=0.1, unit="sample")


def _cosine(lr: float, total: int) -> Callable[[float], float]:
    return Cosine(lr, total=total, unit="sample")


def _wsd(lr: float, total: int) -> Callable[[float], float]:
    return WSD(lr, total=total, warmup=round(0.05 * total), decay=round(0.2 * total), unit="sample")


def _warmup(lr: float, total: int) -> Callable[[float], float]:
    return Warmup(Constant(lr, unit="sample"), warmup=max(1, round(0.1 * total)))


def _one_cycle(lr: float, total: int) -> Callable[[float], float]:
    return OneCycle(max_lr=lr, total=total, unit="sample")


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy("constant", _constant, "the peak LR throughout"),
        Strategy("warmup", _warmup, "10 % linear warmup, then the peak LR throughout"),
        Strategy("step", _step, "peak LR, x0.1 at 50 % and again at 75 % of the budget"),
        Strategy("cosine", _cosine, "half a cosine from the peak LR down to 0"),
        Strategy("wsd", _wsd, "5 % linear warmup, stable, linear decay to 0 over the last 20 %"),
        Strategy(
            "one-cycle", _one_cycle, "ramp from peak/25 up to the peak in 30 %, cosine down to peak/25e4"
        ),
    )
}


def get_strategy(strategy: str | Strategy) -> Strategy:
    """A :class:`Strategy` from its name (one of ``STRATEGIES``) or the strategy itself."""
    if isinstance(strategy, Strategy):
        return strategy
    if isinstance(strategy, str) and strategy in STRATEGIES:
        return STRATEGIES[strategy]
    raise ValueError(
        f"strategy must be one of {list(STRATEGIES)} or a lrlab.sweep.Strategy, got {strategy!r}"
    )


# --------------------------------------------------------------------------------------------- optimizers
@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer the sweep can run batched: plain SGD, SGD with (Nesterov) momentum, Adam or AdamW.

    :meth:`build` makes the equivalent ``torch.optim`` optimizer (for the sequential path);
    :meth:`update` applies the same update to stacked parameters with one LR per model, following
    PyTorch's formulas line by line so that both paths agree to float tolerance.
    """

    name: str = "sgd"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        check_choice(self.name, "optimizer name", OPTIMIZERS)
        check_real(self.momentum, "momentum", low=0, high=1, high_open=True)
        if self.nesterov and (self.name != "sgd" or self.momentum == 0):
            raise ValueError("nesterov=True needs name='sgd' and a momentum > 0")
        if self.momentum and self.name != "sgd":
            raise ValueError(f"momentum applies to 'sgd' only; {self.name} uses betas={self.betas}")
        check_real(self.weight_decay, "weight_decay", low=0)
        b1, b2 = self.betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must both be in [0, 1), got {self.betas!r}")
        check_real(self.eps, "eps", low=0, low_open=True)

    @classmethod
    def coerce(cls, spec: str | dict | OptimizerSpec) -> OptimizerSpec:
        """``"sgd"``, ``"momentum"`` (SGD with momentum 0.9), ``"adam"``, a dict of fields, or a spec."""
        if isinstance(spec, OptimizerSpec):
            return spec
        if spec == "momentum":
            return cls("sgd", momentum=0.9)
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict):
            return cls(**spec)
        raise ValueError(
            f"optimizer must be one of {OPTIMIZERS + ('momentum',)}, a dict such as "
            f"{{'name': 'sgd', 'momentum': 0.9}}, an OptimizerSpec, or a function "
            f"(params, lr) -> torch optimizer; got {spec!r}"
        )

    @property
    def label(self) -> str:
        if self.name == "sgd" and self.momentum:
            return f"sgd(momentum={self.momentum:g}{', nesterov' if self.nesterov else ''})"
        return self.name

    def build(self, params: Iterable[torch.Tensor], lr: float) -> torch.optim.Optimizer:
        """The ``torch.optim`` optimizer with these settings (:func:`lrlab.training.make_optimizer`)."""
        if self.name == "sgd":
            return make_optimizer(
                "sgd", params, lr, momentum=self.momentum, nesterov=self.nesterov, weight_decay=self.weight_decay
            )
        return make_optimizer(self.name, params, lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def init_state(self, params: Sequence[torch.Tensor]) -> dict[str, Any]:
        """Empty optimizer state for stacked parameters (momentum buffers / Adam moments)."""
        if self.name == "sgd":
            return {"step": 0, "buf": [None] * len(params)}
        return {
            "step": 0,
            "m": [torch.zeros_like(p) for p in params],
            "v": [torch.zeros_like(p) for p in params],
        }

    @torch.no_grad()
    def update(
        self,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        state: dict[str, Any],
        lr: torch.Tensor,
    ) -> None:
        """One batched step: ``params[i]`` has shape [M, ...]; ``lr`` has shape [M] (one LR per model)."""
        state["step"] += 1
        t = state["step"]
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            lr_b = lr.view(-1, *([1] * (p.dim() - 1)))
            if self.name == "sgd":
                if self.weight_decay:
                    g = g.add(p, alpha=self.weight_decay)
                if self.momentum:
                    buf = state["buf"][i]
                    if buf is None:
                        buf = state["buf"][i] = g.detach().clone()
                    else:
                        buf.mul_(self.momentum).add_(g)
                    g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
                p.sub_(lr_b * g)
                continue
            b1, b2 = self.betas
            if self.name == "adamw" and self.weight_decay:
                p.mul_(1 - lr_b * self.weight_decay)
            elif self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m, v = state["m"][i], state["v"][i]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = lr_b / (1 - b1**t)
            denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(self.eps)
            p.sub_(step_size * m / denom)


# --------------------------------------------------------------------------------------------- data order
def epoch_order(n: int, seed: int, epochs: int) -> torch.Tensor:
    """The row order of each epoch, shape [epochs, n]: exactly what ``lrlab.data.make_loaders(seed=seed)``
    shuffles to.

    The course's training loader draws its order from its own ``torch.Generator(seed)``: per epoch the
    ``DataLoader`` takes one random number for worker seeding, then ``RandomSampler`` draws a
    permutation (and one more that it throws away). Reproducing that here lets the batched sweep
    train on the very batches :func:`lrlab.training.fit` sees with the course's loaders.
    """
    g = torch.Generator().manual_seed(int(seed))
    orders = []
    for _ in range(epochs):
        torch.empty((), dtype=torch.int64).random_(generator=g)
        orders.append(torch.randperm(n, generator=g))
        torch.randperm(n, generator=g)
    return torch.stack(orders)


# --------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class _Run:
    strategy: Strategy
    lr: float
    seed: int
    batch_size: int


def _default_model_fn(n_features: int, n_classes: int = 2) -> Callable[[int], nn.Module]:
    outputs = 1 if n_classes == 2 else n_classes
    return lambda seed: MLP(n_features, hidden=32, n_outputs=outputs, seed=seed)


def _n_classes(task: Any) -> int:
    """2 for 0/1 labels (float, or integers 0/1), else the number of classes of integer class indices."""
    y = task.y_train
    if torch.is_floating_point(y):
        return 2
    return max(2, int((getattr(task, "info", None) or {}).get("n_classes") or int(y.max()) + 1))


def _stacked_loss(logits: torch.Tensor, y: torch.Tensor, multiclass: bool) -> torch.Tensor:
    """Per model, the mean loss of stacked ``logits`` ([M, N] or [M, N, C]) on labels [M, N]: shape [M]."""
    if multiclass:
        return F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(dim=1)
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=1)


def _held_out(logits: torch.Tensor, y: torch.Tensor, multiclass: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model, the mean loss and the accuracy of stacked ``logits`` on labels [M, N]."""
    correct = logits.argmax(dim=-1) == y if multiclass else (logits > 0) == (y > 0.5)
    return _stacked_loss(logits, y, multiclass), correct.float().mean(dim=1)


def _make_trace(epochs: list[dict], steps: list[dict], diverged_at: dict | None, config: dict) -> Trace:
    trace = Trace(epochs=epochs, steps=steps, config=dict(config))
    if diverged_at is not None:
        trace.mark_diverged(diverged_at)
    elif epochs:
        trace.mark_finished()
    return trace


_MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)


def _vectorizable(model: nn.Module, n_features: int, n_classes: int = 2) -> str | None:
    """None when the sweep can train stacked copies of ``model``; else the reason it cannot.

    Models with buffers or with layers that act differently in training and evaluation (dropout,
    batch norm) are left to the plain loop, where ``fit`` switches modes and updates running
    statistics the usual way. Everything else must run under ``vmap(functional_call)`` and return
    one logit per row (``n_classes`` scores per row for a task of more than 2 classes).
    """
    from torch.func import functional_call, stack_module_state, vmap

    special = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _MODE_DEPENDENT)})
    if special:
        return f"the model has layers that behave differently in training and evaluation ({', '.join(special)})"
    if any(True for _ in model.buffers()):
        return "the model has buffers (state that is not a parameter)"
    try:
        params, buffers = stack_module_state([model, copy.deepcopy(model)])
        base = copy.deepcopy(model).to("meta")
        out = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)))(
            params, buffers, torch.zeros(2, 3, n_features)
        )
    except Exception as err:  # noqa: BLE001 - any failure means: use the loop
        return f"{type(err).__name__}: {err}"
    want = (2, 3) if n_classes == 2 else (2, 3, n_classes)
    if tuple(out.shape) != want:
        return (
            f"the model returns shape {tuple(out.shape[1:])} per batch of 3 rows, not "
            + ("one logit per row [3]" if n_classes == 2 else f"{n_classes} class scores per row [3, {n_classes}]")
        )
    return None


_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU, nn.Identity)


def _linear_chain(model: nn.Module) -> tuple[list[tuple[str, Any]], bool] | None:
    """The layers of a plain Linear/activation chain (the course's MLP or an nn.Sequential), else None."""
    from lrlab.models import MLP

    if type(model) is MLP:
        return [("linear", "hidden"), ("act", model.act), ("linear", "output")], model.n_outputs == 1
    if type(model) is nn.Sequential:
        chain: list[tuple[str, Any]] = []
        for name, mod in model.named_children():
            if type(mod) is nn.Linear:
                chain.append(("linear", name))
            elif type(mod) in _ELEMENTWISE:
                chain.append(("act", mod))
            elif type(mod) is nn.Flatten and mod.start_dim == 1 and mod.end_dim == -1 and not chain:
                continue
            else:
                return None
        return chain, False
    return None


def _generic_forward(model: nn.Module, names: list[str]) -> Callable:
    """``forward(params, buffers, x)`` for any model: ``vmap`` over ``functional_call``.

    ``params`` is a list of stacked parameters [M, ...] in the order of ``names``; ``x`` is [M, B, features].
    """
    from torch.func import functional_call, vmap

    base = copy.deepcopy(model).to("meta")
    return vmap(lambda ps, b, x: functional_call(base, (dict(zip(names, ps, strict=True)), b), (x,)))


def _chain_forward(model: nn.Module, names: list[str]) -> Callable | None:
    """The same forward as explicit batched matrix products (``torch.baddbmm``) for a plain chain.

    The course's MLP (and any nn.Sequential of Linear layers and element-wise activations) needs no
    ``vmap`` machinery: this path has the least overhead per step. None for any other model.
    """
    found = _linear_chain(model)
    if found is None:
        return None
    chain, squeeze = found
    pos = {name: i for i, name in enumerate(names)}

    def forward(ps: Sequence[torch.Tensor], buffers: Any, x: torch.Tensor) -> torch.Tensor:
        for kind, layer in chain:
            if kind == "linear":
                W = ps[pos[f"{layer}.weight"]].transpose(1, 2)
                bias = ps[pos[f"{layer}.bias"]] if f"{layer}.bias" in pos else None
                x = torch.bmm(x, W) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, W)
            else:
                x = layer(x)
        return x.squeeze(-1) if squeeze else x

    return forward


def _batched_forward(
    models: Sequence[nn.Module],
    names: list[str],
    params: Sequence[torch.Tensor],
    buffers: dict,
    n_features: int,
    device: torch.device,
) -> tuple[Callable, str]:
    """The fastest forward that reproduces every model's own ``forward`` (checked on random inputs),
    and its kind: ``"bmm"`` (explicit batched matrix products) or ``"vmap"``."""
    fast = _chain_forward(models[0], names)
    if fast is not None:
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            x = torch.randn(len(models), 3, n_features, generator=g).to(device)
            ref = torch.stack([copy.deepcopy(m).to(device)(x[i]) for i, m in enumerate(models)])
            got = fast(params, buffers, x)
        if got.shape == ref.shape and torch.allclose(got, ref, rtol=1e-4, atol=1e-5):
            return fast, "bmm"
    return _generic_forward(models[0], names), "vmap"


def _train_vectorized(
    runs: Sequence[_Run],
    task: Any,
    epochs: int,
    spec: OptimizerSpec,
    model_fn: Callable[[int], nn.Module],
    device: torch.device,
    bar: Any,
    split: str = "test",
) -> list[Any]:
    """Train ``runs`` (all with the same batch size) together; one Trace per run, evaluated on ``split``."""
    from torch.func import stack_module_state

    M, bs = len(runs), runs[0].batch_size
    multiclass = _n_classes(task) > 2
    label = (lambda y: y.long()) if multiclass else (lambda y: y.float())
    Xtr, ytr = task.X_train.float().to(device), label(task.y_train).to(device)
    Xte, yte = getattr(task, f"X_{split}").float().to(device), label(getattr(task, f"y_{split}")).to(device)
    n = len(Xtr)
    per_epoch = math.ceil(n / bs)
    total = epochs * n
    t0 = time.perf_counter()

    models = [model_fn(r.seed) for r in runs]
    params, buffers = stack_module_state(models)
    names = list(params)
    P = [params[k].detach().to(device).clone().requires_grad_(True) for k in names]
    bufs = {k: v.to(device) for k, v in buffers.items()}
    fwd, kind = _batched_forward(models, names, P, bufs, Xtr.shape[1], device)
    state = spec.init_state(P)

    # every step's LR for every model, from the schedule at the samples seen before the step
    before = [e * n + min(j * bs, n) for e in range(epochs) for j in range(per_epoch)]
    schedules = [r.strategy.schedule(r.lr, total) for r in runs]
    lr_rows = [[float(sched(s)) for s in before] for sched in schedules]
    lr_table = torch.tensor(lr_rows, dtype=torch.float32, device=device)  # [M, steps]
    orders = torch.stack([epoch_order(n, r.seed, epochs) for r in runs], dim=1).to(device)  # [E, M, n]
    Xte_m, yte_m = Xte.expand(M, -1, -1), yte.expand(M, -1)

    epoch_recs: list[list[dict]] = [[] for _ in runs]
    step_recs: list[list[dict]] = [[] for _ in runs]
    alive = [True] * M
    diverged_at: list[dict | None] = [None] * M
    k = 0
    for e in range(epochs):
        losses = torch.empty(per_epoch, M, device=device)
        sizes = []
        for j in range(per_epoch):
            idx = orders[e, :, j * bs : (j + 1) * bs]
            logits = fwd(P, bufs, Xtr[idx])
            loss = _stacked_loss(logits, ytr[idx], multiclass)
            grads = torch.autograd.grad(loss.sum(), P)
            spec.update(P, grads, state, lr_table[:, k])
            losses[j] = loss.detach()
            sizes.append(idx.shape[1])
            k += 1
            if bar is not None:
                bar.update(1)
        with torch.no_grad():
            test_loss, test_acc = _held_out(fwd(P, bufs, Xte_m), yte_m, multiclass)
        seconds = time.perf_counter() - t0
        loss_rows = losses.T.tolist()
        tl, ta = test_loss.tolist(), test_acc.tolist()
        for m in range(M):
            if not alive[m]:
                continue
            total_loss, seen = 0.0, e * n
            recs, lrs = step_recs[m], lr_rows[m]
            for j, (value, batch) in enumerate(zip(loss_rows[m], sizes, strict=True)):
                step = e * per_epoch + j
                if is_divergent(value):  # the divergence rule of fit, applied to each model's losses
                    recs.append({"step": step, "samples": seen, "loss": value, "lr": lrs[step]})
                    diverged_at[m] = {
                        "epoch": e + 1,
                        "step": step,
                        "samples": seen,
                        "lr": lrs[step],
                        "loss": value,
                    }
                    break
                seen += batch
                recs.append({"step": step, "samples": seen, "loss": value, "lr": lrs[step]})
                total_loss += value * batch
            dead = diverged_at[m] is not None
            record = {
                "epoch": e + 1,
                "train_loss": math.nan if dead else total_loss / n,
                f"{split}_loss": math.nan if dead else tl[m],
                f"{split}_acc": math.nan if dead else ta[m],
                "lr": recs[-1]["lr"],
                "samples": recs[-1]["samples"],
                "steps": len(recs) - (1 if dead else 0),
                "seconds": seconds,
            }
            if dead:
                record["diverged"] = True
                alive[m] = False
            epoch_recs[m].append(record)
        if not any(alive):
            break
    config = {
        "optimizer": spec.label,
        "batch_size": bs,
        "scheduler": "sample schedule",
        "device": str(device),
        "method": "vectorized",
        "forward": kind,
        "eval_split": split,
    }
    return [
        _make_trace(
            epoch_recs[m],
            step_recs[m],
            diverged_at[m],
            {**config, "seed": r.seed, "lr": r.lr, "strategy": r.strategy.name},
        )
        for m, r in enumerate(runs)
    ]


def _train_sequential(
    run: _Run,
    task: Any,
    epochs: int,
    optimizer: OptimizerSpec | Callable,
    model_fn: Callable[[int], nn.Module],
    device: torch.device,
    split: str = "test",
) -> Any:
    """One run with the course's own loop: ``make_loaders`` + a torch optimizer + ``fit``, evaluated on
    ``split`` (``fit`` names its held-out numbers ``test_*``; for validation they are renamed ``val_*``)."""
    total = epochs * len(task.X_train)
    schedule = run.strategy.schedule(run.lr, total)
    model = model_fn(run.seed)
    loaders = make_loaders(
        task.X_train,
        task.y_train,
        getattr(task, f"X_{split}"),
        getattr(task, f"y_{split}"),
        batch_size=run.batch_size,
        seed=run.seed,
        n_classes=_n_classes(task),
    )
    if isinstance(optimizer, OptimizerSpec):
        opt = optimizer.build(model.parameters(), float(schedule(0)))
        label = optimizer.label
    else:
        opt = optimizer(model.parameters(), float(schedule(0)))
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValueError(
                f"the optimizer function must return a torch.optim.Optimizer, got {type(opt).__name__}"
            )
        label = type(opt).__name__
    scheduler = as_lambda_lr(opt, schedule, unit="sample")
    trace = fit(model, loaders, opt, epochs, scheduler, device=device, progress=False)
    trace.config["eval_split"] = split
    if split != "test":
        for record in trace.epochs:
            for kind in ("loss", "acc"):
                if f"test_{kind}" in record:
                    record[f"{split}_{kind}"] = record.pop(f"test_{kind}")
        # the Trace words its message from its records and eval_split: let it word it again
        if trace.stopped and trace.stopped_at:
            trace.mark_stopped(trace.stopped_at)
        elif not trace.diverged and trace.epochs:
            trace.mark_finished()
    trace.config.update(
        {
            "optimizer": label,
            "seed": run.seed,
            "lr": run.lr,
            "strategy": run.strategy.name,
            "method": "sequential",
        }
    )
    return trace


# --------------------------------------------------------------------------------------------- the result
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}"
    return str(value)


@dataclass
class SweepResult:
    """The runs of a sweep: ``rows`` (one dict of settings and metrics per run) and their ``traces``.

    * :meth:`summary` -- mean and standard deviation over seeds per (strategy, lr) (or any grouping);
    * :meth:`to_markdown` -- the summary (or the rows) as a Markdown table; Jupyter shows it rendered;
    * :meth:`best` -- the group with the best mean of a metric;
    * :meth:`curves` / :meth:`plot` -- mean curves with error bands over seeds, against samples seen.
    """

    rows: list[dict]
    traces: list[Any]
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __repr__(self) -> str:
        return (
            f"SweepResult({len(self.rows)} runs, strategies={self.settings.get('strategies')}, "
            f"lrs={self.settings.get('lrs')}, seeds={self.settings.get('seeds')}, "
            f"method={self.settings.get('method')}, {self.seconds:.2f} s)"
        )

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    @property
    def split(self) -> str:
        """The held-out split the runs were evaluated on: ``"test"`` or ``"val"`` (``evaluate_on``)."""
        return str(self.settings.get("evaluate_on", "test"))

    def filter(self, **conditions: Any) -> SweepResult:
        """The runs whose settings match, e.g. ``result.filter(strategy="cosine", lr=0.1)``."""
        keep = [i for i, r in enumerate(self.rows) if all(r.get(k) == v for k, v in conditions.items())]
        if self.rows and conditions and not set(conditions) <= set(self.rows[0]):
            raise ValueError(
                f"unknown column(s) {sorted(set(conditions) - set(self.rows[0]))}; "
                f"columns are {list(self.rows[0])}"
            )
        return SweepResult(
            [self.rows[i] for i in keep], [self.traces[i] for i in keep], dict(self.settings), self.seconds
        )

    def _by(self, by: Sequence[str] | str | None) -> tuple[str, ...]:
        """The grouping columns: ``by`` itself, or (strategy, lr) plus batch_size when it varies."""
        if by is None:
            sizes = {r.get("batch_size") for r in self.rows}
            return ("strategy", "lr") + (("batch_size",) if len(sizes) > 1 else ())
        return (by,) if isinstance(by, str) else tuple(by)

    def _groups(self, by: Sequence[str] | str | None) -> dict[tuple, list[int]]:
        by = self._by(by)
        if self.rows:
            missing = [b for b in by if b not in self.rows[0]]
            if missing:
                raise ValueError(f"cannot group by {missing}; columns are {list(self.rows[0])}")
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(self.rows):
            groups.setdefault(tuple(r[b] for b in by), []).append(i)
        return groups

    def summary(
        self, metrics: Sequence[str] | None = None, by: Sequence[str] | None = None
    ) -> list[dict]:
        """One dict per group: the grouping keys, ``n`` (runs), and per metric ``<m>_mean`` / ``<m>_std``.

        Standard deviations are over seeds (ddof=1). Yes/no metrics (``diverged``) give the fraction of
        runs. Times to target that were never reached (None) are left out of the mean and counted
        in ``<m>_reached``. ``label`` gives the most common label and ``labels`` all of them.
        """
        by = self._by(by)
        metrics = list(
            metrics
            or [
                m
                for m in (x.replace("test", self.split) for x in SUMMARY_METRICS)
                if not self.rows or m in self.rows[0]
            ]
            + [m for m in ("samples_to_acc", "samples_to_loss") if self.rows and m in self.rows[0]]
        )
        out = []
        for key, idx in self._groups(by).items():
            rows = [self.rows[i] for i in idx]
            s: dict[str, Any] = dict(zip(by, key, strict=True))
            s["n"] = len(rows)
            for m in metrics:
                if self.rows and m not in self.rows[0]:
                    raise ValueError(f"unknown metric {m!r}; columns are {list(self.rows[0])}")
                vals = [r[m] for r in rows]
                if m == "label":
                    counts = Counter(vals)
                    s["label"] = counts.most_common(1)[0][0]
                    s["labels"] = dict(counts)
                    continue
                reached = [float(v) for v in vals if v is not None]
                s[f"{m}_mean"], s[f"{m}_std"] = _mean_std(reached)
                if len(reached) < len(vals) or m.startswith("samples_to"):
                    s[f"{m}_reached"] = len(reached)
            out.append(s)
        return out

    def best(
        self, metric: str | None = None, mode: str | None = None, by: Sequence[str] | None = None
    ) -> dict:
        """The summary row with the best mean ``metric`` (lowest loss / highest accuracy by default).

        ``metric`` defaults to the final held-out loss (``final_test_loss``, or ``final_val_loss`` for a
        sweep evaluated on validation). Groups with a diverged run are skipped: a setting that sometimes
        blows up does not win.
        """
        metric = metric or f"final_{self.split}_loss"
        mode = _metrics._mode_for(metric, mode) if mode is None else mode
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        rows = [
            s
            for s in self.summary([metric, "diverged"], by=by)
            if s.get("diverged_mean", 0) == 0 and math.isfinite(s[f"{metric}_mean"])
        ]
        if not rows:
            raise ValueError("no group finished without diverging")
        sign = 1 if mode == "min" else -1
        return min(rows, key=lambda s: sign * s[f"{metric}_mean"])

    def to_markdown(
        self,
        metrics: Sequence[str] | None = None,
        *,
        summary: bool = True,
        digits: int = 4,
        by: Sequence[str] | None = None,
    ) -> str:
        """A Markdown table: the summary (``mean ± std`` per group), or with ``summary=False`` every run."""
        if not self.rows:
            return "(no runs)"
        if summary:
            by = self._by(by)
            table = self.summary(metrics, by=by)
            names = [m for m in (metrics or [k[:-5] for k in table[0] if k.endswith("_mean")])]
            head = list(by) + ["n"] + names
            lines = []
            for s in table:
                cells = [_fmt(s[b], digits) for b in by] + [str(s["n"])]
                for m in names:
                    mean, std = s.get(f"{m}_mean", math.nan), s.get(f"{m}_std", math.nan)
                    cell = f"{_fmt(mean, digits)} ± {_fmt(std, 2)}" if math.isfinite(mean) else "—"
                    if f"{m}_reached" in s:
                        cell += f" ({s[f'{m}_reached']}/{s['n']})"
                    cells.append(cell)
                lines.append(cells)
        else:
            head = list(metrics) if metrics else list(self.rows[0])
            lines = [[_fmt(r.get(h), digits) for h in head] for r in self.rows]
        out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        out += ["| " + " | ".join(c) + " |" for c in lines]
        return "\n".join(out)

    def curves(self, metric: str | None = None, by: Sequence[str] | None = None) -> dict[tuple, dict]:
        """Per group: ``{"samples", "mean", "std", "n"}`` arrays of ``metric`` over epochs, across seeds.

        ``metric`` defaults to the held-out loss (``test_loss``, or ``val_loss`` after ``evaluate_on="val"``).

        Epochs after a run diverged count as missing (NaN) and are left out of that epoch's mean.
        """
        metric = metric or f"{self.split}_loss"
        out = {}
        for key, idx in self._groups(by).items():
            n_ep = max(len(self.traces[i].epochs) for i in idx)
            vals = np.full((len(idx), n_ep), np.nan)
            samples = np.full(n_ep, np.nan)
            for row, i in enumerate(idx):
                col = _metrics.series(self.traces[i], metric)
                vals[row, : len(col)] = col
                smp = _metrics.series(self.traces[i], "samples")
                samples[: len(smp)] = np.where(np.isnan(samples[: len(smp)]), smp, samples[: len(smp)])
            count = np.sum(np.isfinite(vals), axis=0)
            with np.errstate(invalid="ignore"), _quiet():
                mean = np.nanmean(vals, axis=0)
                std = np.where(count > 1, np.nanstd(vals, axis=0, ddof=1), 0.0)
            out[key] = {"samples": samples, "mean": mean, "std": std, "n": count}
        return out

    def plot(
        self,
        metric: str | None = None,
        *,
        by: Sequence[str] | None = None,
        ax: Any = None,
        band: str = "std",
        logy: bool = False,
    ) -> Any:
        """Mean ``metric`` against samples seen per group, with a shaded band of ±1 ``band`` across seeds.

        ``band`` is ``"std"`` (spread of single runs), ``"sem"`` (uncertainty of the mean: std / sqrt(n))
        or ``"minmax"``. Returns the matplotlib axes.
        """
        import matplotlib.pyplot as plt

        metric = metric or f"{self.split}_loss"
        if band not in ("std", "sem", "minmax"):
            raise ValueError(f"band must be 'std', 'sem' or 'minmax', got {band!r}")
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4))
        by_t = self._by(by)
        groups = self._groups(by_t)
        for (key, c), idx in zip(self.curves(metric, by_t).items(), groups.values(), strict=True):
            label = ", ".join(f"{_fmt(v, 3)}" for v in key)
            line = ax.plot(c["samples"], c["mean"], marker="o", ms=3, label=label)[0]
            if band == "minmax":
                vals = np.array(
                    [
                        np.pad(
                            _metrics.series(self.traces[i], metric),
                            (0, len(c["mean"]) - len(self.traces[i].epochs)),
                            constant_values=np.nan,
                        )
                        for i in idx
                    ]
                )
                with _quiet():
                    lo, hi = np.nanmin(vals, axis=0), np.nanmax(vals, axis=0)
            else:
                width = c["std"] if band == "std" else c["std"] / np.sqrt(np.maximum(c["n"], 1))
                lo, hi = c["mean"] - width, c["mean"] + width
            ax.fill_between(c["samples"], lo, hi, color=line.get_color(), alpha=0.2)
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("training samples seen")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: mean over seeds ± {band}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, title=", ".join(by_t))
        return ax


class _quiet:
    """Silence NumPy's 'mean of empty slice' warnings inside a block."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


# --------------------------------------------------------------------------------------------- run_sweep
def _as_list(value: Any, name: str) -> list:
    if isinstance(value, str | Strategy) or not isinstance(value, Iterable):
        value = [value]
    out = list(value)
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def run_sweep(
    strategies: Any = ("constant",),
    lrs: Any = (0.05,),
    seeds: Any = (0, 1, 2),
    *,
    task: Any = None,
    epochs: int = 10,
    batch_sizes: Any = 32,
    optimizer: str | dict | OptimizerSpec | Callable = "sgd",
    model_fn: Callable[[int], nn.Module] | None = None,
    method: str = "auto",
    device: Any = "auto",
    target_acc: float | None = None,
    target_loss: float | None = None,
    max_models: int = 256,
    progress: bool | str = "auto",
    evaluate_on: str = "test",
) -> SweepResult:
    """Train every combination of ``strategies x lrs x seeds x batch_sizes`` and tabulate the results.

    Args:
        strategies: names from ``STRATEGIES`` (``"constant"``, ``"step"``, ``"cosine"``, ``"wsd"``,
            ``"one-cycle"``) or :class:`Strategy` objects.
        lrs: peak learning rates.
        seeds: each run's seed sets its initial weights (``model_fn(seed)``) and its data order (the
            order ``lrlab.data.make_loaders(seed=seed)`` gives). The data set itself is ``task``'s.
        task: a :class:`lrlab.data.Task`; default ``lrlab.data.load_task(seed=0)``.
        epochs: the budget, ``epochs x n_train`` samples for every run, whatever its batch size.
        batch_sizes: one or several.
        optimizer: ``"sgd"``, ``"momentum"``, ``"adam"``, ``"adamw"``, a dict / :class:`OptimizerSpec`
            (vectorizable), or a function ``(params, lr) -> torch.optim.Optimizer`` (sequential only).
        model_fn: ``seed -> nn.Module`` returning one logit per row (class scores ``[N, C]`` on a task of
            C > 2 classes, whose labels are integer class indices); default the course's
            ``MLP(n_features, hidden=32, seed=seed)`` (``n_outputs=C`` on such a task).
        method: ``"vectorized"`` (all runs of a batch size at once), ``"sequential"`` (one
            :func:`lrlab.training.fit` after another), or ``"auto"``: vectorized when possible.
        target_acc / target_loss: also report samples until the held-out accuracy / loss reaches them.
        max_models: at most this many models train together (memory bound on big grids).
        progress: a progress bar: True, False, or ``"auto"`` (when the sweep takes more than
            ``lrlab.training.PROGRESS_AUTO_STEPS`` optimizer steps, batched steps when vectorized).
        evaluate_on: the held-out split each epoch is measured on: ``"test"``, or ``"val"`` (the task's
            validation split, ``load_task(n_val=...)``), which names the numbers ``val_loss``,
            ``final_val_loss``, ... Choose learning rates and strategies on ``"val"``; a sealed task
            (``load_task(sealed=True)``) refuses ``"test"`` until ``task.open_test()``.

    Returns a :class:`SweepResult`; its rows hold ``strategy, lr, seed, batch_size, samples, steps``
    and the metrics of :func:`lrlab.metrics.summarize`.
    """
    strats = [get_strategy(s) for s in _as_list(strategies, "strategies")]
    names = [s.name for s in strats]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")
    lr_list = [check_real(lr, "every lr", low=0, low_open=True) for lr in _as_list(lrs, "lrs")]
    seed_list = [check_int(s, "every seed", low=0) for s in _as_list(seeds, "seeds")]
    bs_list = [check_int(b, "every batch size", low=1) for b in _as_list(batch_sizes, "batch_sizes")]
    epochs = check_int(epochs, "epochs", low=1)
    check_choice(method, "method", METHODS)
    max_models = check_int(max_models, "max_models", low=1)
    progress_enabled(progress, None)  # validates it
    check_choice(evaluate_on, "evaluate_on", ("test", "val"))
    if task is None:
        task = load_task(seed=0)
    for attr in ("X_train", "y_train", f"X_{evaluate_on}", f"y_{evaluate_on}"):
        if getattr(task, attr, None) is None:
            hint = " (load_task(n_val=200) makes one)" if evaluate_on == "val" else ""
            raise ValueError(
                f"task must have X_train, y_train, X_{evaluate_on}, y_{evaluate_on} (a lrlab.data.Task"
                f"{hint}); missing {attr}"
            )
    n_train, n_features = int(task.X_train.shape[0]), int(task.X_train.shape[1])
    if max(int(b) for b in bs_list) > n_train:
        raise ValueError(f"batch sizes must be <= the {n_train} training rows, got {bs_list}")
    spec: OptimizerSpec | Callable = (
        optimizer
        if callable(optimizer) and not isinstance(optimizer, OptimizerSpec | str | dict)
        else OptimizerSpec.coerce(optimizer)
    )
    n_classes = _n_classes(task)
    model_fn = model_fn or _default_model_fn(n_features, n_classes)
    dev = pick_device(device)

    used = method
    reason = ""
    if method in ("auto", "vectorized"):
        if not isinstance(spec, OptimizerSpec):
            reason = "a custom optimizer function cannot be batched"
        else:
            reason = _vectorizable(model_fn(0), n_features, n_classes) or ""
        if reason and method == "vectorized":
            raise ValueError(f"cannot vectorize this sweep ({reason}); use method='sequential' or 'auto'")
        used = "sequential" if reason else "vectorized"

    runs = [
        _Run(s, float(lr), int(seed), int(b))
        for s, lr, b, seed in itertools.product(strats, lr_list, bs_list, seed_list)
    ]
    # the progress switch of fit: "auto" shows a bar when the sweep takes more than
    # PROGRESS_AUTO_STEPS optimizer steps (batched steps when vectorized)
    if used == "vectorized":
        total_steps = sum(
            math.ceil(sum(1 for r in runs if r.batch_size == b) / max_models) * epochs * math.ceil(n_train / b)
            for b in bs_list
        )
    else:
        total_steps = sum(epochs * math.ceil(n_train / r.batch_size) for r in runs)
    show = progress_enabled(progress, total_steps)
    bar = None
    t0 = time.perf_counter()
    traces: list[Any] = [None] * len(runs)
    try:
        if used == "vectorized":
            if show:
                from tqdm.auto import tqdm

                bar = tqdm(total=total_steps, desc="sweep", unit="step", leave=False)
            for b in bs_list:
                idx = [i for i, r in enumerate(runs) if r.batch_size == b]
                for start in range(0, len(idx), max_models):
                    chunk = idx[start : start + max_models]
                    out = _train_vectorized(
                        [runs[i] for i in chunk], task, int(epochs), spec, model_fn, dev, bar, evaluate_on
                    )
                    for i, tr in zip(chunk, out, strict=True):
                        traces[i] = tr
        else:
            if show:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(runs), desc="sweep", unit="run", leave=False)
            for i, r in enumerate(runs):
                traces[i] = _train_sequential(r, task, int(epochs), spec, model_fn, dev, evaluate_on)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0

    rows = []
    for r, tr in zip(runs, traces, strict=True):
        row = {
            "strategy": r.strategy.name,
            "lr": r.lr,
            "seed": r.seed,
            "batch_size": r.batch_size,
            "samples": int(epochs) * n_train,
            "steps": int(epochs) * math.ceil(n_train / r.batch_size),
        }
        row.update(_metrics.summarize(tr, target_acc=target_acc, target_loss=target_loss, split=evaluate_on))
        rows.append(row)
    settings = {
        "strategies": names,
        "lrs": [float(x) for x in lr_list],
        "seeds": [int(s) for s in seed_list],
        "batch_sizes": [int(b) for b in bs_list],
        "epochs": int(epochs),
        "optimizer": spec.label if isinstance(spec, OptimizerSpec) else getattr(spec, "__name__", "custom"),
        "method": used,
        "fallback_reason": reason,
        "device": str(dev),
        "evaluate_on": evaluate_on,
    }
    return SweepResult(rows, traces, settings, seconds)
# appended to sweep.py
# --------------------------------------------------------------------------------------------- steps to a target
@dataclass(frozen=True)
class StepsToTarget:
    """Optimizer steps until the training loss first reaches ``target_loss``, per learning rate and seed.

    ``steps[i, j]`` belongs to ``lrs[i]`` and ``seeds[j]``; ``inf`` where that run did not reach the target
    within its budget (or diverged). :meth:`best` picks the learning rate with the fewest steps (the median over
    seeds), as McCandlish et al. (2018) tune the LR per batch size before they count steps.
    """

    batch_size: int
    lrs: tuple[float, ...]
    seeds: tuple[int, ...]
    target_loss: float
    steps: np.ndarray
    seconds: float

    def median_steps(self) -> np.ndarray:
        """The median over seeds of each learning rate's steps (inf when any half of the seeds missed)."""
        return np.median(self.steps, axis=1)

    def best(self) -> tuple[float, np.ndarray]:
        """``(lr, steps per seed)`` of the learning rate whose median is lowest; raises when none reached it."""
        med = self.median_steps()
        if not np.isfinite(med).any():
            raise ValueError(
                f"no learning rate reached the training loss {self.target_loss:g} at batch size {self.batch_size} "
                f"within the budget: raise max_epochs, widen lrs, or choose an easier target"
            )
        i = int(np.argmin(med))
        return self.lrs[i], self.steps[i].copy()

    def __repr__(self) -> str:
        med = ", ".join(f"{lr:g}: {m:g}" for lr, m in zip(self.lrs, self.median_steps(), strict=True))
        return f"StepsToTarget(batch {self.batch_size}, loss <= {self.target_loss:g}; median steps per lr {{{med}}})"


def steps_to_target(
    task: Any,
    batch_size: int,
    lrs: Any,
    seeds: Any = (0, 1, 2),
    *,
    target_loss: float,
    optimizer: str | dict | OptimizerSpec = "sgd",
    max_epochs: int = 50,
    model_fn: Callable[[int], nn.Module] | None = None,
    device: Any = "auto",
    eval_rows: int = 4096,
) -> StepsToTarget:
    """Train one model per ``(lr, seed)`` at a constant LR, all at once (the vectorized sweep's machinery),
    and count the optimizer steps until the loss on the **whole training set**, measured after every step,
    first falls to ``target_loss``: the ``S(B)`` of :func:`lrlab.scaling.fit_critical_batch`.

    The data order of seed ``s`` is that of ``make_loaders(seed=s)``; a run stops counting at the target,
    on a NaN/inf loss (it never reaches it), or after ``max_epochs`` epochs. Training stops as soon as one
    learning rate has brought every seed to the target: no slower LR can then have the lowest median. With
    more than ``eval_rows`` training rows, the training loss is measured on a fixed random sample of that many
    rows (drawn with the first seed), the same sample after every step.
    """
    from torch.func import stack_module_state

    batch_size = check_int(batch_size, "batch_size", low=1)
    lr_list = [check_real(lr, "every lr", low=0, low_open=True) for lr in _as_list(lrs, "lrs")]
    seed_list = [check_int(s, "every seed", low=0) for s in _as_list(seeds, "seeds")]
    target_loss = check_real(target_loss, "target_loss", low=0, low_open=True)
    max_epochs = check_int(max_epochs, "max_epochs", low=1)
    eval_rows = check_int(eval_rows, "eval_rows", low=1)
    spec = OptimizerSpec.coerce(optimizer)
    n_train, n_features = int(task.X_train.shape[0]), int(task.X_train.shape[1])
    if batch_size > n_train:
        raise ValueError(f"batch_size must be <= the {n_train} training rows, got {batch_size}")
    n_classes = _n_classes(task)
    model_fn = model_fn or _default_model_fn(n_features, n_classes)
    reason = _vectorizable(model_fn(0), n_features, n_classes)
    if reason:
        raise ValueError(f"steps_to_target trains the models stacked and cannot take this model: {reason}")
    dev = pick_device(device)
    multiclass = n_classes > 2
    Xtr = task.X_train.float().to(dev)
    ytr = (task.y_train.long() if multiclass else task.y_train.float()).to(dev)
    pairs = [(lr, s) for lr in lr_list for s in seed_list]
    M = len(pairs)
    models = [model_fn(s) for _, s in pairs]
    params, buffers = stack_module_state(models)
    names = list(params)
    P = [params[k].detach().to(dev).clone().requires_grad_(True) for k in names]
    bufs = {k: v.to(dev) for k, v in buffers.items()}
    fwd, _ = _batched_forward(models, names, P, bufs, n_features, dev)
    state = spec.init_state(P)
    lr_vec = torch.tensor([lr for lr, _ in pairs], dtype=torch.float32, device=dev)
    orders = torch.stack([epoch_order(n_train, s, max_epochs) for _, s in pairs], dim=1).to(dev)  # [E, M, n]
    rows = torch.arange(n_train)
    if n_train > eval_rows:
        rows = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed_list[0]))[:eval_rows]
    rows = rows.to(dev)
    X_all, y_all = Xtr[rows].expand(M, -1, -1), ytr[rows].expand(M, -1)
    steps = torch.full((M,), math.inf, dtype=torch.float64)
    done_lr = torch.zeros(len(lr_list), dtype=torch.bool)
    open_ = torch.ones(M, dtype=torch.bool)
    t0 = time.perf_counter()
    step = 0
    per_epoch = math.ceil(n_train / batch_size)
    for e in range(max_epochs):
        for j in range(per_epoch):
            idx = orders[e, :, j * batch_size : (j + 1) * batch_size]
            loss = _stacked_loss(fwd(P, bufs, Xtr[idx]), ytr[idx], multiclass)
            grads = torch.autograd.grad(loss.sum(), P)
            spec.update(P, grads, state, lr_vec)
            step += 1
            with torch.no_grad():
                full = _stacked_loss(fwd(P, bufs, X_all), y_all, multiclass)
            full = full.cpu()
            reached = open_ & (full <= target_loss)
            steps[reached] = step
            open_ &= ~reached & torch.isfinite(full)
            done_lr = torch.isfinite(steps).view(len(lr_list), len(seed_list)).all(dim=1)
            if not bool(open_.any()) or bool(done_lr.any()):
                break
        if not bool(open_.any()) or bool(done_lr.any()):
            break
    grid = steps.numpy().reshape(len(lr_list), len(seed_list))
    return StepsToTarget(batch_size, tuple(lr_list), tuple(seed_list), float(target_loss), grid,
                         time.perf_counter() - t0)
