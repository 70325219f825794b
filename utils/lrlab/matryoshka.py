"""Matryoshka embeddings: nested losses (MRL) versus sequential training (SMRL), and their gradients.

A retrieval model maps a query and a document to vectors and ranks documents by cosine similarity.
*Matryoshka Representation Learning* (MRL) trains one linear projection ``W`` (here 384 -> 192) so that
every **prefix** of the embedding is useful on its own: the first 48, the first 96 and all 192
coordinates. It does so by summing one contrastive loss per prefix size::

    L_MRL = L_192(e[:, :192]) + L_96(e[:, :96]) + L_48(e[:, :48])

Why the gradients come out uneven
---------------------------------
The loss looks at the prefix only through the *cosine* similarity, i.e. through ``u = e / |e|``.
Back-propagating through the normalisation divides by ``|e| ~ sqrt(d)``, and ``dL/du`` itself has
per-coordinate size ``~ 1/sqrt(d)`` (it is a mix of unit vectors in ``d`` dimensions). So the gradient a
prefix loss puts on each of its coordinates, and on each weight of the rows of ``W`` that produce them,
scales about as **1/d**: :func:`prefix_gradient_scaling` measures it. Rows ``[0:96]`` of ``W`` get
gradients from ``L_192`` (size ~1/192), ``L_96`` (~1/96) and, for ``[0:48]``, ``L_48`` (~1/48), while
rows ``[96:192]`` only hear from ``L_192``: the leading block gets several times larger gradients, and
the sum of three differently sized terms also fluctuates more from batch to batch.

Sequential MRL (SMRL), as built here
------------------------------------
One granularity per stage, largest first, each stage adding a **new sub-projection** and **freezing**
everything trained before:

==========  ===========================  =======================  =====================
stage       trains (``requires_grad``)   frozen                   trainable parameters
==========  ===========================  =======================  =====================
1 (d=192)   ``proj``  (384 -> 192)       --                       384*192 = 73,728
2 (d=96)    ``heads.96``  (192 -> 96)    ``proj``                 192*96  = 18,432
3 (d=48)    ``heads.48``  (96 -> 48)     ``proj``, ``heads.96``   96*48   =  4,608
==========  ===========================  =======================  =====================

"Frozen" means two things at once: the parameters get ``requires_grad=False`` (no gradient is
computed for them) **and** each stage builds a fresh optimizer that holds only the new sub-projection
(so no optimizer state such as momentum can move them). The embedding at size 96 is
``heads.96(proj(x))`` and at 48 is ``heads.48(heads.96(proj(x)))``; each head starts as the plain
truncation ``[I | 0]``, so every stage starts exactly where "take the prefix" would be. SMRL therefore
has 96,768 parameters in all, 23,040 (31 %) more than MRL's 73,728.

In stage 1 only one loss (``L_192``) reaches ``W``, so its two blocks get equal gradients; that stage is
what the gradient figure compares with MRL. A model trained *only* at 192 and then truncated is the
third contender (:func:`train_truncated`); it is SMRL's stage 1 on its own.

The control run
---------------
SMRL differs from MRL in three ways at once: its gradients are even and less noisy, it has 23,040 more
parameters, and it takes more optimizer steps (every stage trains for its own epochs). A recall gain
can come from any of them. :func:`train_mrl` with ``heads=True`` and ``epochs`` = SMRL's epochs of all
stages together gives MRL exactly SMRL's architecture (the same heads, the same ``[I | 0]`` start), the
same parameter count and the same number of epochs, but trains everything jointly with the summed
loss, so its gradients stay as uneven and noisy as MRL's. If it matches SMRL's recall, SMRL's gain came
from the parameters and the extra training, not from lower gradient variance.

Optimizers
----------
Gradient experiments use plain SGD, because then a weight's update is ``lr * g``: the gradient
imbalance *is* the update imbalance. Adam divides each coordinate's step by a running RMS of its own
gradient, so a block that receives 3x larger gradients does not take 3x larger steps; :func:`train_mrl`
with ``optimizer="adam"`` and the per-block update sizes it records show this caveat.

The block statistics (mean ``|g|`` of rows ``[0:96]`` and ``[96:192]``, variance over ``[0:192]``) are
collected by :func:`make_block_tracker`.

Over seeds
----------
:func:`train_over_seeds` trains the contenders for several seeds; :func:`lrlab.stats.mean_interval` gives a
mean with its Student t interval (few seeds: the normal 1.96 is too small); :func:`relative_noise` divides the
variance by the squared mean size, so that two methods with gradients of different size can be compared for noise;
:func:`paper_table` sets the seed figure's numbers (:data:`PAPER_EPOCH0`) beside ours.

imports: args, tables, device, gradients, stats, training (its runs train on fit).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrlab.args import check_choice, check_int, check_real
from lrlab.device import pick_device, seed_everything
from lrlab.gradients import GradientTracker
from lrlab.stats import mean_interval
from lrlab.tables import format_table
from lrlab.training import Callback, Trace, fit, progress_bar
from lrlab.training import make_optimizer as _make_torch_optimizer

DIMS: tuple[int, ...] = (192, 96, 48)
"""The nested prefix sizes of the course's projection, largest first."""

N_FEATURES = 384
"""Input size of the synthetic retrieval task (a stand-in for a frozen backbone's embedding)."""

__all__ = [
    "DEFAULT_LR", "DIMS", "N_FEATURES", "MatryoshkaEncoder", "MatryoshkaRun", "PairLoader", "RetrievalTask",
    "UpdateTracker", "PAPER_EPOCH0", "gradient_measures", "paper_table", "recall_difference_table",
    "recall_differences", "relative_noise", "train_over_seeds",
    "batches", "check_dims", "count_parameters", "evaluate_recall", "freeze", "info_nce", "loglog_slope",
    "make_block_tracker", "make_optimizer", "make_retrieval_task", "matryoshka_loss", "plot_block_ratio",
    "plot_gradient_figure", "plot_recall", "prefix_gradient_scaling", "projection_blocks", "recall_at_k",
    "recall_table", "start_stage", "train_mrl", "train_smrl", "train_truncated", "truncation_matrix",
    "truncation_recall",
]


# ----------------------------------------------------------------------------------------------------
# validation helpers
# ----------------------------------------------------------------------------------------------------

def check_dims(dims: Sequence[int], full: int | None = None) -> tuple[int, ...]:
    """Validate nested prefix sizes and return them sorted largest first.

    Sizes must be distinct positive integers; with ``full`` given they must not exceed it.
    """
    if isinstance(dims, int | np.integer) or not isinstance(dims, Sequence) or len(dims) == 0:
        raise ValueError(f"dims must be a non-empty sequence of prefix sizes such as (192, 96, 48), got {dims!r}")
    out = tuple(check_int(d, "every prefix size in dims", low=1) for d in dims)
    if len(set(out)) != len(out):
        raise ValueError(f"dims must not repeat a prefix size, got {tuple(dims)}")
    if full is not None and max(out) > full:
        raise ValueError(f"prefix sizes must be <= the embedding size {full}, got {tuple(dims)}")
    return tuple(sorted(out, reverse=True))


# ----------------------------------------------------------------------------------------------------
# the synthetic retrieval task
# ----------------------------------------------------------------------------------------------------

@dataclass
class RetrievalTask:
    """Paired query/document views for training and a held-out set for recall.

    Row ``i`` of ``q_train`` and row ``i`` of ``d_train`` are two views of the same item (a positive
    pair); every other document of a batch is a negative. ``q_test``/``d_test`` are fresh items:
    recall@k asks whether each test query finds its own document among *all* test documents.
    """

    q_train: torch.Tensor
    d_train: torch.Tensor
    q_test: torch.Tensor
    d_test: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.q_train.shape[1])

    def to(self, device: str | torch.device) -> RetrievalTask:
        dev = pick_device(device) if isinstance(device, str) else device
        return RetrievalTask(self.q_train.to(dev), self.d_train.to(dev), self.q_test.to(dev),
                             self.d_test.to(dev), dict(self.info))

    def __repr__(self) -> str:
        return (f"RetrievalTask(train={tuple(self.q_train.shape)} pairs, test={tuple(self.q_test.shape)} pairs, "
                f"factors={self.info.get('n_factors')}, nuisance={self.info.get('n_nuisance')})")


