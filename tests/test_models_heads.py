"""GroupedMLP against a plain loop of per-symbol nn.Linear stacks built from the same weights."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from models import ACTIVATIONS, GroupedMLP

TORCH_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def loop_reference(mlp: GroupedMLP) -> list[nn.Sequential]:
    """One nn.Sequential per group, weights copied from the grouped parameters."""
    stacks = []
    for s in range(mlp.num_groups):
        layers: list[nn.Module] = []
        for i, (weight, bias) in enumerate(mlp.layers()):
            linear = nn.Linear(weight.shape[1], weight.shape[2]).double()
            with torch.no_grad():
                linear.weight.copy_(weight[s].T)  # grouped (in, out) -> Linear's (out, in)
                linear.bias.copy_(bias[s, 0])
            layers.append(linear)
            if i < len(mlp.dims) - 2:
                layers.append(TORCH_ACTIVATIONS[mlp.activation]())
        stacks.append(nn.Sequential(*layers))
    return stacks


@settings(max_examples=30, deadline=None)
@given(groups=st.integers(1, 7), batch=st.integers(1, 6),
       dims=st.lists(st.integers(1, 12), min_size=2, max_size=4),
       activation=st.sampled_from(sorted(ACTIVATIONS)), seed=st.integers(0, 2**16))
def test_grouped_equals_loop_of_linear_stacks(groups, batch, dims, activation, seed):
    torch.manual_seed(seed)
    mlp = GroupedMLP(groups, dims, activation).double()
    with torch.no_grad():  # random biases too, so a bias mix-up between groups cannot hide
        for _, bias in mlp.layers():
            bias.normal_()
    x = torch.randn(groups, batch, dims[0], dtype=torch.float64)
    stacks = loop_reference(mlp)
    expected = torch.stack([stacks[s](x[s]) for s in range(groups)])  # (S, B, out)
    torch.testing.assert_close(mlp(x), expected, rtol=1e-12, atol=1e-12)


def test_parameters_are_grouped_per_layer():
    mlp = GroupedMLP(5, (16, 8, 3))
    shapes = {name: tuple(p.shape) for name, p in mlp.named_parameters()}
    assert shapes == {"weight_0": (5, 16, 8), "bias_0": (5, 1, 8), "weight_1": (5, 8, 3), "bias_1": (5, 1, 3)}


def test_groups_do_not_share_gradients():
    torch.manual_seed(0)
    mlp = GroupedMLP(3, (4, 5, 2))
    x = torch.randn(3, 2, 4)
    mlp(x)[1].sum().backward()  # only group 1's output
    for name, param in mlp.named_parameters():
        assert param.grad[1].abs().sum() > 0, name
        assert param.grad[0].abs().sum() == 0 and param.grad[2].abs().sum() == 0, name


def test_bad_input_and_arguments_raise():
    mlp = GroupedMLP(3, (4, 2))
    with pytest.raises(ValueError, match=r"S=3"):
        mlp(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="activation"):
        GroupedMLP(3, (4, 2), activation="swish2")
    with pytest.raises(ValueError, match="dims"):
        GroupedMLP(3, (4,))
