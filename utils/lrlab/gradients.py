"""Gradient statistics: what the gradient looks like while a model trains.

Three questions, three tools:

1. **How big are the gradients of each layer (or block of a layer), and how much do they change from one
   mini-batch to the next?**  :class:`GradientTracker` watches training and records, every ``k`` steps,
   the mean absolute gradient, the gradient norm and the variance of every gradient element *across the
   mini-batches of an epoch*. The variance is kept with Welford's running update, so no gradient is ever
   stored: memory stays at two copies of the parameters whatever the epoch length.

2. **How noisy is one mini-batch gradient?**  :func:`per_sample_grads` gives the gradient of every sample on
   its own, with ``torch.func`` (``vmap(grad(...))``) or, for stacks of ``nn.Linear`` layers, from one
   batched backward pass (outer products of each layer's input and output gradient). From those,
   :func:`gradient_noise` estimates the mean gradient ``G``, the covariance trace ``tr(Σ)``, a per-parameter
   signal-to-noise ratio and the *gradient noise scale* ``B_simple = tr(Σ) / |G|²`` (McCandlish et al. 2018,
   "An Empirical Model of Large-Batch Training").

3. **Can I get the noise scale without per-sample gradients?**  Yes: :func:`gradient_noise_scale` needs only
   each sample's squared gradient norm, which a stack of ``nn.Linear`` layers gives from one ordinary backward
   pass; or, for any model, the squared norms of mini-batch gradients at two batch sizes:
   :func:`two_batch_noise_scale` and :func:`estimate_noise_scale_two_batch`.

Reading guide: the gradient of a mini-batch of ``B`` samples is ``G_B = (1/B) Σ_i g_i``, the mean of the
per-sample gradients ``g_i``. Its expectation is ``G`` and its covariance is ``Σ / B``, so

    E |G_B|²  =  |G|²  +  tr(Σ) / B.

When ``B`` is much smaller than ``B_simple`` the noise term dominates: a step mostly follows noise, and a
smaller learning rate (or a larger batch) is needed. Early in training the opposite holds: for the course's MLP
``B_simple`` is about 8 at initialization and grows to about a thousand by the end of module 05's run, so the
first gradients are mostly signal. What a warmup protects against early is not noise but large steps where the
curvature is highest, and (for Adam) a second-moment estimate built from a handful of gradients; module 05
measures all three.

imports: args, training (GradientTracker is a training callback).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lrlab.args import check_int
from lrlab.training import Callback, classification_loss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Flatten a list of tensors into one vector in a single call (what DDP uses to bucket gradients);
# ``torch.cat`` of flattened views is the same thing with more Python overhead.
_flatten_many: Callable[[list[torch.Tensor]], torch.Tensor] = getattr(
    torch._C._nn, "flatten_dense_tensors", lambda ts: torch.cat([t.reshape(-1) for t in ts])
)


def _flat_copy(tensors: list[torch.Tensor]) -> torch.Tensor:
    """A NEW 1-D tensor holding all ``tensors`` end to end (never a view of one of them)."""
    if len(tensors) == 1:  # flattening a single tensor may return a view: the caller would write into it
        return tensors[0].reshape(-1).clone()
    return _flatten_many(tensors)

__all__ = [
    "GradientTracker",
    "StepLog",
    "GradientNoise",
    "NoiseScale",
    "SampleNorms",
    "TwoBatchEstimate",
    "per_sample_grads",
    "per_sample_grads_loop",
    "flatten_grads",
    "covariance_trace",
    "noise_scale",
    "signal_to_noise",
    "gradient_noise",
    "gradient_noise_scale",
    "sample_norms",
    "batch_gradient_sq_norms",
    "two_batch_noise_scale",
    "estimate_noise_scale_two_batch",
    "plot_gradient_sizes",
    "plot_gradient_heatmap",
]


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _check_module(model: Any, what: str = "model") -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{what} must be a torch.nn.Module, got {type(model).__name__}")


def _default_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The course's default loss, :func:`lrlab.training.classification_loss` (mean over the batch): binary
    cross-entropy on logits (a model that returns ``[N]`` and one that returns ``[N, 1]`` give the same loss), or
    cross-entropy for class scores ``[N, C]`` against integer class indices."""
    return classification_loss(output, target)