def make_retrieval_task(n_train: int = 2048, n_test: int = 2048, *, n_features: int = N_FEATURES,
                        n_factors: int = 96, n_nuisance: int = 64, decay: float = 0.5,
                        nuisance_scale: float = 2.0, view_noise: float = 0.7, noise: float = 0.1,
                        seed: int = 0) -> RetrievalTask:
    """Build a synthetic retrieval task: two noisy views of shared latent factors.

    Each item has ``n_factors`` latent factors ``z`` whose standard deviations fall off as
    ``(j+1)**(-decay/2)`` (a few strong directions, many weak ones -- like real embeddings). A view is::

        x = S @ (z + view_noise * eta) + nuisance_scale * N @ u + noise * eps

    where ``S`` (signal) and ``N`` (nuisance) are orthonormal column blocks of one random rotation of
    ``R^n_features``, and ``eta``, ``u``, ``eps`` are drawn independently for the query and the document.
    So the two views share only ``z``. The view noise ``eta`` has the same size in every factor, so strong
    factors are reliable and weak ones mostly noise: a good projection keeps the signal directions, ranks
    them by reliability (what a short prefix should hold first), and suppresses the (large) nuisance
    directions that differ between the two views.
    """
    n_train = check_int(n_train, "n_train", low=2)
    n_test = check_int(n_test, "n_test", low=2)
    n_features = check_int(n_features, "n_features", low=2)
    n_factors = check_int(n_factors, "n_factors", low=1)
    n_nuisance = check_int(n_nuisance, "n_nuisance", low=0)
    if n_factors + n_nuisance > n_features:
        raise ValueError(f"n_factors + n_nuisance ({n_factors} + {n_nuisance}) must be <= n_features "
                         f"({n_features}): both live in orthogonal directions of the input space")
    decay = check_real(decay, "decay", low=0)
    nuisance_scale = check_real(nuisance_scale, "nuisance_scale", low=0)
    view_noise = check_real(view_noise, "view_noise", low=0)
    noise = check_real(noise, "noise", low=0)
    check_int(seed, "seed", low=0)

    gen = torch.Generator().manual_seed(int(seed))
    basis, _ = torch.linalg.qr(torch.randn(n_features, n_features, generator=gen))
    signal = basis[:, :n_factors]
    nuisance = basis[:, n_factors:n_factors + n_nuisance]
    scales = (torch.arange(1, n_factors + 1, dtype=torch.float32) ** (-decay / 2.0))
    scales = scales / scales.pow(2).mean().sqrt()  # mean factor variance 1

    def views(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, n_factors, generator=gen) * scales
        out = []
        for _ in range(2):
            eta = torch.randn(n, n_factors, generator=gen)
            x = (z + view_noise * eta) @ signal.T
            if n_nuisance:
                x = x + nuisance_scale * torch.randn(n, n_nuisance, generator=gen) @ nuisance.T
            x = x + noise * torch.randn(n, n_features, generator=gen)
            out.append(x.float())
        return out[0], out[1]

    q_train, d_train = views(n_train)
    q_test, d_test = views(n_test)
    info = dict(n_factors=n_factors, n_nuisance=n_nuisance, decay=decay, nuisance_scale=nuisance_scale,
                view_noise=view_noise, noise=noise, seed=int(seed))
    return RetrievalTask(q_train, d_train, q_test, d_test, info)


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches covering ``range(n)``; the last short batch is dropped.

    In-batch negatives need full batches: a batch of 3 is an easier (and differently scaled)
    contrastive problem than a batch of 128.
    """
    n = check_int(n, "n", low=1)
    batch_size = check_int(batch_size, "batch_size", low=2)
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) must be <= the number of training pairs ({n})")
    perm = torch.randperm(n, generator=generator)
    return [perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


# ----------------------------------------------------------------------------------------------------
# model, loss, recall
# ----------------------------------------------------------------------------------------------------

def truncation_matrix(d_out: int, d_in: int) -> torch.Tensor:
    """The ``[I | 0]`` matrix of shape ``(d_out, d_in)``: applied to a vector it keeps its first d_out entries."""
    d_out, d_in = check_int(d_out, "d_out", low=1), check_int(d_in, "d_in", low=1)
    if d_out > d_in:
        raise ValueError(f"a truncation keeps at most all coordinates: d_out ({d_out}) must be <= d_in ({d_in})")
    return torch.eye(d_out, d_in)


class MatryoshkaEncoder(nn.Module):
    """A linear projection ``proj`` (n_features -> max(dims)) with optional per-size heads.

    Without heads, ``embed(x, d)`` is the prefix ``proj(x)[:, :d]`` (MRL and "train then truncate").
    With ``heads=True`` every smaller size gets its own sub-projection from the next larger size
    (``192 -> 96 -> 48``), each initialised to the truncation ``[I | 0]``; ``embed(x, 48)`` is then
    ``heads["48"](heads["96"](proj(x)))`` (SMRL and the MRL control run). Before any training the
    two kinds of encoder compute exactly the same embeddings.
    """

    def __init__(self, n_features: int = N_FEATURES, dims: Sequence[int] = DIMS, heads: bool = False,
                 seed: int | None = None):
        super().__init__()
        n_features = check_int(n_features, "n_features", low=1)
        self.dims = check_dims(dims)
        self.full = self.dims[0]
        if seed is not None:
            torch.manual_seed(check_int(seed, "seed", low=0))
        self.proj = nn.Linear(n_features, self.full, bias=False)
        self.heads = nn.ModuleDict()
        if heads:
            for bigger, smaller in zip(self.dims[:-1], self.dims[1:], strict=True):
                head = nn.Linear(bigger, smaller, bias=False)
                with torch.no_grad():
                    head.weight.copy_(truncation_matrix(smaller, bigger))
                self.heads[str(smaller)] = head

    @property
    def has_heads(self) -> bool:
        return len(self.heads) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The full-size embedding ``proj(x)``."""
        return self.proj(x)

    def embed(self, x: torch.Tensor, d: int) -> torch.Tensor:
        """The size-``d`` embedding of ``x`` (a prefix, or the chain of heads down to ``d``)."""
        if d not in self.dims:
            raise ValueError(f"embedding size {d!r} is not one of this encoder's sizes {self.dims}")
        e = self.proj(x)
        if not self.has_heads:
            return e[:, :d]
        for size in self.dims[1:]:
            if size < d:
                break
            e = self.heads[str(size)](e)
        return e

    def embed_all(self, x: torch.Tensor, dims: Sequence[int] | None = None) -> dict[int, torch.Tensor]:
        """Embeddings at every size in ``dims`` (default all), sharing one pass through ``proj``."""
        dims = self.dims if dims is None else check_dims(dims)
        for d in dims:
            if d not in self.dims:
                raise ValueError(f"embedding size {d!r} is not one of this encoder's sizes {self.dims}")
        e = self.proj(x)
        out = {}
        if not self.has_heads:
            return {d: e[:, :d] for d in dims}
        out[self.full] = e
        for size in self.dims[1:]:
            e = self.heads[str(size)](e)
            out[size] = e
        return {d: out[d] for d in dims}

    def modules_for(self, d: int) -> list[nn.Module]:
        """The sub-module that SMRL's stage for size ``d`` trains (``proj`` for the full size)."""
        if d == self.full:
            return [self.proj]
        if not self.has_heads:
            raise ValueError("this encoder has no heads: only the full size has its own sub-projection")
        if str(d) not in self.heads:
            raise ValueError(f"embedding size {d!r} is not one of this encoder's sizes {self.dims}")
        return [self.heads[str(d)]]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (only those with ``requires_grad`` if asked)."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def info_nce(q: torch.Tensor, d: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE on cosine similarity with in-batch negatives (queries -> documents).

    ``logits[i, j] = cos(q_i, d_j) / temperature``; query ``i``'s positive is document ``i`` and the
    other documents of the batch are its negatives, so the loss is the cross-entropy of each row
    against its diagonal entry, averaged over the batch.
    """
    if not isinstance(q, torch.Tensor) or not isinstance(d, torch.Tensor):
        raise ValueError("q and d must be tensors of shape (batch, dim)")
    if q.ndim != 2 or q.shape != d.shape or q.shape[0] < 2:
        raise ValueError(f"q and d must have the same shape (batch >= 2, dim), got {tuple(q.shape)} and "
                         f"{tuple(d.shape)}")
    temperature = check_real(temperature, "temperature", low=0, low_open=True)
    logits = F.normalize(q, dim=1) @ F.normalize(d, dim=1).T / temperature
    target = torch.arange(q.shape[0], device=q.device)
    return F.cross_entropy(logits, target)


def matryoshka_loss(q: torch.Tensor, d: torch.Tensor, dims: Sequence[int] = DIMS, temperature: float = 0.05,
                    weights: Sequence[float] | None = None) -> torch.Tensor:
    """The MRL loss: ``sum_k weights[k] * info_nce(q[:, :dims[k]], d[:, :dims[k]])`` (weights default 1).

    ``q`` and ``d`` are full-size embeddings; each term looks only at a prefix. The terms are *summed*,
    not averaged: MRL's paper does so, and it is what gives the leading coordinates their larger share.
    """
    dims_sorted = check_dims(dims, full=q.shape[-1] if isinstance(q, torch.Tensor) and q.ndim == 2 else None)
    dims_given = tuple(int(x) for x in dims)
    if weights is None:
        weights = [1.0] * len(dims_given)
    if len(weights) != len(dims_given):
        raise ValueError(f"weights must have one entry per prefix size: {len(dims_given)} sizes {dims_given}, "
                         f"got {len(weights)} weights")
    w = {dd: check_real(wk, "every weight", low=0) for dd, wk in zip(dims_given, weights, strict=True)}
    return sum(w[k] * info_nce(q[:, :k], d[:, :k], temperature) for k in dims_sorted)


@torch.no_grad()
def recall_at_k(q: torch.Tensor, d: torch.Tensor, k: int = 1, chunk: int = 1024) -> float:
    """Fraction of queries whose own document (same row) is among the top-``k`` by cosine similarity.

    Every document of ``d`` is a candidate for every query (a gallery of ``len(d)``), not just a batch.
    Ties count against the query (its document must beat, not equal, the others ranked above it).
    """
    if not isinstance(q, torch.Tensor) or not isinstance(d, torch.Tensor) or q.ndim != 2 or q.shape != d.shape:
        raise ValueError("q and d must be tensors of the same shape (n, dim)")
    k = check_int(k, "k", low=1)
    if k > d.shape[0]:
        raise ValueError(f"k ({k}) must be <= the number of documents ({d.shape[0]})")
    qn, dn = F.normalize(q.float(), dim=1), F.normalize(d.float(), dim=1)
    hits = 0
    for start in range(0, qn.shape[0], chunk):
        sims = qn[start:start + chunk] @ dn.T
        own = sims[torch.arange(sims.shape[0]), torch.arange(start, start + sims.shape[0])]
        rank = (sims >= own[:, None]).sum(dim=1)  # own document counts itself once
        hits += int((rank <= k).sum())
    return hits / qn.shape[0]


@torch.no_grad()
def evaluate_recall(encoder: MatryoshkaEncoder, task: RetrievalTask, dims: Sequence[int] | None = None,
                    k: int = 1) -> dict[int, float]:
    """Recall@k on the task's test pairs at every embedding size of ``encoder`` (or of ``dims``)."""
    if not isinstance(encoder, MatryoshkaEncoder):
        raise ValueError(f"encoder must be a MatryoshkaEncoder, got {type(encoder).__name__}")
    dev = next(encoder.parameters()).device
    eq = encoder.embed_all(task.q_test.to(dev), dims)
    ed = encoder.embed_all(task.d_test.to(dev), dims)
    return {dd: recall_at_k(eq[dd], ed[dd], k) for dd in sorted(eq, reverse=True)}


