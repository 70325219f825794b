"""Tests of lrlab.models: the tutorial's 3-layer MLP."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lrlab.models import MLP, count_parameters


def test_mlp_outputs_one_logit_per_row():
    model = MLP(10, hidden=32)
    out = model(torch.randn(7, 10))
    assert out.shape == (7,)
    assert out.requires_grad


def test_mlp_is_input_hidden_relu_output():
    model = MLP(10, hidden=16)
    assert isinstance(model.hidden, nn.Linear) and model.hidden.in_features == 10 and model.hidden.out_features == 16
    assert isinstance(model.act, nn.ReLU)
    assert isinstance(model.output, nn.Linear) and model.output.in_features == 16 and model.output.out_features == 1
    names = [n for n, _ in model.named_parameters()]
    assert names == ["hidden.weight", "hidden.bias", "output.weight", "output.bias"]
    x = torch.randn(5, 10)
    manual = model.output(torch.relu(model.hidden(x))).squeeze(-1)
    torch.testing.assert_close(model(x), manual)


def test_no_sigmoid_inside_the_model():
    model = MLP(3, hidden=4, seed=0)
    with torch.no_grad():
        model.output.bias.fill_(50.0)  # a logit far above 1 is only possible without a sigmoid
    assert float(model(torch.zeros(2, 3)).detach().min()) > 1.0


def test_several_outputs_keep_their_dimension():
    assert MLP(4, hidden=8, n_outputs=3)(torch.randn(6, 4)).shape == (6, 3)


def test_seeded_init_is_reproducible_and_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    expected_next = torch.rand(2)
    torch.manual_seed(0)
    a, b, c = MLP(seed=3), MLP(seed=3), MLP(seed=4)
    assert torch.equal(torch.rand(2), expected_next)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.hidden.weight, c.hidden.weight)


def test_predict_and_predict_proba_agree_with_the_logits():
    model = MLP(5, hidden=8, seed=1)
    x = torch.randn(100, 5)
    logits = model(x).detach()
    proba = model.predict_proba(x)
    torch.testing.assert_close(proba, torch.sigmoid(logits))
    assert torch.equal(model.predict(x), (logits > 0).float())
    assert not proba.requires_grad


def test_count_parameters():
    assert count_parameters(MLP(10, hidden=32)) == 10 * 32 + 32 + 32 + 1
    model = MLP(10, hidden=32)
    model.hidden.weight.requires_grad_(False)
    assert count_parameters(model) == 32 + 32 + 1
    assert count_parameters(model, trainable_only=False) == 385
    with pytest.raises(ValueError, match="nn.Module"):
        count_parameters("model")


def test_bad_arguments_and_inputs_are_explained():
    with pytest.raises(ValueError, match="hidden must be an integer >= 1"):
        MLP(10, hidden=0)
    with pytest.raises(ValueError, match="n_features"):
        MLP(2.5)
    with pytest.raises(ValueError, match="seed"):
        MLP(seed=-1)
    with pytest.raises(ValueError, match=r"shape \[N, 10\]"):
        MLP(10)(torch.randn(4, 9))
