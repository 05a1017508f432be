"""Grouped per-symbol MLPs: S independent networks evaluated with one batched matmul per layer."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.init import init_grouped_mlp_

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "gelu": F.gelu,
    "silu": F.silu,
}


class GroupedMLP(nn.Module):
    """`num_groups` MLPs of widths `dims`, group s seeing only its own slice of the input.

    Parameters `weight_i` (S, in, out) and `bias_i` (S, 1, out) per layer i. Forward maps
    (S, B, dims[0]) -> (S, B, dims[-1]) with one `torch.baddbmm` per layer for all groups, so the
    cost is one kernel per layer however many symbols there are. The activation follows every
    layer but the last. Starts with nn.Linear's default init; the policy re-initialises it.
    """

    def __init__(self, num_groups: int, dims: Sequence[int], activation: str = "tanh") -> None:
        super().__init__()
        dims = tuple(dims)
        if num_groups < 1:
            raise ValueError(f"num_groups: must be >= 1, got {num_groups}")
        if len(dims) < 2 or any(d < 1 for d in dims):
            raise ValueError(f"dims: need >= 2 positive widths (in, ..., out), got {dims}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: unknown {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.num_groups = num_groups
        self.dims = dims
        self.activation = activation
        self._act = ACTIVATIONS[activation]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            self.register_parameter(f"weight_{i}", nn.Parameter(torch.empty(num_groups, d_in, d_out)))
            self.register_parameter(f"bias_{i}", nn.Parameter(torch.empty(num_groups, 1, d_out)))
        init_grouped_mlp_(self, "default", hidden_gain=1.0, out_gain=1.0)

    def layers(self) -> list[tuple[Tensor, Tensor]]:
        """(weight (S, in, out), bias (S, 1, out)) of each layer, input to output."""
        return [(getattr(self, f"weight_{i}"), getattr(self, f"bias_{i}")) for i in range(len(self.dims) - 1)]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[0] != self.num_groups or x.shape[2] != self.dims[0]:
            raise ValueError(f"GroupedMLP: input has shape {tuple(x.shape)}, "
                             f"expected (S={self.num_groups}, B, {self.dims[0]})")
        layers = self.layers()
        for i, (weight, bias) in enumerate(layers):
            x = torch.baddbmm(bias, x, weight)  # (S, B, out) = bias + x @ weight, per group
            if i < len(layers) - 1:
                x = self._act(x)
        return x

    def extra_repr(self) -> str:
        return f"num_groups={self.num_groups}, dims={self.dims}, activation={self.activation!r}"