# ----------------------------------------------------------------------------------------------------
# block statistics (the one place that builds the tracker)
# ----------------------------------------------------------------------------------------------------

def projection_blocks(full: int = 192, param: str = "proj.weight") -> dict[str, tuple[str, slice]]:
    """The figure's blocks of the projection weight: rows ``[0:full/2]``, ``[full/2:full]``, ``[0:full]``.

    Rows (dim 0 of ``W``, shape ``(out, in)``) are the *output coordinates*: row ``i`` produces embedding
    coordinate ``i``. A prefix loss of size d reaches rows ``[0:d]`` and no others.
    """
    full = check_int(full, "full", low=2)
    half = full // 2
    return {f"[0:{half}]": (param, slice(0, half)), f"[{half}:{full}]": (param, slice(half, full)),
            f"[0:{full}]": (param, slice(0, full))}


def make_block_tracker(model: nn.Module, blocks: Mapping[str, tuple[str, slice]] | None = None,
                       every: int = 1) -> GradientTracker:
    """A :class:`lrlab.gradients.GradientTracker` for the blocks of the projection (default: the figure's).

    Call ``tracker.after_backward(model, step)`` after each ``loss.backward()`` and
    ``tracker.end_epoch()`` at the end of each epoch; the latter returns
    ``{block: {"mean_abs", "norm", "var", "n"}}``.
    """
    if blocks is None:
        if not isinstance(getattr(model, "proj", None), nn.Linear):
            raise ValueError("without blocks=..., the model needs a Linear layer named 'proj' (its rows are split)")
        blocks = projection_blocks(model.proj.out_features)
    return GradientTracker(model, every=every, blocks=dict(blocks), layers=None)


# ----------------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------------

DEFAULT_LR: dict[str, float] = {"sgd": 0.3, "adam": 3e-3}
"""Learning rates that train the default task well with each optimizer (plain SGD, no momentum; Adam)."""

@dataclass
class MatryoshkaRun:
    """What one training run leaves behind.

    ``history`` has one dict per epoch: ``epoch`` (1-based over the whole run), ``stage`` (1-based; MRL
    has one stage), ``dim`` (the size trained in that stage, ``None`` for MRL's joint loss), ``loss``
    (mean training loss), ``grad`` (``{block: {"mean_abs", "norm", "var", "n"}}`` of the projection's
    blocks; empty where the projection is frozen) and, when tracked, ``update`` (``{block: mean |delta w|}``
    per step). The last epoch of every stage also holds ``recall`` (recall@1 at every size right then).
    ``params`` counts the parameters trained in each stage and in all.

    Training runs on :func:`lrlab.training.fit`, so a NaN/inf loss is handled by its one rule: the run
    stops before the bad step, that epoch's record has ``diverged: True`` and a NaN loss, later stages
    are skipped, the recall is NaN at every size, :attr:`diverged` is True and ``message`` says where.
    """

    method: str
    encoder: MatryoshkaEncoder
    history: list[dict[str, Any]]
    recall: dict[int, float]
    params: dict[str, int]
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    @property
    def diverged(self) -> bool:
        """True when the training loss became NaN/inf and the run stopped early."""
        return any(h.get("diverged") for h in self.history)

    def series(self, block: str, stat: str = "mean_abs", stage: int | None = 1) -> np.ndarray:
        """Per-epoch values of one block statistic (``stage=None``: every epoch that recorded it)."""
        if stat not in ("mean_abs", "norm", "var", "n"):
            raise ValueError(f"stat must be one of 'mean_abs', 'norm', 'var', 'n', got {stat!r}")
        vals = [h["grad"][block][stat] for h in self.history
                if block in h.get("grad", {}) and (stage is None or h["stage"] == stage)]
        if not vals:
            recorded = sorted({b for h in self.history for b in h.get("grad", {})})
            raise ValueError(f"no epoch of stage {stage} recorded block {block!r}; recorded blocks: {recorded} "
                             "(train with track=True)")
        return np.asarray(vals, dtype=float)

    def update_series(self, block: str, stage: int | None = 1) -> np.ndarray:
        """Per-epoch mean ``|delta w|`` of one block (runs trained with ``track_updates=True``)."""
        vals = [h["update"][block] for h in self.history
                if block in h.get("update", {}) and (stage is None or h["stage"] == stage)]
        if not vals:
            raise ValueError(f"no epoch recorded the updates of block {block!r}; train with track_updates=True")
        return np.asarray(vals, dtype=float)

    def block_ratio(self, stat: str = "mean_abs", *, updates: bool = False) -> np.ndarray:
        """Per-epoch ratio leading block / trailing block (``[0:96]`` / ``[96:192]``) of stage 1.

        ``updates=True`` uses the mean ``|delta w|`` of the optimizer steps instead of the gradients.
        """
        full = self.encoder.full
        lead, tail = f"[0:{full // 2}]", f"[{full // 2}:{full}]"
        if updates:
            return self.update_series(lead) / self.update_series(tail)
        return self.series(lead, stat) / self.series(tail, stat)

    def stage_recall(self, stage: int) -> dict[int, float]:
        """Recall@1 at every size right after ``stage`` (for SMRL, stage 1 is "train at 192, truncate")."""
        for h in self.history:
            if h["stage"] == stage and "recall" in h:
                return dict(h["recall"])
        stages = sorted({h["stage"] for h in self.history})
        raise ValueError(f"stage must be one of {stages}, got {stage!r}")

    @property
    def epochs(self) -> int:
        return len(self.history)

    def __repr__(self) -> str:
        rec = ", ".join(f"{d}: {r:.3f}" for d, r in self.recall.items())
        return (f"MatryoshkaRun({self.method!r}, {self.epochs} epochs, recall@1 {{{rec}}}, "
                f"{self.params.get('total', 0):,} parameters, {self.seconds:.2f} s"
                + (", diverged)" if self.diverged else ")"))


