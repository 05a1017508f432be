"""Weight initialisation strategies and a verifier for initial weight statistics.

Every initialiser in the package goes through `init_matrix_`, so a strategy means the same thing
for an `nn.Linear` weight (out, in) and for each group's slice of a `GroupedMLP` weight (S, in, out).
`gain` follows `torch.nn.init`: it multiplies the unit-variance scale of the strategy
(He = gain sqrt(2), the value the heads use for hidden layers).
"""
from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor, nn

STRATEGIES = ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "orthogonal", "default")
HIDDEN_GAIN = math.sqrt(2.0)


class GroupedLayers(Protocol):
    """What the head initialisers need from a grouped MLP (kept structural to avoid an import cycle)."""

    def layers(self) -> list[tuple[Tensor, Tensor]]: ...


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"init: unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


@torch.no_grad()
def init_matrix_(weight: Tensor, bias: Tensor | None, strategy: str, gain: float = 1.0) -> None:
    """Initialise G matrices in place. weight: (G, out, in), any strides (a transposed view works);
    bias: anything with G * out elements, or None. Biases start at 0 except for "default", which
    reproduces `nn.Linear.reset_parameters` (and ignores `gain`)."""
    check_strategy(strategy)
    groups, fan_out, fan_in = weight.shape
    shape = (groups, fan_out, fan_in)
    # Sample in float32 on the weight's device, then copy (the parameter may be float64 or bf16).
    kw = {"device": weight.device, "dtype": torch.float32}
    if strategy == "xavier_uniform":
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        values = torch.empty(shape, **kw).uniform_(-bound, bound)
    elif strategy == "xavier_normal":
        values = torch.randn(shape, **kw) * (gain * math.sqrt(2.0 / (fan_in + fan_out)))
    elif strategy == "he_uniform":
        bound = gain * math.sqrt(3.0 / fan_in)
        values = torch.empty(shape, **kw).uniform_(-bound, bound)
    elif strategy == "he_normal":
        values = torch.randn(shape, **kw) * (gain / math.sqrt(fan_in))
    elif strategy == "orthogonal":
        values = gain * _orthogonal(shape, **kw)
    else:  # "default": nn.Linear's kaiming_uniform(a=sqrt(5)) reduces to U(+-1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(fan_in)
        values = torch.empty(shape, **kw).uniform_(-bound, bound)
    weight.copy_(values)
    if bias is not None:
        if strategy == "default":
            bias.uniform_(-1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in))
        else:
            bias.zero_()


def _orthogonal(shape: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> Tensor:
    """G (semi-)orthogonal matrices at once, the batched form of `nn.init.orthogonal_`."""
    groups, rows, cols = shape
    flat = torch.randn(shape, device=device, dtype=dtype)
    if rows < cols:
        flat = flat.transpose(1, 2)  # (G, cols, rows): QR needs tall matrices
    q, r = torch.linalg.qr(flat)
    # Fix the sign ambiguity of QR so the result is uniform over orthogonal matrices.
    q = q * torch.diagonal(r, dim1=-2, dim2=-1).sign().unsqueeze(-2)
    return q.transpose(1, 2) if rows < cols else q


def init_linear_(linear: nn.Linear, strategy: str, gain: float = 1.0) -> None:
    """Initialise one nn.Linear (weight (out, in) seen as a single group)."""
    init_matrix_(linear.weight.unsqueeze(0), linear.bias, strategy, gain)


def init_grouped_mlp_(mlp: GroupedLayers, strategy: str, hidden_gain: float, out_gain: float) -> None:
    """Initialise every group's (in, out) slice of every layer; the last layer gets `out_gain`."""
    layers = mlp.layers()
    for i, (weight, bias) in enumerate(layers):
        gain = out_gain if i == len(layers) - 1 else hidden_gain
        init_matrix_(weight.transpose(1, 2), bias, strategy, gain)  # (S, out, in) view


def init_encoder_(encoder: nn.Module, strategy: str = "xavier_uniform", gain: float = 1.0) -> None:
    """Every Linear in `encoder` with `strategy`; LayerNorms back to identity (weight 1, bias 0)."""
    for module in encoder.modules():
        if isinstance(module, nn.Linear):
            init_linear_(module, strategy, gain)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def init_actor_(actor: GroupedLayers, strategy: str = "orthogonal", hidden_gain: float = HIDDEN_GAIN,
                out_gain: float = 0.01) -> None:
    """Actor heads: a small output gain keeps the initial policy near uniform (large entropy)."""
    init_grouped_mlp_(actor, strategy, hidden_gain, out_gain)


def init_critic_(critic: GroupedLayers, strategy: str = "orthogonal", hidden_gain: float = HIDDEN_GAIN,
                 out_gain: float = 1.0) -> None:
    """Critic heads: output gain 1 so initial values have the scale of the returns' normalised units."""
    init_grouped_mlp_(critic, strategy, hidden_gain, out_gain)


@torch.no_grad()
def weight_stats(module: nn.Module) -> dict[str, dict[str, float | int | list[int]]]:
    """Per-parameter statistics: shape, numel, mean, std, max_abs (over finite entries), nan, inf.

    One host read for the whole module (a CPU-GPU sync point): call it at log time, not per step.
    """
    names, rows, shapes = [], [], []
    for name, param in module.named_parameters():
        values = param.detach().float().reshape(-1)
        finite = torch.isfinite(values)
        count = finite.sum().clamp(min=1)
        clean = torch.where(finite, values, torch.zeros_like(values))
        mean = clean.sum() / count
        std = (torch.where(finite, values - mean, torch.zeros_like(values)).square().sum() / count).sqrt()
        rows.append(torch.stack([mean, std, clean.abs().max(), values.isnan().sum().float(),
                                 values.isinf().sum().float()]))
        names.append(name)
        shapes.append(list(param.shape))
    if not rows:
        return {}
    table = torch.stack(rows).cpu().tolist()  # the one sync point
    return {
        name: {"shape": shape, "numel": math.prod(shape), "mean": row[0], "std": row[1],
               "max_abs": row[2], "nan": int(row[3]), "inf": int(row[4])}
        for name, shape, row in zip(names, shapes, table)
    }