def _check_batch(X: Any, y: Any) -> None:
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(
            f"X and y must be torch tensors, got {type(X).__name__} and {type(y).__name__}"
        )
    if X.ndim == 0 or y.ndim == 0:
        raise ValueError("X and y need a batch dimension (dim 0), got a 0-d tensor")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same number of samples, got {X.shape[0]} and {y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError("X and y must hold at least one sample, got 0")


def _prepare(
    model: Any, X: Any, y: Any, loss_fn: LossFn | None
) -> tuple[LossFn, dict[str, nn.Parameter], torch.Tensor, torch.Tensor]:
    """The checks and set-up every per-sample tool shares: the loss (default :func:`_default_loss`), the
    trainable parameters, and ``X``, ``y`` on their device."""
    _check_module(model)
    _check_batch(X, y)
    loss_fn = _default_loss if loss_fn is None else loss_fn
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable(output, target) -> loss, got {type(loss_fn).__name__}")
    params = _trainable(model)
    device = next(iter(params.values())).device
    return loss_fn, params, X.to(device), y.to(device)


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("the model has no parameter with requires_grad=True, so there is no gradient")
    return params


# ----------------------------------------------------------------------------------------------------------
# 1. the tracker
# ----------------------------------------------------------------------------------------------------------
@dataclass
class StepLog:
    """Per-step gradient sizes recorded by a :class:`GradientTracker` (for the heatmap).

    ``norm[s, k]`` and ``mean_abs[s, k]`` belong to recorded step ``steps[s]`` and tracked name ``names[k]``;
    ``epoch[s]`` is the 1-based epoch the step belongs to.
    """

    names: list[str]
    steps: np.ndarray
    epoch: np.ndarray
    norm: np.ndarray
    mean_abs: np.ndarray


class GradientTracker(Callback):
    """Record gradient sizes and their variance across mini-batches, per layer and per block.

    Parameters
    ----------
    model:
        the model being trained.
    every:
        record every ``every``-th optimizer step (steps ``0, every, 2*every, ...``); 1 records all.
    blocks:
        named contiguous row ranges (slices along dim 0) of a parameter, e.g. the rows of a projection::

            {"[0:96]": ("proj.weight", slice(0, 96)), "[96:192]": ("proj.weight", slice(96, 192))}

    layers:
        ``"all"`` (every parameter that requires a gradient), a list of parameter names, or ``None`` / ``[]``
        to track the blocks only. A "layer" here is one parameter tensor, e.g. ``"hidden.weight"``.
    keep_steps:
        also keep the per-step norm and mean |g| of every tracked name (two numbers per name and step) for
        :func:`plot_gradient_heatmap` and :meth:`step_log`.

    What is recorded, for each tracked name (layer or block), over the recorded steps of one epoch:

    * ``mean_abs``: the mean over elements of ``|g|``, averaged over the steps;
    * ``norm``: the L2 norm ``|g|`` of the gradient, averaged over the steps (a *mean of norms*, not the norm
      of the mean gradient, which is smaller because the noise of different batches cancels);
    * ``var``: for every gradient element, the unbiased variance (divide by ``n - 1``) of its values across
      the ``n`` recorded steps (the *step* axis, not the element axis), then averaged over the elements;
      NaN when fewer than 2 steps were recorded;
    * ``n``: how many steps were recorded.

    Use it as a callback of :func:`lrlab.training.fit` (each epoch's dict lands in ``record["grad"]``) or
    by hand in your own loop: call ``tracker.after_backward(model, step)`` after ``loss.backward()`` and
    before ``optimizer.step()``, and ``tracker.end_epoch()`` at the end of each epoch.

    How it stays cheap: the gradients of all tracked parameters are copied into one flat vector per step;
    the per-name sums of ``g²`` and ``|g|`` are one matrix product with a 0/1 membership matrix, and
    Welford's update (``delta = g - mean; M2 += (n-1)/n * delta²; mean += delta/n``, the same as
    ``M2 += delta * (g - new mean)``) is three vector operations. Nothing is copied to the CPU until
    :meth:`end_epoch`, so on a GPU the tracker never makes training wait.
    Memory: three copies of the tracked parameters, plus two numbers per name and step.
    """

    #: above this many entries (parameters x names) the membership matrix is replaced by per-name reductions
    DENSE_LIMIT = 1 << 24

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = 1,
        blocks: Mapping[str, tuple[str, slice]] | None = None,
        layers: str | Sequence[str] | None = "all",
        keep_steps: bool = True,
    ) -> None:
        _check_module(model)
        self.every = check_int(every, "every", low=1)
        self.keep_steps = bool(keep_steps)
        named = dict(model.named_parameters())

        if layers is None:
            layer_names: list[str] = []
        elif isinstance(layers, str):
            if layers != "all":
                raise ValueError(
                    f"layers must be 'all', None, or a list of parameter names, got the string {layers!r}; "
                    f"write layers=[{layers!r}] for a single parameter"
                )
            layer_names = [n for n, p in named.items() if p.requires_grad]
        else:
            layer_names = list(layers)
            for name in layer_names:
                if not isinstance(name, str) or name not in named:
                    raise ValueError(
                        f"layers: {name!r} is not a parameter of the model; allowed: {list(named)}"
                    )
            if len(set(layer_names)) != len(layer_names):
                raise ValueError(f"layers lists a parameter twice: {layer_names}")

        block_specs: list[tuple[str, str, slice]] = []
        for bname, spec in dict(blocks or {}).items():
            if not isinstance(bname, str):
                raise ValueError(f"block names must be strings, got {bname!r}")
            if bname in layer_names:
                raise ValueError(f"block name {bname!r} is also a tracked layer name; pick another name")
            if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], slice)):
                raise ValueError(
                    f"block {bname!r} must be (parameter_name, slice), e.g. ('proj.weight', slice(0, 96)), "
                    f"got {spec!r}"
                )
            pname, sl = spec
            if pname not in named:
                raise ValueError(
                    f"block {bname!r}: {pname!r} is not a parameter of the model; allowed: {list(named)}"
                )
            rows = named[pname].shape[0] if named[pname].ndim else 0
            ok = (
                sl.step in (None, 1)
                and (sl.start is None or 0 <= sl.start)
                and (sl.stop is None or sl.stop <= rows)
                and len(range(*sl.indices(rows))) > 0
            )
            if not ok:
                raise ValueError(
                    f"block {bname!r}: {sl} must be a non-empty slice(start, stop) of rows within 0..{rows} "
                    f"of {pname!r} (dim 0), with step 1 and no negative indices"
                )
            block_specs.append((bname, pname, sl))

        if not layer_names and not block_specs:
            raise ValueError("nothing to track: give layers='all', a list of parameter names, or blocks")

        self.layers = layer_names
        self.blocks = {b: (p, s) for b, p, s in block_specs}
        self.names: list[str] = layer_names + [b for b, _, _ in block_specs]
        # the parameters that need running (Welford) state: tracked layers and the parents of blocks,
        # laid end to end in one flat vector; every tracked name is a contiguous range of it
        self._pnames: list[str] = list(dict.fromkeys(layer_names + [p for _, p, _ in block_specs]))
        offset, where = 0, {}
        for n in self._pnames:
            where[n] = offset
            offset += named[n].numel()
        self._size = offset
        ranges = [(where[n], where[n] + named[n].numel()) for n in layer_names]
        for _, pname, sl in block_specs:
            p = named[pname]
            row = p[0].numel() if p.ndim else 1
            start, stop, _ = sl.indices(p.shape[0])
            ranges.append((where[pname] + start * row, where[pname] + stop * row))
        self._ranges = ranges
        self._numel_list = [b - a for a, b in ranges]
        self._numel = np.asarray(self._numel_list, dtype=np.float64)
        self._membership: torch.Tensor | None = None  # [size, K] 0/1: which name each element belongs to
        self._powers: torch.Tensor | None = None
        self.history: list[dict[str, dict[str, float | int]]] = []
        self._bind(model)
        self._logged: list[tuple[list[int], torch.Tensor]] = []  # (steps, [n, 2, K] rows) of finished epochs
        self._reset_epoch()

    # -- state -----------------------------------------------------------------------------------------
    def _bind(self, model: nn.Module) -> None:
        named = dict(model.named_parameters())
        bad = [n for n in self._pnames if n not in named]
        if bad:
            raise ValueError(f"the model has no parameter(s) {bad}; the tracker was built for another model")
        sizes = [named[n].numel() for n in self._pnames]
        if sum(sizes) != self._size:
            raise ValueError("the model's tracked parameters changed size since the tracker was built")
        self._model = model
        self._params = [named[n] for n in self._pnames]

    def _reset_epoch(self) -> None:
        self._n = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._rows: list[torch.Tensor] = []
        self._steps: list[int] = []

    def reset(self) -> None:
        """Forget everything: the running epoch, the history and the step log."""
        self.history.clear()
        self._logged.clear()
        self._reset_epoch()

    def __repr__(self) -> str:
        return (
            f"GradientTracker(every={self.every}, names={self.names}, epochs={len(self.history)}, "
            f"steps this epoch={self._n})"
        )

    def _dense(self, like: torch.Tensor) -> bool:
        """Use the 0/1 membership matrix (cached on ``like``'s device and dtype) unless it would be huge."""
        if self._size * len(self._ranges) > self.DENSE_LIMIT:
            return False
        S = self._membership
        if S is None or S.dtype is not like.dtype or S.is_cuda is not like.is_cuda or (
            like.is_cuda and S.device != like.device
        ):
            member = np.zeros((self._size, len(self._ranges)), dtype=np.float32)
            for k, (a, b) in enumerate(self._ranges):
                member[a:b, k] = 1.0
            self._membership = torch.from_numpy(member).to(device=like.device, dtype=like.dtype)
            self._powers = torch.tensor([[2.0], [1.0]], dtype=like.dtype, device=like.device)
        return True

    def _sums(self, flat: torch.Tensor) -> torch.Tensor:
        """``[2, K]``: per tracked name, the sum of ``g²`` (row 0) and of ``|g|`` (row 1)."""
        if self._dense(flat):
            return flat.abs().pow(self._powers) @ self._membership  # rows |g|² and |g|, summed per name
        views = [flat[a:b] for a, b in self._ranges]  # one fused reduction over all names at once
        squares = torch.stack(torch._foreach_norm(views, 2)).square()
        return torch.stack((squares, torch.stack(torch._foreach_norm(views, 1))))

    def _range_sums(self, vector: torch.Tensor) -> torch.Tensor:
        """``[K]``: the sum of ``vector`` over each tracked name's range."""
        if self._dense(vector):
            return vector @ self._membership
        return torch.stack([vector[a:b].sum() for a, b in self._ranges])

    # -- callback hooks ---------------------------------------------------------------------------------
    def on_train_begin(self, model: nn.Module, trace: Any = None) -> None:
        """Bind to ``model`` and drop a half-finished epoch; the history is kept (a run may continue)."""
        _check_module(model)
        self._bind(model)
        self._reset_epoch()

    def on_epoch_end(self, epoch: int, record: dict, trace: Any = None) -> None:
        """Close the epoch and store its statistics in ``record["grad"]``."""
        record["grad"] = self.end_epoch()

    def after_backward(self, model: nn.Module, step: int) -> None:
        """Update the running statistics with the gradients in ``p.grad`` (call before ``optimizer.step()``).

        ``step`` is the 0-based global step; only every ``every``-th step is recorded. A tracked parameter
        without a gradient this step (``p.grad is None``) counts as a zero gradient.
        """
        if type(step) is not int or step < 0:  # the common case costs one type check per step
            step = check_int(step, "step", low=0, hint="the 0-based global step")
        if step % self.every:
            return
        if model is not self._model:
            _check_module(model)
            self._bind(model)
        # a fresh copy of this step's gradient, all tracked parameters end to end
        flat = _flat_copy([p.grad if p.grad is not None else torch.zeros_like(p) for p in self._params])
        if flat.requires_grad:  # gradients made with create_graph=True: keep the statistics out of the graph
            flat = flat.detach()
        self._rows.append(self._sums(flat))
        self._steps.append(int(step))
        self._n += 1
        n = self._n
        if n == 1:
            self._mean, self._m2 = flat, torch.zeros_like(flat)
            return
        # Welford: delta = g - mean; M2 += delta * (g - new mean) = (n-1)/n * delta²; mean += delta / n
        delta = flat.sub_(self._mean)
        self._m2.addcmul_(delta, delta, value=(n - 1) / n)
        self._mean.add_(delta, alpha=1.0 / n)

    def end_epoch(self) -> dict[str, dict[str, float | int]]:
        """Summarize the epoch, reset the running state, append to :attr:`history` and return the summary.

        Returns ``{name: {"mean_abs": float, "norm": float, "var": float, "n": int}}`` (see the class doc).
        """
        n = self._n
        result: dict[str, dict[str, float | int]] = {}
        if n == 0:
            for name in self.names:
                result[name] = {"mean_abs": math.nan, "norm": math.nan, "var": math.nan, "n": 0}
        else:
            assert self._m2 is not None
            with torch.no_grad():
                rows = torch.stack(self._rows)  # [n, 2, K]: per step, sum of g² and sum of |g| per name
                stats = torch.stack((rows[:, 0].sqrt().mean(0), rows[:, 1].mean(0), self._range_sums(self._m2)))
                # the only device -> host copy of the epoch
                norms, abs_sums, m2 = stats.double().tolist()
            for k, name in enumerate(self.names):
                numel = self._numel_list[k]
                result[name] = {"mean_abs": abs_sums[k] / numel, "norm": norms[k],
                                "var": m2[k] / (numel * (n - 1)) if n > 1 else math.nan, "n": n}
            if self.keep_steps:
                self._logged.append((list(self._steps), rows))
        self.history.append(result)
        self._reset_epoch()
        return result

    # -- reading the record -----------------------------------------------------------------------------
    def step_log(self) -> StepLog:
        """Per-step gradient norms and mean |g| of every tracked name, over all finished epochs."""
        if not self.keep_steps:
            raise ValueError("this tracker was built with keep_steps=False; build it with keep_steps=True")
        K = len(self.names)
        if not self._logged:
            empty, none = np.zeros((0, K)), np.zeros(0, np.int64)
            return StepLog(list(self.names), none, none.copy(), empty, empty.copy())
        steps = np.concatenate([np.asarray(s, dtype=np.int64) for s, _ in self._logged])
        rows = torch.cat([r for _, r in self._logged]).double().cpu().numpy()
        epoch = np.concatenate([np.full(len(s), e + 1) for e, (s, _) in enumerate(self._logged)])
        return StepLog(list(self.names), steps, epoch, np.sqrt(rows[:, 0, :]), rows[:, 1, :] / self._numel)

    def series(self, name: str, key: str = "mean_abs") -> np.ndarray:
        """One statistic of one tracked name over the finished epochs, e.g. ``series("[0:96]", "var")``."""
        if name not in self.names:
            raise ValueError(f"{name!r} is not tracked; tracked names: {self.names}")
        if key not in ("mean_abs", "norm", "var", "n"):
            raise ValueError(f"key must be one of 'mean_abs', 'norm', 'var', 'n', got {key!r}")
        return np.asarray([h[name][key] for h in self.history], dtype=float)


