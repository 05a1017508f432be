"""Init strategies give the statistics they promise; weight_stats reports what is there."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from envs import DEFAULT_SPEC
from models import (STRATEGIES, EncoderConfig, GroupedMLP, MultiSymbolPolicy, PolicyConfig, init_grouped_mlp_,
                    init_linear_, init_matrix_, weight_stats)

A = DEFAULT_SPEC.num_actions
SMALL = EncoderConfig(n_layers=1, d_model=32, n_heads=4, d_ff=64, out_dim=32, dropout=0.0, pool="mean")


def expected_std(strategy: str, fan_in: int, fan_out: int, gain: float) -> float:
    return {
        "xavier_uniform": gain * math.sqrt(2.0 / (fan_in + fan_out)),
        "xavier_normal": gain * math.sqrt(2.0 / (fan_in + fan_out)),
        "he_uniform": gain / math.sqrt(fan_in),
        "he_normal": gain / math.sqrt(fan_in),
        "orthogonal": gain / math.sqrt(fan_in),  # rows of a tall-in matrix have norm `gain`
        "default": 1.0 / math.sqrt(3.0 * fan_in),  # U(+-1/sqrt(fan_in)); gain is ignored
    }[strategy]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategy_statistics(strategy):
    torch.manual_seed(0)
    fan_in, fan_out, gain = 400, 100, 1.7
    weight = torch.empty(8, fan_out, fan_in)
    bias = torch.full((8, fan_out), 5.0)
    init_matrix_(weight, bias, strategy, gain)
    std = expected_std(strategy, fan_in, fan_out, gain)
    assert abs(weight.mean().item()) < 0.02 * std  # 320k draws: the mean's standard error is 0.002 std
    assert math.isclose(weight.std().item(), std, rel_tol=0.03)
    if strategy == "default":
        assert bias.abs().max() <= 1 / math.sqrt(fan_in) and bias.std() > 0
    else:
        assert (bias == 0).all()
    assert not torch.equal(weight[0], weight[1]), "groups must be drawn independently"


@pytest.mark.parametrize("shape", [(16, 16), (8, 20), (20, 8)])
def test_orthogonal_linear(shape):
    torch.manual_seed(1)
    linear = nn.Linear(shape[1], shape[0])
    init_linear_(linear, "orthogonal", gain=2.0)
    w = linear.weight.detach().double()  # (out, in)
    small = min(shape)
    gram = w @ w.T if shape[0] <= shape[1] else w.T @ w  # (small, small)
    torch.testing.assert_close(gram, 4.0 * torch.eye(small, dtype=torch.float64), rtol=0, atol=1e-5)


def test_grouped_orthogonal_slices_are_orthogonal_and_output_gain_applies():
    torch.manual_seed(2)
    mlp = GroupedMLP(5, (24, 24, 6))
    init_grouped_mlp_(mlp, "orthogonal", hidden_gain=math.sqrt(2), out_gain=0.5)
    hidden = mlp.weight_0.detach().double()  # (S, in, out), square
    eye = torch.eye(24, dtype=torch.float64).expand(5, 24, 24)
    torch.testing.assert_close(hidden.transpose(1, 2) @ hidden, 2.0 * eye, rtol=0, atol=1e-5)
    out = mlp.weight_1.detach().double()  # (S, 24, 6): each group's 6 output columns orthonormal x 0.5
    eye = torch.eye(6, dtype=torch.float64).expand(5, 6, 6)
    torch.testing.assert_close(out.transpose(1, 2) @ out, 0.25 * eye, rtol=0, atol=1e-5)


def test_policy_default_init():
    torch.manual_seed(3)
    policy = MultiSymbolPolicy(["A", "B", "C"], PolicyConfig(encoder=SMALL), DEFAULT_SPEC).eval()
    actor_out = policy.actor.weight_2.detach()  # (S, 128, A)
    critic_out = policy.critic.weight_2.detach()  # (S, 128, 1)
    # Orthogonal with gain g: every output column has norm g.
    torch.testing.assert_close(actor_out.norm(dim=1), torch.full((3, A), 0.01), rtol=1e-4, atol=0)
    torch.testing.assert_close(critic_out.norm(dim=1), torch.ones(3, 1), rtol=1e-4, atol=0)
    assert actor_out.std() < 0.002
    for _, bias in policy.actor.layers() + policy.critic.layers():
        assert (bias == 0).all()
    # Small actor gain -> nearly uniform initial policy (maximal entropy).
    g = torch.Generator().manual_seed(0)
    obs = {k: torch.randn(6, *s, generator=g) for k, s in DEFAULT_SPEC.obs_shapes.items()}
    _, entropy, _ = policy.evaluate(obs, torch.zeros(6, dtype=torch.long))
    assert (entropy > math.log(A) - 1e-3).all()
    # The encoder keeps Xavier-uniform whatever the head strategy.
    qkv = policy.encoder.blocks[0].attn.qkv.weight
    assert qkv.abs().max() <= math.sqrt(6.0 / (32 + 96))
    assert (policy.encoder.blocks[0].attn.qkv.bias == 0).all()


def test_unknown_strategy_raises():
    with pytest.raises(ValueError, match="unknown strategy"):
        init_linear_(nn.Linear(3, 3), "lecun_normal")


def test_weight_stats_reports_values_nan_and_inf():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0], [3.0, -4.0]]))
        layer.bias.copy_(torch.tensor([float("nan"), float("inf")]))
    stats = weight_stats(layer)
    assert set(stats) == {"weight", "bias"}
    w = stats["weight"]
    assert w["shape"] == [2, 2] and w["numel"] == 4 and w["nan"] == 0 and w["inf"] == 0
    assert math.isclose(w["mean"], -0.5) and math.isclose(w["max_abs"], 4.0)
    assert math.isclose(w["std"], math.sqrt(((1.5**2) + (1.5**2) + (3.5**2) + (3.5**2)) / 4), rel_tol=1e-6)
    assert stats["bias"]["nan"] == 1 and stats["bias"]["inf"] == 1


def test_weight_stats_of_a_fresh_policy_is_finite():
    policy = MultiSymbolPolicy(["A", "B"], PolicyConfig(encoder=SMALL), DEFAULT_SPEC)
    stats = weight_stats(policy)
    assert set(stats) == {name for name, _ in policy.named_parameters()}
    assert all(s["nan"] == 0 and s["inf"] == 0 and math.isfinite(s["std"]) for s in stats.values())