def make_optimizer(params: Sequence[nn.Parameter], optimizer: str = "sgd", lr: float | None = None
                   ) -> torch.optim.Optimizer:
    """Plain SGD (no momentum: a step is exactly ``-lr * g``) or Adam over ``params``.

    Built by :func:`lrlab.training.make_optimizer` (the library's one optimizer table); the names allowed
    here are those of :data:`DEFAULT_LR`, the optimizers with a tuned default LR for this task.
    """
    check_choice(optimizer, "optimizer", tuple(DEFAULT_LR), hint="the optimizers with a default LR for this task")
    lr = DEFAULT_LR[optimizer] if lr is None else check_real(lr, "lr", low=0, low_open=True)
    return _make_torch_optimizer(optimizer, params, lr)


def freeze(*modules: nn.Module) -> None:
    """``requires_grad=False`` (and no stale ``.grad``) on every parameter of ``modules``."""
    for m in modules:
        if not isinstance(m, nn.Module):
            raise ValueError(f"freeze takes torch.nn.Module objects, got {type(m).__name__}")
        for p in m.parameters():
            p.requires_grad_(False)
            p.grad = None


def start_stage(encoder: MatryoshkaEncoder, dim: int, *, lr: float | None = None, optimizer: str = "sgd"
                ) -> torch.optim.Optimizer:
    """Begin SMRL's stage for size ``dim``: freeze everything, unfreeze that stage's sub-projection only.

    Returns a **fresh** optimizer holding only the sub-projection's parameters. Both halves matter: a
    parameter with ``requires_grad=True`` that is not in the optimizer still gets (useless) gradients,
    and a frozen parameter left in an optimizer with momentum or weight decay could still move.
    """
    if not isinstance(encoder, MatryoshkaEncoder):
        raise ValueError(f"encoder must be a MatryoshkaEncoder, got {type(encoder).__name__}")
    new = encoder.modules_for(dim)
    freeze(encoder)
    for m in new:
        m.requires_grad_(True)
    return make_optimizer([p for m in new for p in m.parameters()], optimizer, lr)


def _check_stage(encoder: MatryoshkaEncoder, dim: int, opt: Any) -> list[nn.Parameter]:
    """The stage's parameters, after checking that exactly they are trainable and in the optimizer."""
    if not isinstance(opt, torch.optim.Optimizer):
        raise ValueError(f"the stage function must return a torch.optim.Optimizer, got {type(opt).__name__}")
    want = {id(p) for m in encoder.modules_for(dim) for p in m.parameters()}
    names = {id(p): n for n, p in encoder.named_parameters()}
    trainable = {id(p) for p in encoder.parameters() if p.requires_grad}
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    if trainable != want:
        extra = sorted(names[i] for i in trainable - want)
        missing = sorted(names[i] for i in want - trainable)
        raise ValueError(f"stage {dim}: exactly the new sub-projection must have requires_grad=True; "
                         f"still trainable but should be frozen: {extra}; frozen but should train: {missing}")
    if in_opt != want:
        extra = sorted(names.get(i, "?") for i in in_opt - want)
        raise ValueError(f"stage {dim}: the optimizer must hold only the new sub-projection's parameters; "
                         f"it also holds {extra}" if extra else f"stage {dim}: the optimizer misses "
                         "parameters of the new sub-projection")
    return [p for p in encoder.parameters() if id(p) in want]


def _check_common(task: RetrievalTask, optimizer: str, lr: float | None, batch_size: int,
                  temperature: float) -> tuple[float, int, float]:
    if not isinstance(task, RetrievalTask):
        raise ValueError(f"task must be a RetrievalTask (see make_retrieval_task), got {type(task).__name__}")
    check_choice(optimizer, "optimizer", tuple(DEFAULT_LR), hint="the optimizers with a default LR for this task")
    lr = DEFAULT_LR[optimizer] if lr is None else check_real(lr, "lr", low=0, low_open=True)
    batch_size = check_int(batch_size, "batch_size", low=2)
    if batch_size > task.q_train.shape[0]:
        raise ValueError(f"batch_size ({batch_size}) must be <= the number of training pairs "
                         f"({task.q_train.shape[0]})")
    return lr, batch_size, check_real(temperature, "temperature", low=0, low_open=True)


class PairLoader:
    """Shuffled full batches of ``(queries, documents)`` rows, in a new order every epoch.

    Each pass draws :func:`batches` from ``generator`` (so one generator gives a reproducible sequence
    of epochs) and yields ``(q[idx], d[idx])``; the last short batch is dropped. It is the training
    loader :func:`lrlab.training.fit` gets for the Matryoshka runs.
    """

    def __init__(self, q: torch.Tensor, d: torch.Tensor, batch_size: int, generator: torch.Generator) -> None:
        if not isinstance(q, torch.Tensor) or not isinstance(d, torch.Tensor) or q.shape[0] != d.shape[0]:
            raise ValueError("q and d must be tensors with one row per training pair")
        self.q, self.d, self.generator = q, d, generator
        self.batch_size = check_int(batch_size, "batch_size", low=2)

    def __len__(self) -> int:
        return self.q.shape[0] // self.batch_size

    def __iter__(self) -> Any:
        for idx in batches(self.q.shape[0], self.batch_size, self.generator):
            idx = idx.to(self.q.device)
            yield self.q[idx], self.d[idx]


class UpdateTracker(Callback):
    """Mean ``|delta w|`` of the optimizer steps on the projection's blocks, per epoch.

    ``after_backward`` keeps the weights before the step, ``after_step`` adds the step's mean absolute
    change of rows ``[0:full/2]``, ``[full/2:full]`` and ``[0:full]``; ``on_epoch_end`` stores the epoch's
    means in ``record["update"]``.
    """

    def __init__(self, encoder: MatryoshkaEncoder) -> None:
        self.weight = encoder.proj.weight
        full = encoder.full
        self.half = full // 2
        self.names = (f"[0:{self.half}]", f"[{self.half}:{full}]", f"[0:{full}]")
        self._reset()

    def _reset(self) -> None:
        self.total = torch.zeros(3, dtype=torch.float64, device=self.weight.device)
        self.steps = 0
        self.before: torch.Tensor | None = None

    def after_backward(self, model: nn.Module, step: int) -> None:
        self.before = self.weight.detach().clone()

    def after_step(self, model: nn.Module, step: int, record: dict) -> None:
        delta = (self.weight.detach() - self.before).abs()
        h = self.half
        self.total += torch.stack((delta[:h].mean(), delta[h:].mean(), delta.mean())).double()
        self.steps += 1

    def on_epoch_end(self, epoch: int, record: dict, trace: Any) -> None:
        record["update"] = dict(zip(self.names, (self.total / max(self.steps, 1)).tolist(), strict=True))
        self._reset()