# ----------------------------------------------------------------------------------------------------------
# 2. per-sample gradients
# ----------------------------------------------------------------------------------------------------------
def per_sample_grads(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: LossFn | None = None,
    chunk_size: int | None = None,
    method: str = "vmap",
) -> dict[str, torch.Tensor]:
    """The gradient of every sample's own loss: ``{name: tensor [B, *param.shape]}``.

    ``loss_fn(output, target)`` is the batch loss as used in training, the *mean* over the batch
    (default: binary cross-entropy on logits). Sample ``i``'s gradient is the gradient of the loss of that
    sample alone, ``g_i = ∇ loss_fn(model(X[i:i+1]), y[i:i+1])``.

    The scaling to remember: the mini-batch gradient is the mean of the per-sample gradients,
    ``∇ mean_i ℓ_i = (1/B) Σ_i g_i``. So "sample i's part" of the batch-mean gradient is ``g_i / B``,
    ``B`` times smaller than ``g_i``; mixing the two up makes every variance ``B²`` too small.

    ``method="vmap"``: ``torch.func.vmap(grad(f))`` runs ``f`` (one sample through the model, its loss)
    for all samples at once; works for any model without batch-coupling layers (no BatchNorm in train mode).
    ``chunk_size`` bounds the memory of the vectorized pass (``chunk_size`` samples at a time).

    ``method="linear"``: one ordinary forward and backward pass of the summed loss, from which each
    ``nn.Linear``'s per-sample gradients are outer products: ``dW_i = δ_i ⊗ a_i`` and ``db_i = δ_i``, where
    ``a_i`` is the layer's input and ``δ_i`` the gradient of sample ``i``'s loss with respect to the layer's
    output. Only for models whose trainable parameters all belong to ``nn.Linear`` layers, and it assumes
    the batch loss is the mean of the per-sample losses (true for PyTorch's losses with reduction='mean').
    On the course MLP it is about 4x faster than ``vmap``, whose batched backward multiplies many tiny
    matrices. ``method="auto"`` picks ``"linear"`` when the model allows it and ``"vmap"`` otherwise.
    """
    loss_fn, params, X, y = _prepare(model, X, y, loss_fn)
    if chunk_size is not None:
        chunk_size = check_int(chunk_size, "chunk_size", low=1)
    if method == "auto":
        method = "linear" if _all_linear(model, params) else "vmap"
    if method == "vmap":
        return _per_sample_vmap(model, params, X, y, loss_fn, chunk_size)
    if method == "linear":
        if chunk_size is None or chunk_size >= X.shape[0]:
            return _per_sample_linear(model, params, X, y, loss_fn)
        parts = [_per_sample_linear(model, params, X[i : i + chunk_size], y[i : i + chunk_size], loss_fn)
                 for i in range(0, X.shape[0], chunk_size)]
        return {k: torch.cat([p[k] for p in parts]) for k in params}
    raise ValueError(f"method must be 'vmap', 'linear' or 'auto', got {method!r}")


