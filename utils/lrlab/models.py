"""Models of the course. :class:`MLP` is the tutorial's 3-layer network.

The tutorial describes three layers: the input (10 features), a hidden layer with ReLU, and an output
with a sigmoid. The sigmoid is NOT part of :class:`MLP`: the network returns *logits* (any real
number; ``sigmoid(logit)`` is the probability of class 1) and the loss ``nn.BCEWithLogitsLoss``
applies the sigmoid inside, in a numerically stable way. Apply ``torch.sigmoid`` yourself only when
you want probabilities (:meth:`MLP.predict_proba`); a logit above 0 means probability above 0.5.

imports: args.
"""

from __future__ import annotations

import torch
from torch import nn

from lrlab.args import check_int

__all__ = ["MLP", "count_parameters"]


class MLP(nn.Module):
    """input [N, n_features] -> Linear -> ReLU -> Linear -> logits.

    Args:
        n_features: input width (10 in the tutorial).
        hidden: width of the hidden layer (default 32).
        n_outputs: outputs per row; with 1 (binary classification) the output is squeezed to shape [N]
            so it lines up with a label vector ``y`` of shape [N].
        seed: when given, the initial weights come from this seed (without touching the global random
            generator), so two ``MLP(seed=3)`` start identical. ``None`` uses the global generator.

    The layers are ``self.hidden`` and ``self.output``; their parameters are named ``hidden.weight``,
    ``hidden.bias``, ``output.weight``, ``output.bias`` (handy for per-layer gradient statistics).
    """

    def __init__(
        self, n_features: int = 10, hidden: int = 32, n_outputs: int = 1, *, seed: int | None = None
    ):
        super().__init__()
        self.n_features = check_int(n_features, "n_features", low=1)
        self.hidden_width = check_int(hidden, "hidden", low=1)
        self.n_outputs = check_int(n_outputs, "n_outputs", low=1)
        if seed is not None:
            seed = check_int(seed, "seed", low=0, hint="or None for the global generator")
        if seed is None:
            self._build()
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                self._build()

    def _build(self) -> None:
        self.hidden = nn.Linear(self.n_features, self.hidden_width)
        self.act = nn.ReLU()
        self.output = nn.Linear(self.hidden_width, self.n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: shape [N] when n_outputs == 1, else [N, n_outputs]."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"MLP expects input of shape [N, {self.n_features}], got {tuple(x.shape)}")
        out = self.output(self.act(self.hidden(x)))
        return out.squeeze(-1) if self.n_outputs == 1 else out

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Probability of class 1 (binary) or of each class (softmax), without gradients."""
        logits = self(x)
        return torch.sigmoid(logits) if self.n_outputs == 1 else torch.softmax(logits, dim=-1)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted labels: ``logit > 0`` as 0./1. (binary) or the arg-max class (several outputs)."""
        logits = self(x)
        return (logits > 0).float() if self.n_outputs == 1 else logits.argmax(dim=-1)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, hidden={self.hidden_width}, n_outputs={self.n_outputs}"


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (only those with ``requires_grad`` unless ``trainable_only=False``)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