def _train_stage(encoder: MatryoshkaEncoder, inputs: tuple[torch.Tensor, torch.Tensor],
                 loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer, *,
                 epochs: int, batch_size: int, generator: torch.Generator, tracker: GradientTracker | None,
                 track_updates: bool, stage: int, dim: int | None, history: list[dict[str, Any]], trace: Trace,
                 bar: Any | None) -> bool:
    """Run ``epochs`` epochs of one stage on ``inputs`` with :func:`lrlab.training.fit`, continuing ``trace``.

    Appends one dict per epoch to ``history``; returns False when the loss diverged (fit's rule: the run
    stops before the bad step, ``trace.message`` says where), True otherwise.
    """
    callbacks: list[Callback] = []
    if tracker is not None:
        callbacks.append(tracker)  # a GradientTracker stores each epoch's block statistics in record["grad"]
    if track_updates:
        callbacks.append(UpdateTracker(encoder))
    first = len(trace.epochs)
    fit(encoder, (PairLoader(inputs[0], inputs[1], batch_size, generator), None), opt, epochs,
        batch_loss=lambda model, batch: loss_of(*batch), device=inputs[0].device, callbacks=callbacks,
        progress=bar if bar is not None else False, trace=trace)
    for rec in trace.epochs[first:]:
        entry: dict[str, Any] = {"epoch": len(history) + 1, "stage": stage, "dim": dim,
                                 "loss": float(rec["train_loss"]), "grad": rec.get("grad", {})}
        if "update" in rec:
            entry["update"] = rec["update"]
        if rec.get("diverged"):
            entry["diverged"] = True
        history.append(entry)
    return not trace.diverged


NestedLoss = Callable[[torch.Tensor, torch.Tensor, Sequence[int], float], torch.Tensor]
StageFn = Callable[..., torch.optim.Optimizer]