def _all_linear(model: nn.Module, params: Mapping[str, nn.Parameter]) -> bool:
    owned = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    return all(id(p) in owned for p in params.values())


def _per_sample_vmap(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    chunk_size: int | None,
) -> dict[str, torch.Tensor]:
    from torch.func import functional_call, grad, vmap

    detached = {k: v.detach() for k, v in params.items()}
    frozen = {k: v.detach() for k, v in model.named_parameters() if k not in params}
    frozen.update(dict(model.named_buffers()))

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # one sample, seen by the model as a batch of one: the loss of a batch of one is that sample's loss
        out = functional_call(model, (p, frozen), (x.unsqueeze(0),))
        return loss_fn(out, t.unsqueeze(0)).sum()

    fn = vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)
    return fn(detached, X, y)


class _NotLinear(ValueError):
    """A trainable parameter outside ``nn.Linear``: the outer-product shortcuts do not apply."""


def _linear_pass(
    model: nn.Module, params: dict[str, nn.Parameter], X: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
) -> list[tuple[str, nn.Linear, torch.Tensor, torch.Tensor]]:
    """One forward and one backward pass of the summed loss, recording every ``nn.Linear`` call:
    ``(module name, module, input a, δ = d(Σ_i loss_i)/d output)``; δ's row ``i`` is sample ``i``'s own.

    Raises :class:`_NotLinear` (a ``ValueError``) when a trainable parameter does not belong to an ``nn.Linear``.
    """
    linears: dict[nn.Linear, str] = {}
    owned: set[int] = set()
    for mname, module in model.named_modules():
        if isinstance(module, nn.Linear):
            linears[module] = mname
            owned.update(id(p) for p in module.parameters(recurse=False))
    unsupported = [n for n, p in params.items() if id(p) not in owned]
    if unsupported:
        raise _NotLinear(f"handles parameters of nn.Linear layers only; {unsupported} are not")
    calls: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        calls.append((module, inputs[0], output))  # type: ignore[arg-type]

    handles = [m.register_forward_hook(hook) for m in linears]
    try:
        with torch.enable_grad():
            out = model(X)
            # batch mean * B = sum of per-sample losses, whose output-gradient row i is sample i's own
            loss = loss_fn(out, y) * X.shape[0]
            deltas = torch.autograd.grad(loss, [o for _, _, o in calls], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    return [(linears[m], m, a.detach(), d) for (m, a, _), d in zip(calls, deltas, strict=True) if d is not None]


def _per_sample_linear(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
) -> dict[str, torch.Tensor]:
    try:
        calls = _linear_pass(model, params, X, y, loss_fn)
    except _NotLinear as why:
        raise ValueError(f"method='linear' {why}; use method='vmap'") from None
    B = X.shape[0]
    result: dict[str, torch.Tensor] = {}
    for prefix, module, a, d in calls:
        a2 = a.reshape(B, -1, a.shape[-1])  # [B, T, in]  (T = 1 for plain [B, in] inputs)
        d2 = d.reshape(B, -1, d.shape[-1])  # [B, T, out]
        pieces = {"weight": torch.einsum("bto,bti->boi", d2, a2)}
        if module.bias is not None:
            pieces["bias"] = d2.sum(1)
        for pname, value in pieces.items():
            key = f"{prefix}.{pname}" if prefix else pname
            if key in params:
                result[key] = result[key] + value if key in result else value
    for key, p in params.items():  # a layer that was never called gets zero gradients
        if key not in result:
            result[key] = torch.zeros((B, *p.shape), dtype=p.dtype, device=p.device)
    return {k: result[k] for k in params}


def per_sample_grads_loop(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss_fn: LossFn | None = None
) -> dict[str, torch.Tensor]:
    """Per-sample gradients the slow, obvious way: one backward pass per sample (the reference).

    Leaves the model's ``.grad`` fields as they were.
    """
    loss_fn, params, X, y = _prepare(model, X, y, loss_fn)
    rows: dict[str, list[torch.Tensor]] = {k: [] for k in params}
    names, tensors = list(params), list(params.values())
    with torch.enable_grad():
        for i in range(X.shape[0]):
            loss = loss_fn(model(X[i : i + 1]), y[i : i + 1]).sum()
            for k, g in zip(names, torch.autograd.grad(loss, tensors, allow_unused=True), strict=True):
                rows[k].append(torch.zeros_like(params[k]) if g is None else g)
    return {k: torch.stack(v) for k, v in rows.items()}


def flatten_grads(grads: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-sample gradients as one matrix ``[B, P]``: row ``i`` holds all of sample ``i``'s gradient."""
    tensors = list(grads.values()) if isinstance(grads, Mapping) else list(grads)
    if not tensors or not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in tensors):
        raise ValueError("grads must be a non-empty dict or list of tensors shaped [B, ...]")
    B = tensors[0].shape[0]
    if any(t.shape[0] != B for t in tensors):
        sizes = [t.shape[0] for t in tensors]
        raise ValueError(f"all per-sample gradients need the same batch size, got {sizes}")
    return torch.cat([t.reshape(B, -1) for t in tensors], dim=1)


def _as_matrix(per_sample: Any, what: str) -> torch.Tensor:
    if isinstance(per_sample, Mapping):
        per_sample = flatten_grads(per_sample)
    if not isinstance(per_sample, torch.Tensor) or per_sample.ndim != 2:
        raise ValueError(f"{what} needs per-sample gradients as a [B, P] tensor (or a dict), got "
                         f"{getattr(per_sample, 'shape', type(per_sample).__name__)}")
    if per_sample.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 samples to estimate a variance, got {per_sample.shape[0]}")
    return per_sample.double()


def covariance_trace(per_sample: torch.Tensor | Mapping[str, torch.Tensor]) -> float:
    """``tr(Σ)``: the sum over parameters of the unbiased variance of the per-sample gradients.

    ``per_sample`` is ``[B, P]`` (rows = samples) or a dict from :func:`per_sample_grads`. The variance is
    taken over the samples (dim 0) with ``n - 1`` in the denominator. It never needs the ``P x P`` matrix Σ:
    its trace is the sum of its diagonal, the per-parameter variances.
    """
    G = _as_matrix(per_sample, "covariance_trace")
    return float(G.var(dim=0, correction=1).sum())


def noise_scale(per_sample: torch.Tensor | Mapping[str, torch.Tensor]) -> float:
    """The simple gradient noise scale ``B_simple = tr(Σ) / |G|²`` from per-sample gradients.

    ``|G|²`` is the squared norm of the *mean* gradient (norm of the mean, not the mean of the norms). The
    plug-in ``|mean g|²`` over-estimates it by ``tr(Σ)/B`` (the noise left in a mean of ``B`` samples), so it
    is corrected: ``|G|² ≈ |mean g|² - tr(Σ)/B``. When that is not positive the noise swamps the signal and
    the result is ``inf``.
    """
    G = _as_matrix(per_sample, "noise_scale")
    B = G.shape[0]
    trace = float(G.var(dim=0, correction=1).sum())
    g2 = float(G.mean(dim=0).pow(2).sum()) - trace / B
    return trace / g2 if g2 > 0 else math.inf


def signal_to_noise(per_sample: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-parameter signal-to-noise ratio ``|mean_i g_i| / std_i(g_i)`` over the samples (``[P]``).

    Below 1 a parameter's gradient is mostly noise: its sign flips from sample to sample. Parameters
    whose gradient never varies get ``inf`` (or ``nan`` when it is always 0).
    """
    G = _as_matrix(per_sample, "signal_to_noise")
    return G.mean(dim=0).abs() / G.std(dim=0, correction=1)


@dataclass
class GradientNoise:
    """Gradient statistics over ``n`` samples, from :func:`gradient_noise`.

    ``mean[name]`` is the mean per-sample gradient and ``var[name]`` the per-element variance of the
    per-sample gradients; ``trace`` = ``tr(Σ)`` = the sum of all variances; ``grad_sq_norm`` = ``|mean|²``
    (plug-in) and ``grad_sq_norm_unbiased`` = ``|mean|² - tr(Σ)/n``, the estimate of ``|G|²`` (equal to the
    plug-in when ``exact_mean``: the samples were the whole data set, so their mean is ``G``);
    ``b_simple`` = ``trace / grad_sq_norm_unbiased`` (``inf`` when that is not positive).
    """

    n: int
    mean: dict[str, torch.Tensor]
    var: dict[str, torch.Tensor]
    exact_mean: bool = False
    trace: float = field(init=False)
    grad_sq_norm: float = field(init=False)
    grad_sq_norm_unbiased: float = field(init=False)
    b_simple: float = field(init=False)

    def __post_init__(self) -> None:
        self.trace = float(sum(v.sum() for v in self.var.values()))
        self.grad_sq_norm = float(sum(m.pow(2).sum() for m in self.mean.values()))
        self.grad_sq_norm_unbiased = self.grad_sq_norm - (0.0 if self.exact_mean else self.trace / self.n)
        g2 = self.grad_sq_norm_unbiased
        self.b_simple = self.trace / g2 if g2 > 0 else math.inf

    def snr(self) -> dict[str, torch.Tensor]:
        """Per-parameter ``|G| / std`` (shapes as the parameters)."""
        return {k: self.mean[k].abs() / self.var[k].sqrt() for k in self.mean}

    def per_layer(self) -> dict[str, dict[str, float]]:
        """Per parameter tensor: its share of ``tr(Σ)``, its ``|G|²`` and their ratio."""
        out = {}
        for k in self.mean:
            tr, g2 = float(self.var[k].sum()), float(self.mean[k].pow(2).sum())
            out[k] = {"trace": tr, "grad_sq_norm": g2, "ratio": tr / g2 if g2 > 0 else math.inf}
        return out

    def __repr__(self) -> str:
        return (
            f"GradientNoise(n={self.n}, tr(Σ)={self.trace:.4g}, |G|²={self.grad_sq_norm_unbiased:.4g} "
            f"(plug-in {self.grad_sq_norm:.4g}), B_simple={self.b_simple:.4g})"
        )


def gradient_noise(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: LossFn | None = None,
    chunk_size: int = 256,
    method: str = "auto",
    whole_dataset: bool = False,
) -> GradientNoise:
    """Mean, variance, ``tr(Σ)`` and ``B_simple`` of the per-sample gradients over all of ``X``.

    Two readings of the same numbers, chosen by ``whole_dataset``:

    * ``False`` (default): ``X`` is a *sample* from the data the gradient is an expectation over (e.g. one
      large batch). The variance divides by ``n - 1`` and ``|G|²`` is corrected for the noise left in the
      mean (``|mean|² - tr(Σ)/n``): both unbiased.
    * ``True``: ``X`` *is* the whole training set that mini-batches are drawn from. Its mean gradient is
      ``G`` exactly and ``Σ`` is the covariance of that finite population (divide by ``n``), which is what
      a mini-batch drawn with replacement sees: ``Cov(G_B) = Σ / B``.

    Works through ``X`` in chunks of ``chunk_size`` samples and merges each chunk's mean and variance into the
    running totals (Chan et al.'s parallel form of Welford's update, in float64), so memory is bounded by one
    chunk of per-sample gradients however large ``X`` is. ``method`` is passed to :func:`per_sample_grads`
    (``"auto"``: outer products for stacks of ``nn.Linear``, ``vmap`` otherwise).
    """
    _check_module(model)
    _check_batch(X, y)
    chunk_size = check_int(chunk_size, "chunk_size", low=1)
    if X.shape[0] < 2:
        raise ValueError(f"gradient_noise needs at least 2 samples to estimate a variance, got {X.shape[0]}")
    n = 0
    mean: dict[str, torch.Tensor] = {}
    m2: dict[str, torch.Tensor] = {}
    for start in range(0, X.shape[0], chunk_size):
        grads = per_sample_grads(model, X[start : start + chunk_size], y[start : start + chunk_size],
                                 loss_fn=loss_fn, method=method)
        nb = next(iter(grads.values())).shape[0]
        total = n + nb
        for k, g in grads.items():
            g = g.double()
            mb = g.mean(0)
            m2b = (g - mb).pow(2).sum(0)
            if n == 0:
                mean[k], m2[k] = mb, m2b
            else:
                delta = mb - mean[k]
                mean[k] = mean[k] + delta * (nb / total)
                m2[k] = m2[k] + m2b + delta.pow(2) * (n * nb / total)
        n = total
    if whole_dataset:
        return GradientNoise(n=n, mean=mean, var={k: v / n for k, v in m2.items()}, exact_mean=True)
    return GradientNoise(n=n, mean=mean, var={k: v / (n - 1) for k, v in m2.items()})


@dataclass
class NoiseScale:
    """``tr(Σ)``, ``|G|²`` and ``B_simple`` over ``n`` samples, from :func:`gradient_noise_scale`.

    The same numbers as :class:`GradientNoise` (``trace``, ``grad_sq_norm``, ``grad_sq_norm_unbiased``,
    ``b_simple``), without the per-element mean and variance; ``method`` says how they were computed:
    ``"norms"`` (per-sample squared norms, no per-sample gradient stored) or ``"per-sample"`` (the fallback).
    """

    n: int
    trace: float
    grad_sq_norm: float
    grad_sq_norm_unbiased: float
    b_simple: float
    method: str

    def __repr__(self) -> str:
        return (
            f"NoiseScale(n={self.n}, tr(Σ)={self.trace:.4g}, |G|²={self.grad_sq_norm_unbiased:.4g}, "
            f"B_simple={self.b_simple:.4g}, method={self.method!r})"
        )


class _NotNorms(Exception):
    """The model's gradients cannot be read off per-sample norms (a layer called twice, ...)."""


def _linear_norms(
    model: nn.Module, params: dict[str, nn.Parameter], X: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-sample squared gradient norms ``[B]`` and the summed gradient ``{name: Σ_i g_i}``, both float64,
    from one forward and one backward pass (:func:`_linear_pass`), never forming a per-sample gradient.

    For ``nn.Linear`` sample ``i``'s weight gradient is ``Σ_t δ_it a_itᵀ`` (``t`` runs over the positions of a
    sequence input; one position for a plain ``[B, in]`` input). Its squared Frobenius norm is
    ``Σ_{t,s} (δ_it·δ_is)(a_it·a_is)``: for one position simply ``|δ_i|²·|a_i|²``, the norm of an outer
    product being the product of the norms (Goodfellow 2015, "Efficient per-example gradient computations").
    """
    try:
        calls = _linear_pass(model, params, X, y, loss_fn)
    except _NotLinear as why:
        raise _NotNorms(str(why)) from None
    if len({id(m) for _, m, _, _ in calls}) != len(calls):
        raise _NotNorms("an nn.Linear is called more than once: its per-sample gradient is a sum of terms")
    B = X.shape[0]
    sq = torch.zeros(B, dtype=torch.float64, device=X.device)
    total: dict[str, torch.Tensor] = {}
    for prefix, module, a, d in calls:
        a2 = a.reshape(B, -1, a.shape[-1]).double()   # [B, T, in]
        d2 = d.reshape(B, -1, d.shape[-1]).double()    # [B, T, out]
        key = {pname: f"{prefix}.{pname}" if prefix else pname for pname in ("weight", "bias")}
        if key["weight"] in params:
            if a2.shape[1] == 1:
                sq += d2[:, 0].pow(2).sum(1) * a2[:, 0].pow(2).sum(1)
            else:
                sq += (torch.bmm(d2, d2.transpose(1, 2)) * torch.bmm(a2, a2.transpose(1, 2))).sum((1, 2))
            total[key["weight"]] = torch.einsum("bto,bti->oi", d2, a2)
        if module.bias is not None and key["bias"] in params:
            db = d2.sum(1)
            sq += db.pow(2).sum(1)
            total[key["bias"]] = db.sum(0)
    return sq, total


def _norms_in_chunks(
    model: nn.Module, params: dict[str, nn.Parameter], X: torch.Tensor, y: torch.Tensor, loss_fn: LossFn,
    chunk_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_linear_norms` over ``X`` in chunks: per-sample squared norms ``[n]`` and the flattened sum of the
    per-sample gradients ``[P]`` (parameters in ``params`` order), both float64."""
    sqs, total = [], {}
    for start in range(0, X.shape[0], chunk_size):
        sq, tot = _linear_norms(model, params, X[start : start + chunk_size], y[start : start + chunk_size], loss_fn)
        sqs.append(sq)
        for k, v in tot.items():
            total[k] = total[k] + v if k in total else v
    flat = torch.cat([total[k].reshape(-1) for k in params if k in total])
    return torch.cat(sqs), flat


@dataclass
class SampleNorms:
    """Each sample's squared gradient norm ``sq`` [n] and the sum of the per-sample gradients ``total`` [P]
    (flattened, parameters in ``model.named_parameters()`` order), float64: everything ``tr(Σ)``, ``|G|²``
    and ``B_simple`` need, in O(n + P) memory instead of the O(n · P) of per-sample gradients."""

    sq: torch.Tensor
    total: torch.Tensor
    method: str

    @property
    def n(self) -> int:
        return int(self.sq.shape[0])


def sample_norms(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss_fn: LossFn | None = None, chunk_size: int = 4096
) -> SampleNorms:
    """Per-sample squared gradient norms and the summed gradient of ``model`` on ``X``, ``y``.

    For a model whose trainable parameters all belong to ``nn.Linear`` layers (each called once), from one
    forward and one backward pass per chunk, never forming a per-sample gradient (``method="norms"``);
    otherwise from the per-sample gradients of :func:`per_sample_grads`, chunk by chunk (``"per-sample"``).
    """
    loss_fn, params, X, y = _prepare(model, X, y, loss_fn)
    chunk_size = check_int(chunk_size, "chunk_size", low=1)
    try:
        sq, flat = _norms_in_chunks(model, params, X, y, loss_fn, chunk_size)
        return SampleNorms(sq, flat, "norms")
    except _NotNorms:
        pass
    sqs, total, step = [], None, min(chunk_size, 256)
    for start in range(0, X.shape[0], step):
        g = flatten_grads(per_sample_grads(model, X[start : start + step], y[start : start + step],
                                           loss_fn=loss_fn)).double()
        sqs.append(g.pow(2).sum(1))
        total = g.sum(0) if total is None else total + g.sum(0)
    return SampleNorms(torch.cat(sqs), total, "per-sample")


def gradient_noise_scale(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: LossFn | None = None,
    chunk_size: int = 4096,
    whole_dataset: bool = False,
    method: str = "auto",
) -> NoiseScale:
    """``tr(Σ)``, ``|G|²`` and ``B_simple`` over all of ``X``, without storing per-sample gradients.

    The two readings of :func:`gradient_noise` (``whole_dataset``) and the same numbers, from an identity
    that needs only each sample's squared gradient norm and the summed gradient:

        (n - 1) · tr(Σ)  =  Σ_i |g_i - ḡ|²  =  Σ_i |g_i|²  -  n |ḡ|².

    For models whose trainable parameters all belong to ``nn.Linear`` layers (each called once), the norms
    come from one ordinary forward/backward pass (:func:`_linear_norms`): memory of one batch of
    activations, and no ``[B, P]`` matrix. ``method="norms"`` insists on that path, ``"per-sample"`` uses
    :func:`gradient_noise`, ``"auto"`` picks norms when the model allows it and falls back otherwise. The
    sums are kept in float64, so the subtraction loses little even when the noise is tiny.
    """
    loss_fn, params, X, y = _prepare(model, X, y, loss_fn)
    chunk_size = check_int(chunk_size, "chunk_size", low=1)
    if method not in ("auto", "norms", "per-sample"):
        raise ValueError(f"method must be 'auto', 'norms' or 'per-sample', got {method!r}")
    if X.shape[0] < 2:
        raise ValueError(f"gradient_noise_scale needs at least 2 samples to estimate a variance, got {X.shape[0]}")
    if method != "per-sample":
        try:
            sq, flat = _norms_in_chunks(model, params, X, y, loss_fn, chunk_size)
            n = sq.shape[0]
            g2 = float((flat / n).pow(2).sum())
            spread = float(sq.sum()) - n * g2   # Σ_i |g_i - ḡ|²
            if whole_dataset:
                trace, g2_unbiased = spread / n, g2
            else:
                trace = spread / (n - 1)
                g2_unbiased = g2 - trace / n
            return NoiseScale(n, trace, g2, g2_unbiased, trace / g2_unbiased if g2_unbiased > 0 else math.inf,
                              "norms")
        except _NotNorms as why:
            if method == "norms":
                raise ValueError(f"method='norms' cannot be used for this model: {why}; use 'auto'") from None
    full = gradient_noise(model, X, y, loss_fn=loss_fn, chunk_size=min(chunk_size, 256), whole_dataset=whole_dataset)
    return NoiseScale(full.n, full.trace, full.grad_sq_norm, full.grad_sq_norm_unbiased, full.b_simple,
                      "per-sample")


# ----------------------------------------------------------------------------------------------------------
# 3. the noise scale from two batch sizes
# ----------------------------------------------------------------------------------------------------------
@dataclass
class TwoBatchEstimate:
    """``|G|²``, ``tr(Σ)`` and ``B_simple`` estimated from gradient norms at two batch sizes."""

    b_small: int
    b_big: int
    sq_norm_small: float
    sq_norm_big: float
    grad_sq_norm: float
    trace: float
    b_simple: float


def two_batch_noise_scale(
    sq_norm_small: float | Sequence[float] | np.ndarray,
    sq_norm_big: float | Sequence[float] | np.ndarray,
    b_small: int,
    b_big: int,
) -> TwoBatchEstimate:
    """Unbiased ``|G|²`` and ``tr(Σ)`` from mean squared gradient norms at batch sizes ``b_small < b_big``.

    Since ``E|G_B|² = |G|² + tr(Σ)/B`` holds for every batch size ``B``, two batch sizes give two equations:

        |G|²  ≈ (b_big |G_big|² - b_small |G_small|²) / (b_big - b_small)
        tr(Σ) ≈ (|G_small|² - |G_big|²) / (1/b_small - 1/b_big)

    Both are unbiased when the inputs are averages of ``|G_B|²`` over independent batches (arrays are
    averaged here first). Their ratio ``B_simple`` is only consistent, so average many batches *before*
    dividing; it is ``inf`` when the ``|G|²`` estimate is not positive.
    """
    b_small = check_int(b_small, "b_small", low=1)
    b_big = check_int(b_big, "b_big", low=1)
    if b_small >= b_big:
        raise ValueError(f"b_small ({b_small}) must be smaller than b_big ({b_big})")
    s = float(np.mean(np.asarray(sq_norm_small, dtype=float)))
    b = float(np.mean(np.asarray(sq_norm_big, dtype=float)))
    if not (math.isfinite(s) and math.isfinite(b)) or s < 0 or b < 0:
        raise ValueError(f"squared norms must be finite and >= 0, got {s} and {b}")
    g2 = (b_big * b - b_small * s) / (b_big - b_small)
    trace = (s - b) / (1.0 / b_small - 1.0 / b_big)
    return TwoBatchEstimate(b_small, b_big, s, b, g2, trace, trace / g2 if g2 > 0 else math.inf)


def batch_gradient_sq_norms(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    repeats: int,
    *,
    loss_fn: LossFn | None = None,
    seed: int = 0,
    replace: bool = True,
) -> np.ndarray:
    """``|G_B|²`` of ``repeats`` random mini-batches of ``batch_size`` samples (one ordinary backward each).

    With ``replace=True`` each batch draws its samples independently with replacement, so the batch
    gradient's covariance is exactly ``Σ / B`` of the data set's per-sample gradients. Without replacement it
    is smaller by the finite-population factor ``(N - B) / (N - 1)``, negligible when ``N >> B``.
    The model's ``.grad`` fields are left untouched.
    """
    _check_module(model)
    _check_batch(X, y)
    batch_size = check_int(batch_size, "batch_size", low=1)
    repeats = check_int(repeats, "repeats", low=1)
    if not replace and batch_size > X.shape[0]:
        raise ValueError(f"batch_size ({batch_size}) must be <= the {X.shape[0]} samples when replace=False")
    loss_fn = _default_loss if loss_fn is None else loss_fn
    params = list(_trainable(model).values())
    device = params[0].device
    gen = torch.Generator().manual_seed(int(seed))
    N = X.shape[0]
    out = torch.empty(repeats, dtype=torch.float64)
    with torch.enable_grad():
        for r in range(repeats):
            if replace:
                idx = torch.randint(N, (batch_size,), generator=gen)
            else:
                idx = torch.randperm(N, generator=gen)[:batch_size]
            xb, yb = X[idx].to(device), y[idx].to(device)
            grads = torch.autograd.grad(loss_fn(model(xb), yb), params, allow_unused=True)
            out[r] = sum(g.double().pow(2).sum() for g in grads if g is not None).cpu()
    return out.numpy()


def estimate_noise_scale_two_batch(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    b_small: int = 8,
    b_big: int = 128,
    repeats: int = 200,
    loss_fn: LossFn | None = None,
    seed: int = 0,
) -> TwoBatchEstimate:
    """``B_simple`` without per-sample gradients: average ``|G_B|²`` over ``repeats`` batches at two sizes."""
    small = batch_gradient_sq_norms(model, X, y, b_small, repeats, loss_fn=loss_fn, seed=seed)
    big = batch_gradient_sq_norms(model, X, y, b_big, repeats, loss_fn=loss_fn, seed=seed + 1)
    return two_batch_noise_scale(small, big, b_small, b_big)


# ----------------------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------------------
def _history_of(source: Any) -> list[dict[str, dict[str, float]]]:
    if isinstance(source, GradientTracker):
        return source.history
    if hasattr(source, "epochs") and isinstance(source.epochs, list):  # a training Trace
        hist = [r["grad"] for r in source.epochs if isinstance(r, dict) and "grad" in r]
        if not hist:
            raise ValueError("the trace has no 'grad' records; train with callbacks=[GradientTracker(model)]")
        return hist
    if isinstance(source, list) and all(isinstance(h, Mapping) for h in source):
        return source
    raise ValueError(
        "expected a GradientTracker, a Trace with 'grad' records, or a tracker history (list of dicts), "
        f"got {type(source).__name__}"
    )


def plot_gradient_sizes(
    runs: Any,
    names: Sequence[str] | None = None,
    *,
    ax: Any = None,
    stat: str = "mean_abs",
    bands: bool = True,
    variance: bool = True,
    background: bool = True,
    title: str | None = "Gradient size vs. epochs",
) -> Any:
    """Gradient size per epoch on a log scale, in the style of the SMEC gradient figure.

    ``runs`` is one run (a :class:`GradientTracker`, a Trace with ``"grad"`` records, or a tracker history)
    or a dict ``{label: run}`` to compare runs (e.g. ``{"MRL": tracker_a, "SMRL": tracker_b}``). For each
    tracked name (all of them unless ``names`` picks some):

    * a solid line: the average gradient size ``stat`` per epoch (mean ``|g|`` or ``"norm"``);
    * a shaded band (``bands=True``, runs given as a tracker that kept its steps): the middle 80 % (10th to
      90th percentile) of the per-step values within each epoch, i.e. how much the gradient size moves
      from one mini-batch to the next;
    * a dashed line (``variance=True``): the gradient variance across mini-batches (``var``);
    * a background (``background=True``) coloured epoch by epoch by the mean variance of the first run
      (warm = high), like the seed figure's heat map.

    Both size and variance share the log axis, as in the seed figure (mind that the variance is in squared
    gradient units). Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    if stat not in ("mean_abs", "norm"):
        raise ValueError(f"stat must be 'mean_abs' or 'norm', got {stat!r}")
    if isinstance(runs, Mapping) and runs and all(isinstance(k, str) for k in runs) and not isinstance(
        next(iter(runs.values())), Mapping
    ):
        sources = dict(runs)
    else:
        sources = {"": runs}
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    c = 0
    positive: list[float] = []
    bg: tuple[np.ndarray, np.ndarray] | None = None
    banded = False
    for label, source in sources.items():
        hist = _history_of(source)
        if not hist:
            raise ValueError(f"run {label!r} has no finished epochs to plot")
        available = list(hist[0])
        chosen = list(names) if names is not None else available
        for name in chosen:
            if name not in available:
                raise ValueError(f"{name!r} was not tracked in run {label!r}; tracked: {available}")
        epochs = np.arange(1, len(hist) + 1)
        log = source.step_log() if isinstance(source, GradientTracker) and source.keep_steps else None
        suffix = f", {label}" if label else ""
        for name in chosen:
            mean = np.asarray([h[name][stat] for h in hist], dtype=float)
            var = np.asarray([h[name]["var"] for h in hist], dtype=float)
            color = colors[c % len(colors)]
            c += 1
            ax.plot(epochs, mean, "-o", ms=3, color=color, label=f"average gradient {name}{suffix}", zorder=3)
            positive.extend(mean[mean > 0])
            if bands and log is not None and log.steps.size:
                values = getattr(log, stat)[:, log.names.index(name)]
                lo = [np.percentile(values[log.epoch == e], 10) if np.any(log.epoch == e) else np.nan
                      for e in epochs]
                hi = [np.percentile(values[log.epoch == e], 90) if np.any(log.epoch == e) else np.nan
                      for e in epochs]
                ax.fill_between(epochs, lo, hi, color=color, alpha=0.2, lw=0, zorder=2)
                banded = True
            if variance:
                ax.plot(epochs, var, "--", color=color, label=f"gradient variance {name}{suffix}", zorder=3)
                positive.extend(var[var > 0])
        if bg is None and background:
            with np.errstate(all="ignore"):
                tot = np.asarray([np.nanmean([h[n]["var"] for n in chosen]) for h in hist], dtype=float)
            bg = (epochs, tot)
    ax.set_yscale("log")
    if positive:
        lo_y, hi_y = min(positive), max(positive)
        ax.set_ylim(lo_y / 3, hi_y * 3)
    if bg is not None and np.any(bg[1] > 0):
        epochs, tot = bg
        ok = tot[tot > 0]
        edges = np.concatenate([[epochs[0] - 0.5], epochs + 0.5])
        y0, y1 = ax.get_ylim()
        mesh = ax.pcolormesh(edges, [y0, y1], np.where(tot > 0, tot, np.nan)[None, :], cmap="coolwarm",
                             norm=LogNorm(ok.min(), max(ok.max(), ok.min() * 1.001)), alpha=0.15,
                             shading="flat", zorder=0, edgecolors="none")
        ax.set_ylim(y0, y1)
        ax.figure.colorbar(mesh, ax=ax, pad=0.01, label="gradient variance (background)")
    ax.set_xlim(0.5, max(len(_history_of(s)) for s in sources.values()) + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("gradient size (log scale)")
    if title:
        ax.set_title(title + (" (shaded: 10-90 % of mini-batches)" if banded else ""), fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    return ax


def plot_gradient_heatmap(
    tracker: GradientTracker,
    *,
    value: str = "norm",
    names: Sequence[str] | None = None,
    ax: Any = None,
    title: str | None = "Gradient size per layer over training steps",
) -> Any:
    """Heatmap of each tracked name's gradient ``norm`` (or ``mean_abs``) at every recorded step.

    Rows are the tracked layers/blocks, columns the recorded steps, colour the log10 of the value; thin
    vertical lines mark epoch ends. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if not isinstance(tracker, GradientTracker):
        raise ValueError(f"tracker must be a GradientTracker, got {type(tracker).__name__}")
    if value not in ("norm", "mean_abs"):
        raise ValueError(f"value must be 'norm' or 'mean_abs', got {value!r}")
    log = tracker.step_log()
    if log.steps.size == 0:
        raise ValueError("no finished epoch recorded yet; train first (the step log fills at end_epoch)")
    chosen = list(names) if names is not None else log.names
    for n in chosen:
        if n not in log.names:
            raise ValueError(f"{n!r} is not tracked; tracked names: {log.names}")
    data = getattr(log, value)[:, [log.names.index(n) for n in chosen]].T
    with np.errstate(divide="ignore"):
        z = np.log10(np.where(data > 0, data, np.nan))
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 * len(chosen) + 1.8))
    im = ax.imshow(z, aspect="auto", interpolation="nearest", cmap="viridis",
                   extent=(-0.5, log.steps.size - 0.5, len(chosen) - 0.5, -0.5))
    ax.set_yticks(range(len(chosen)), chosen, fontsize=8)
    ticks = np.linspace(0, log.steps.size - 1, min(8, log.steps.size)).round().astype(int)
    ax.set_xticks(ticks, [str(int(log.steps[t])) for t in ticks])
    for pos in np.flatnonzero(np.diff(log.epoch)) + 0.5:
        ax.axvline(pos, color="white", lw=0.6, alpha=0.7)
    ax.set_xlabel("training step (recorded steps; lines mark epoch ends)")
    ax.figure.colorbar(im, ax=ax, pad=0.01, label=f"log10 gradient {value}")
    if title:
        ax.set_title(title)
    return ax