def train_mrl(task: RetrievalTask, *, dims: Sequence[int] = DIMS, epochs: int = 20, lr: float | None = None,
              optimizer: str = "sgd", batch_size: int = 128, temperature: float = 0.05, heads: bool = False,
              weights: Sequence[float] | None = None, loss_fn: NestedLoss | None = None, seed: int = 0,
              device: str | torch.device = "auto", track: bool = True, track_updates: bool = False,
              progress: bool | str = "auto", method: str | None = None) -> MatryoshkaRun:
    """Train with the summed nested loss (MRL); ``dims=(192,)`` trains at the full size only.

    ``heads=True`` is the **control run**: MRL with SMRL's extra sub-projections (same architecture, same
    ``[I | 0]`` start, same parameter count), all trained jointly with the summed loss -- so its gradients
    are as uneven as MRL's. Give it as many epochs as SMRL's stages together to match SMRL's training
    budget too. ``loss_fn(q, d, dims, temperature)`` replaces :func:`matryoshka_loss` (e.g. your own).
    ``lr=None`` takes :data:`DEFAULT_LR` of the optimizer.
    """
    lr, batch_size, temperature = _check_common(task, optimizer, lr, batch_size, temperature)
    dims = check_dims(dims)
    epochs = check_int(epochs, "epochs", low=1)
    seed = check_int(seed, "seed", low=0)
    if heads and len(dims) < 2:
        raise ValueError("heads=True needs at least two prefix sizes (a head maps one size to the next)")
    if heads and loss_fn is not None:
        raise ValueError("loss_fn works on prefixes of one embedding; with heads=True the sizes come from heads")
    if loss_fn is not None and not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable as loss_fn(q, d, dims, temperature), got {loss_fn!r}")
    if weights is not None and len(weights) != len(dims):
        raise ValueError(f"weights must have one entry per prefix size {dims}, got {list(weights)}")
    dev = pick_device(device)
    seed_everything(seed)
    encoder = MatryoshkaEncoder(task.n_features, dims, heads=heads).to(dev)
    w = [1.0] * len(dims) if weights is None else [check_real(x, "every weight", low=0)
                                                   for x in weights]

    if heads:
        def loss_of(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            eq, ed = encoder.embed_all(q), encoder.embed_all(d)
            return sum(wk * info_nce(eq[k], ed[k], temperature) for k, wk in zip(dims, w, strict=True))
    elif loss_fn is not None:
        def loss_of(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return loss_fn(encoder(q), encoder(d), dims, temperature)
    else:
        def loss_of(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
            return matryoshka_loss(encoder(q), encoder(d), dims, temperature, w)

    full_only = len(dims) == 1
    name = method or ("MRL + heads (control)" if heads else
                      (f"train at {dims[0]}, truncate" if full_only else "MRL"))
    tracker = make_block_tracker(encoder) if track else None
    gen = torch.Generator().manual_seed(seed)
    inputs = (task.q_train.to(dev), task.d_train.to(dev))
    bar = progress_bar(progress, epochs * (inputs[0].shape[0] // batch_size), name)
    history: list[dict[str, Any]] = []
    trace = Trace()
    start = time.perf_counter()
    opt = make_optimizer(list(encoder.parameters()), optimizer, lr)
    try:
        _train_stage(encoder, inputs, loss_of, opt, epochs=epochs, batch_size=batch_size, generator=gen,
                     tracker=tracker, track_updates=track_updates, stage=1, dim=dims[0] if full_only else None,
                     history=history, trace=trace, bar=bar)
    finally:
        if bar is not None and bar is not progress:  # a bar passed in is shared with other runs: its owner closes it
            bar.close()
    seconds = time.perf_counter() - start
    if trace.diverged:
        recall = {d: math.nan for d in (dims if not full_only else _truncation_dims(dims))}
    elif full_only:
        # a model trained at one size is used at smaller sizes by truncating its embedding
        recall = truncation_recall(encoder, task, _truncation_dims(dims))
    else:
        recall = evaluate_recall(encoder, task)
    history[-1]["recall"] = dict(recall)
    n = count_parameters(encoder)
    return MatryoshkaRun(name, encoder, history, recall, {"stage 1": n, "total": n}, seconds,
                         dict(dims=dims, epochs=epochs, lr=lr, optimizer=optimizer, batch_size=batch_size,
                              temperature=temperature, heads=heads, seed=seed), message=trace.message)


def _truncation_dims(dims: tuple[int, ...]) -> tuple[int, ...] | list[int]:
    return [d for d in DIMS if d <= dims[0]] if dims[0] in DIMS else dims


@torch.no_grad()
def truncation_recall(encoder: MatryoshkaEncoder, task: RetrievalTask, dims: Sequence[int] = DIMS,
                      k: int = 1) -> dict[int, float]:
    """Recall@k of the prefixes ``proj(x)[:, :d]`` of the full embedding (heads, if any, are ignored)."""
    if not isinstance(encoder, MatryoshkaEncoder):
        raise ValueError(f"encoder must be a MatryoshkaEncoder, got {type(encoder).__name__}")
    dev = next(encoder.parameters()).device
    eq, ed = encoder(task.q_test.to(dev)), encoder(task.d_test.to(dev))
    return {d: recall_at_k(eq[:, :d], ed[:, :d], k) for d in check_dims(dims, full=eq.shape[1])}


def train_truncated(task: RetrievalTask, *, full: int = DIMS[0], **kwargs: Any) -> MatryoshkaRun:
    """The baseline: train at the full size only, then use its prefixes (192, 96, 48) by truncation.

    With the same seed this is exactly SMRL's stage 1 (``smrl.stage_recall(1)`` gives the same numbers).
    """
    if "dims" in kwargs:
        raise ValueError("train_truncated trains at one size: give full=..., not dims")
    return train_mrl(task, dims=(full,), **kwargs)


def train_smrl(task: RetrievalTask, *, dims: Sequence[int] = DIMS, epochs: int | Sequence[int] = (20, 20, 20),
               lr: float | None = None, optimizer: str = "sgd", batch_size: int = 128, temperature: float = 0.05,
               stage_fn: StageFn | None = None, seed: int = 0, device: str | torch.device = "auto",
               track: bool = True, track_updates: bool = False, progress: bool | str = "auto") -> MatryoshkaRun:
    """Sequential MRL: one size per stage (largest first), a new sub-projection per stage, the rest frozen.

    Stage 1 trains ``proj`` with ``L_192`` alone (its gradient blocks are what the figure shows); each
    later stage calls ``stage_fn(encoder, dim, lr=lr, optimizer=optimizer)`` (default :func:`start_stage`),
    which must freeze everything but the new head and return an optimizer over that head only -- this is
    checked, and a stage that does not freeze raises ``ValueError``. As the frozen part cannot change,
    its output is computed once per stage and the head trains on it. ``epochs``: one number per stage,
    or one number for all stages.
    """
    lr, batch_size, temperature = _check_common(task, optimizer, lr, batch_size, temperature)
    dims = check_dims(dims)
    if len(dims) < 2:
        raise ValueError(f"SMRL needs at least two sizes (one stage each), got {dims}")
    if isinstance(epochs, int | np.integer) and not isinstance(epochs, bool):
        epochs = [int(epochs)] * len(dims)
    if isinstance(epochs, str) or not isinstance(epochs, Sequence):
        raise ValueError(f"epochs must be an integer or one integer per stage, got {epochs!r}")
    epochs = [check_int(e, "epochs of every stage", low=1) for e in epochs]
    if len(epochs) != len(dims):
        raise ValueError(f"epochs must give one number per stage: {len(dims)} stages for sizes {dims}, "
                         f"got {epochs}")
    seed = check_int(seed, "seed", low=0)
    stage_fn = start_stage if stage_fn is None else stage_fn
    if not callable(stage_fn):
        raise ValueError(f"stage_fn must be callable as stage_fn(encoder, dim, lr=..., optimizer=...), "
                         f"got {stage_fn!r}")
    dev = pick_device(device)
    seed_everything(seed)
    encoder = MatryoshkaEncoder(task.n_features, dims, heads=True).to(dev)
    tracker = make_block_tracker(encoder) if track else None
    gen = torch.Generator().manual_seed(seed)
    n_train = task.q_train.shape[0]
    bar = progress_bar(progress, sum(epochs) * (n_train // batch_size), "SMRL")
    history: list[dict[str, Any]] = []
    params: dict[str, int] = {}
    trace = Trace()
    start = time.perf_counter()
    try:
        _train_smrl_stages(task, encoder, dims, epochs, lr, optimizer, temperature, stage_fn, tracker,
                           track_updates, gen, batch_size, history, params, trace, bar)
    finally:
        if bar is not None and bar is not progress:  # a bar passed in is shared with other runs: its owner closes it
            bar.close()
    seconds = time.perf_counter() - start
    for p in encoder.parameters():
        p.requires_grad_(True)
    params["total"] = count_parameters(encoder)
    return MatryoshkaRun("SMRL", encoder, history, dict(history[-1]["recall"]), params, seconds,
                         dict(dims=dims, epochs=tuple(epochs), lr=lr, optimizer=optimizer, batch_size=batch_size,
                              temperature=temperature, seed=seed), message=trace.message)


def _train_smrl_stages(task: RetrievalTask, encoder: MatryoshkaEncoder, dims: tuple[int, ...], epochs: list[int],
                       lr: float, optimizer: str, temperature: float, stage_fn: StageFn,
                       tracker: GradientTracker | None, track_updates: bool, gen: torch.Generator, batch_size: int,
                       history: list[dict[str, Any]], params: dict[str, int], trace: Trace, bar: Any) -> None:
    """SMRL's stages one after another, on one trace; a diverged stage ends the run (recall NaN)."""
    dev = next(encoder.parameters()).device
    for stage, (dim, n_ep) in enumerate(zip(dims, epochs, strict=True), start=1):
        opt = stage_fn(encoder, dim, lr=lr, optimizer=optimizer)
        trainable = _check_stage(encoder, dim, opt)
        params[f"stage {stage}"] = sum(p.numel() for p in trainable)
        if stage == 1:
            inputs = (task.q_train.to(dev), task.d_train.to(dev))

            def loss_of(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
                return info_nce(encoder(q), encoder(d), temperature)
        else:
            # everything before this head is frozen, so its output is a fixed feature: compute it once
            with torch.no_grad():
                inputs = (encoder.embed(task.q_train.to(dev), dims[stage - 2]),
                          encoder.embed(task.d_train.to(dev), dims[stage - 2]))
            head = encoder.modules_for(dim)[0]

            def loss_of(q: torch.Tensor, d: torch.Tensor, head: nn.Module = head) -> torch.Tensor:
                return info_nce(head(q), head(d), temperature)

        ok = _train_stage(encoder, inputs, loss_of, opt, epochs=n_ep, batch_size=batch_size, generator=gen,
                          tracker=tracker if stage == 1 else None, track_updates=track_updates and stage == 1,
                          stage=stage, dim=dim, history=history, trace=trace, bar=bar)
        if not ok:
            history[-1]["recall"] = {d: math.nan for d in encoder.dims}
            return
        # recall at every size after this stage (sizes whose head is still [I | 0] are plain truncations)
        history[-1]["recall"] = evaluate_recall(encoder, task)


# ----------------------------------------------------------------------------------------------------
# the 1/d law
# ----------------------------------------------------------------------------------------------------

def prefix_gradient_scaling(task: RetrievalTask, dims: Sequence[int] = (24, 48, 96, 192), *, n_batches: int = 8,
                            batch_size: int = 128, temperature: float = 0.05, seed: int = 0) -> dict[int, float]:
    """Mean ``|dL_d/dW|`` over the rows ``[0:d]`` that one prefix loss ``L_d`` reaches, for each size d.

    Measured on a fresh (untrained) projection of size ``max(dims)``, averaged over ``n_batches``
    mini-batches. The values fall about as ``1/d``; :func:`loglog_slope` turns them into the exponent.
    """
    if not isinstance(task, RetrievalTask):
        raise ValueError(f"task must be a RetrievalTask, got {type(task).__name__}")
    dims = check_dims(dims)
    n_batches = check_int(n_batches, "n_batches", low=1)
    _, batch_size, temperature = _check_common(task, "sgd", None, batch_size, temperature)
    seed = check_int(seed, "seed", low=0)
    enc = MatryoshkaEncoder(task.n_features, (dims[0],), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    idx_list: list[torch.Tensor] = []
    while len(idx_list) < n_batches:
        idx_list += batches(task.q_train.shape[0], batch_size, gen)
    out = {}
    for d in sorted(dims):
        total = 0.0
        for idx in idx_list[:n_batches]:
            enc.zero_grad(set_to_none=True)
            info_nce(enc(task.q_train[idx])[:, :d], enc(task.d_train[idx])[:, :d], temperature).backward()
            total += float(enc.proj.weight.grad[:d].abs().mean())
        out[d] = total / n_batches
    return out


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (``-1`` means ``y ~ 1/x``)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"xs and ys must be 1-D of the same length >= 2, got shapes {x.shape} and {y.shape}")
    if not (np.all(x > 0) and np.all(y > 0)):
        raise ValueError("xs and ys must be positive to take logarithms")
    if np.ptp(x) == 0:
        raise ValueError("xs must not all be equal: a slope needs at least two different x values")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# ----------------------------------------------------------------------------------------------------
# tables and figures
# ----------------------------------------------------------------------------------------------------

def _recall_of(run: MatryoshkaRun | Mapping[int, float]) -> dict[int, float]:
    if isinstance(run, MatryoshkaRun):
        return dict(run.recall)
    if isinstance(run, Mapping) and all(isinstance(k, int | np.integer) for k in run):
        return {int(k): float(v) for k, v in run.items()}
    raise ValueError(f"expected a MatryoshkaRun or a dict size -> recall, got {type(run).__name__}")


def recall_table(runs: Mapping[str, MatryoshkaRun | Mapping[int, float]]) -> str:
    """A text table: one row per run, recall@1 at every size (largest first), and the parameter count."""
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict label -> MatryoshkaRun (or dict size -> recall)")
    rec = {label: _recall_of(r) for label, r in runs.items()}
    sizes = sorted({d for r in rec.values() for d in r}, reverse=True)
    rows = []
    for label, r in rec.items():
        run = runs[label]
        n = f"{run.params['total']:,}" if isinstance(run, MatryoshkaRun) else ""
        rows.append([str(label), *(f"{r[d]:.3f}" if d in r else "" for d in sizes), n])
    headers = ["method", *(f"R@1 d={d}" for d in sizes), "parameters"]
    return format_table(headers, rows, align="l" + "r" * (len(sizes) + 1), rule=False)


# colours of the seed figure's series: SMRL light blue / orange, MRL yellow / red, variance blue / brown
_SEED_COLORS = {("SMRL", 0): "#56b4e9", ("SMRL", 1): "#e69f00", ("MRL", 0): "#d4c200", ("MRL", 1): "#d62728",
                ("SMRL", "var"): "#1f3b99", ("MRL", "var"): "#8c564b"}


def plot_gradient_figure(runs: Mapping[str, MatryoshkaRun], *, ax: Any = None, stage: int = 1,
                         variance: bool = True, title: str | None = "Gradient size vs. epochs") -> Any:
    """The seed figure: mean ``|g|`` of rows ``[0:96]`` and ``[96:192]`` per epoch, log scale, per run.

    ``runs`` maps a label (e.g. ``"MRL"``, ``"SMRL"``) to a run; solid lines are the two blocks, dashed
    lines the gradient variance over ``[0:192]`` (variance across the mini-batches of each epoch, in
    squared gradient units, on the same log axis as in the seed figure). For SMRL only its stage 1 has
    projection gradients. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if not isinstance(runs, Mapping) or not runs or not all(isinstance(r, MatryoshkaRun) for r in runs.values()):
        raise ValueError("runs must be a non-empty dict label -> MatryoshkaRun")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    fallback = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    c = 0
    for label, run in runs.items():
        full = run.encoder.full
        blocks = (f"[0:{full // 2}]", f"[{full // 2}:{full}]")
        key = "SMRL" if "SMRL" in label.upper() and "CONTROL" not in label.upper() else (
            "MRL" if label.upper().startswith("MRL") else None)
        for i, block in enumerate(blocks):
            y = run.series(block, "mean_abs", stage)
            color = _SEED_COLORS.get((key, i), fallback[c % len(fallback)])
            c += 1
            # the leading block is drawn wider underneath, so that equal blocks (SMRL) stay visible
            ax.plot(np.arange(1, len(y) + 1), y, "-o" if i == 0 else "-s", ms=5 if i == 0 else 3,
                    lw=3.5 if i == 0 else 1.5, alpha=0.75 if i == 0 else 1.0, color=color, zorder=2 + i,
                    label=f"average |g|, rows {block}, {label}")
        if variance:
            v = run.series(f"[0:{full}]", "var", stage)
            color = _SEED_COLORS.get((key, "var"), fallback[c % len(fallback)])
            c += 1
            ax.plot(np.arange(1, len(v) + 1), v, "--", color=color,
                    label=f"gradient variance, rows [0:{full}], {label}")
    from matplotlib.ticker import MaxNLocator

    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("gradient size (log scale)")
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return ax


def plot_recall(runs: Mapping[str, MatryoshkaRun | Mapping[int, float]], *, ax: Any = None,
                title: str | None = "Recall@1 at each prefix size") -> Any:
    """Recall@1 against the embedding size (48, 96, 192) for each run. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt

    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict label -> MatryoshkaRun (or dict size -> recall)")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    markers = "osD^vP*X"
    sizes: set[int] = set()
    for i, (label, run) in enumerate(runs.items()):
        rec = _recall_of(run)
        xs = sorted(rec)
        sizes.update(xs)
        ax.plot(xs, [rec[x] for x in xs], "-" + markers[i % len(markers)], label=str(label))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(sizes))
    ax.set_xticklabels([str(s) for s in sorted(sizes)])
    ax.set_xlabel("embedding size d (prefix)")
    ax.set_ylabel("recall@1")
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_block_ratio(runs: Mapping[str, MatryoshkaRun], *, ax: Any = None,
                     title: str | None = "Leading / trailing block: gradients vs. updates") -> Any:
    """Per epoch, ``[0:96]`` / ``[96:192]`` of the mean ``|g|`` (solid) and, when tracked, of the mean
    ``|delta w|`` of the steps (dashed). Under SGD the two coincide; Adam evens out the updates."""
    import matplotlib.pyplot as plt

    if not isinstance(runs, Mapping) or not runs or not all(isinstance(r, MatryoshkaRun) for r in runs.values()):
        raise ValueError("runs must be a non-empty dict label -> MatryoshkaRun")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, run) in enumerate(runs.items()):
        g = run.block_ratio()
        ax.plot(np.arange(1, len(g) + 1), g, "-", color=colors[i % len(colors)], label=f"gradients, {label}")
        if any("update" in h for h in run.history):
            u = run.block_ratio(updates=True)
            ax.plot(np.arange(1, len(u) + 1), u, "--", color=colors[i % len(colors)], label=f"updates, {label}")
    from matplotlib.ticker import MaxNLocator

    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("ratio [0:96] / [96:192] (log scale)")
    if title:
        ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# ----------------------------------------------------------------------------------------------------
# over seeds: Student t intervals, a scale-free noise measure, the paper's numbers beside ours
# ----------------------------------------------------------------------------------------------------

PAPER_EPOCH0: dict[str, dict[str, float]] = {"MRL": {"[0:96]": 2.717, "[96:192]": 1.093},
                                             "SMRL": {"[0:96]": 1.124, "[96:192]": 1.037}}
"""The average gradients of blocks ``[0:96]`` and ``[96:192]`` at epoch 0, read from the seed figure of SMEC
(arXiv 2510.12474). The text that came with the figure swaps several series; these are the figure's values.
No value of the figure's variance series is kept: which series is which cannot be read reliably."""


def relative_noise(run: MatryoshkaRun, block: str | None = None, stage: int = 1) -> np.ndarray:
    """Per epoch, the scale-free gradient noise of a block: its variance across steps / (mean ``|g|``)^2.

    The gradient variance of :meth:`MatryoshkaRun.series` grows with the square of the gradient's size:
    a method whose gradients are twice as large has four times the variance at the same relative noise.
    Dividing by the squared mean size removes the scale (multiplying every gradient by ``c`` leaves the
    ratio unchanged), so two methods can be compared for noise. Default block: all rows ``[0:full]``.
    """
    if not isinstance(run, MatryoshkaRun):
        raise ValueError(f"run must be a MatryoshkaRun, got {type(run).__name__}")
    block = f"[0:{run.encoder.full}]" if block is None else block
    return run.series(block, "var", stage) / run.series(block, "mean_abs", stage) ** 2


RunsBySeed = Mapping[int, Mapping[str, MatryoshkaRun]]


def train_over_seeds(seeds: Sequence[int], *, optimizer: str = "sgd", epochs: int = 20, head_epochs: int = 20,
                     lr: float | None = None, control: bool = False, n_train: int = 2048, n_test: int = 2048,
                     loss_fn: NestedLoss | None = None, stage_fn: StageFn | None = None,
                     first: Mapping[str, MatryoshkaRun] | None = None, device: str | torch.device = "auto",
                     progress: bool | str = "auto") -> dict[int, dict[str, MatryoshkaRun]]:
    """MRL and SMRL (and with ``control=True`` the parameter-matched control) for every seed in ``seeds``.

    Seed ``s`` draws its own task (:func:`make_retrieval_task` with ``seed=s``), initialisation and batch
    order. ``first`` gives runs already trained for ``seeds[0]`` with the same settings (the notebook's
    own), which are reused instead of trained again; their seed, epochs, optimizer and LR are checked.
    SGD runs record the block statistics (the figure's measures); Adam runs only their recall. All the runs
    share one progress bar. Returns ``{seed: {"MRL": run, "SMRL": run[, "control": run]}}``.
    """
    if isinstance(seeds, int | np.integer) or not isinstance(seeds, Sequence) or len(seeds) < 1:
        raise ValueError(f"seeds must be a non-empty sequence of seeds, got {seeds!r}")
    seeds = [check_int(s, "every seed", low=0) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must not repeat, got {seeds}")
    check_choice(optimizer, "optimizer", tuple(DEFAULT_LR), hint="the optimizers with a default LR for this task")
    lr = DEFAULT_LR[optimizer] if lr is None else check_real(lr, "lr", low=0, low_open=True)
    epochs, head_epochs = check_int(epochs, "epochs", low=1), check_int(head_epochs, "head_epochs", low=1)
    names = ("MRL", "SMRL", "control") if control else ("MRL", "SMRL")
    want = {"MRL": epochs, "SMRL": (epochs, head_epochs, head_epochs), "control": epochs + 2 * head_epochs}
    if first is not None:
        if not isinstance(first, Mapping) or set(first) != set(names):
            raise ValueError(f"first must map {list(names)} to the runs of seed {seeds[0]}, got "
                             f"{list(first) if isinstance(first, Mapping) else first!r}")
        for name, run in first.items():
            cfg = run.config if isinstance(run, MatryoshkaRun) else {}
            got = (cfg.get("seed"), cfg.get("epochs"), cfg.get("optimizer"), cfg.get("lr"))
            if got != (seeds[0], want[name], optimizer, lr):
                raise ValueError(f"first[{name!r}] was trained with seed, epochs, optimizer, lr = {got}, not "
                                 f"{(seeds[0], want[name], optimizer, lr)}: it cannot stand for seed {seeds[0]}")
    track = optimizer == "sgd"
    n_train = check_int(n_train, "n_train", low=2)
    to_train = seeds[1:] if first is not None else seeds
    epochs_per_seed = epochs + sum(want["SMRL"]) + (want["control"] if control else 0)
    bar = progress_bar(progress, len(to_train) * epochs_per_seed * (n_train // 128), f"{len(to_train)} more seeds")
    out: dict[int, dict[str, MatryoshkaRun]] = {}
    try:
        for i, seed in enumerate(seeds):
            if i == 0 and first is not None:
                out[seed] = dict(first)
                continue
            task = make_retrieval_task(n_train=n_train, n_test=n_test, seed=seed)
            common = dict(lr=lr, optimizer=optimizer, seed=seed, device=device, track=track,
                          progress=bar if bar is not None else False)
            runs = {"MRL": train_mrl(task, epochs=epochs, loss_fn=loss_fn, **common),
                    "SMRL": train_smrl(task, epochs=want["SMRL"], stage_fn=stage_fn, **common)}
            if control:
                runs["control"] = train_mrl(task, epochs=want["control"], heads=True,
                                            **{**common, "track": False})
            out[seed] = runs
    finally:
        if bar is not None:
            bar.close()
    return out


def _per_seed(runs: RunsBySeed, name: str, fn: Callable[[MatryoshkaRun], float]) -> np.ndarray:
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict seed -> {name: MatryoshkaRun} (see train_over_seeds)")
    missing = [s for s, r in runs.items() if name not in r]
    if missing:
        raise ValueError(f"no {name!r} run for seeds {missing}")
    return np.asarray([fn(r[name]) for r in runs.values()], dtype=float)


def gradient_measures(runs: RunsBySeed) -> dict[str, np.ndarray]:
    """Per seed, the figure's measures of SGD-trained MRL and SMRL (stage 1), at epoch 1 and over epochs.

    Keys: ``"<method> ratio, epoch 1"`` / ``"<method> ratio, mean"`` (mean ``|g|`` of ``[0:96]`` over
    ``[96:192]``), ``"variance MRL/SMRL, ..."`` (gradient variance over all rows), ``"scale-free MRL/SMRL,
    ..."`` and ``"scale-free <method>, ..."`` (:func:`relative_noise`). "mean" is the mean over epochs of
    the per-epoch value.
    """
    out: dict[str, np.ndarray] = {}
    for method in ("MRL", "SMRL"):
        out[f"{method} ratio, epoch 1"] = _per_seed(runs, method, lambda r: r.block_ratio()[0])
        out[f"{method} ratio, mean"] = _per_seed(runs, method, lambda r: float(np.mean(r.block_ratio())))

    def var(r: MatryoshkaRun) -> np.ndarray:
        return r.series(f"[0:{r.encoder.full}]", "var")

    seeds = list(runs)
    raw = [var(runs[s]["MRL"]) / var(runs[s]["SMRL"]) for s in seeds]
    free = [relative_noise(runs[s]["MRL"]) / relative_noise(runs[s]["SMRL"]) for s in seeds]
    out["variance MRL/SMRL, epoch 1"] = np.asarray([x[0] for x in raw])
    out["variance MRL/SMRL, mean"] = np.asarray([np.mean(x) for x in raw])
    out["scale-free MRL/SMRL, epoch 1"] = np.asarray([x[0] for x in free])
    out["scale-free MRL/SMRL, mean"] = np.asarray([np.mean(x) for x in free])
    for method in ("MRL", "SMRL"):
        out[f"scale-free {method}, epoch 1"] = _per_seed(runs, method, lambda r: relative_noise(r)[0])
        out[f"scale-free {method}, mean"] = _per_seed(runs, method, lambda r: float(np.mean(relative_noise(r))))
    return out


def paper_table(runs: RunsBySeed, confidence: float = 0.95) -> str:
    """The seed figure's numbers (epoch 0, read from the figure) beside ours (SGD, mean [t interval] over seeds).

    Rows: the block ratio of MRL and of SMRL, the variance ratio MRL/SMRL, and the scale-free noise
    (:func:`relative_noise`) of each method and their ratio. The paper's ratios are computed from
    :data:`PAPER_EPOCH0`; the figure's variance values are not read (see there).
    """
    m = gradient_measures(runs)
    n = len(runs)
    paper = {method: PAPER_EPOCH0[method]["[0:96]"] / PAPER_EPOCH0[method]["[96:192]"] for method in PAPER_EPOCH0}
    rows = [
        ["MRL: mean|g| [0:96] / [96:192]", f"{paper['MRL']:.2f}", "MRL ratio"],
        ["SMRL: mean|g| [0:96] / [96:192]", f"{paper['SMRL']:.2f}", "SMRL ratio"],
        ["variance [0:192], MRL / SMRL", "MRL higher, no value", "variance MRL/SMRL"],
        ["scale-free noise var/mean|g|^2, MRL", "-", "scale-free MRL"],
        ["scale-free noise var/mean|g|^2, SMRL", "-", "scale-free SMRL"],
        ["scale-free noise, MRL / SMRL", "-", "scale-free MRL/SMRL"],
    ]
    body = [[label, p, *(mean_interval(m[f"{key}, {when}"], confidence).format() for when in ("epoch 1", "mean"))]
            for label, p, key in rows]
    pct = f"{confidence:.0%}"
    headers = ["measure", "paper, epoch 0 (read from the figure)", f"ours, epoch 1 ({pct} t-interval, {n} seeds)",
               "ours, mean over epochs"]
    return format_table(headers, body, align="lrrr")


def recall_differences(sgd: RunsBySeed, adam: RunsBySeed, dims: Sequence[int] = (96, 48)
                       ) -> dict[str, dict[int, np.ndarray]]:
    """Per seed, paired recall@1 differences at each size: SMRL - MRL (Adam and SGD), control - SMRL and
    control - MRL (Adam). Both dicts must hold the same seeds."""
    if list(sgd) != list(adam):
        raise ValueError(f"sgd and adam must hold the same seeds in the same order, got {list(sgd)} and {list(adam)}")
    pairs = {"SMRL - MRL (Adam)": (adam, "SMRL", "MRL"), "SMRL - MRL (SGD)": (sgd, "SMRL", "MRL"),
             "control - SMRL (Adam)": (adam, "control", "SMRL"), "control - MRL (Adam)": (adam, "control", "MRL")}
    out: dict[str, dict[int, np.ndarray]] = {}
    for label, (runs, a, b) in pairs.items():
        out[label] = {d: np.asarray([r[a].recall[d] - r[b].recall[d] for r in runs.values()]) for d in dims}
    return out


def recall_difference_table(sgd: RunsBySeed, adam: RunsBySeed, dims: Sequence[int] = (96, 48),
                            confidence: float = 0.95) -> str:
    """Paired recall@1 differences (:func:`recall_differences`) as mean [t interval] over seeds, with the
    number of seeds in which the difference is positive."""
    diffs = recall_differences(sgd, adam, dims)
    n = len(sgd)
    rows = [[label, *(f"{mean_interval(v[d], confidence).format('+.3f')}  {int((v[d] > 0).sum())}/{n}" for d in dims)]
            for label, v in diffs.items()]
    headers = ["recall@1 difference", *(f"d={d}: mean [{confidence:.0%} t-interval]  seeds > 0" for d in dims)]
    return format_table(headers, rows, align="l" + "r" * len(dims))
