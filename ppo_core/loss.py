"""The PPO objective (clipped surrogate, optional clipped value loss, entropy bonus) and diagnostics."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class LossMetrics(NamedTuple):
    """Detached 0-dim diagnostics of one minibatch's loss."""

    policy_loss: Tensor
    """clipped surrogate loss (to minimise)"""
    value_loss: Tensor
    """0.5 x (possibly clipped) squared error of the critic"""
    entropy: Tensor
    """mean policy entropy"""
    approx_kl: Tensor
    """((ratio - 1) - log ratio).mean(), an unbiased low-variance KL(old || new) estimate"""
    clip_fraction: Tensor
    """share of samples whose ratio left [1 - clip, 1 + clip]"""


def ppo_loss(new_logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, new_values: Tensor,
             old_values: Tensor, returns: Tensor, entropy: Tensor, *, clip_coef: float,
             vf_coef: float, ent_coef: float, clip_vloss: bool,
             norm_adv: bool, adv_groups: int = 1) -> tuple[Tensor, LossMetrics]:
    """Total loss (0-dim, to minimise) and metrics; every input is (B,).

    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy. With `norm_adv` the
    advantages are standardised within this minibatch (needs B >= 2), or within each of
    `adv_groups` equal consecutive blocks (a group-major minibatch) when every block has at least
    2 samples (a 1-sample block has no spread: the whole minibatch is standardised instead). With
    `clip_vloss` the value loss is CleanRL's max(unclipped, clipped) with the value change clipped to +-clip_coef.
    Computed in float32 whatever autocast produced.
    """
    inputs = {"old_logprobs": old_logprobs, "advantages": advantages, "new_values": new_values,
              "old_values": old_values, "returns": returns, "entropy": entropy}
    for name, tensor in inputs.items():
        # a (B, 1) value head against (B,) returns would silently broadcast to (B, B)
        if tensor.shape != new_logprobs.shape or tensor.dim() != 1:
            raise ValueError(f"{name}: expected shape {tuple(new_logprobs.shape)} (B,), "
                             f"got {tuple(tensor.shape)}")
    if norm_adv and advantages.numel() < 2:
        raise ValueError("norm_adv needs minibatches of at least 2 samples")
    new_logprobs, new_values, entropy = new_logprobs.float(), new_values.float(), entropy.float()

    logratio = new_logprobs - old_logprobs
    ratio = logratio.exp()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - logratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip_coef).float().mean()

    if norm_adv:
        groups = adv_groups if advantages.numel() >= 2 * adv_groups else 1
        blocks = advantages.view(groups, -1)  # (G, B / G)
        advantages = ((blocks - blocks.mean(1, keepdim=True)) / (blocks.std(1, keepdim=True) + 1e-8)).view(-1)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

    v_loss_unclipped = (new_values - returns) ** 2
    if clip_vloss:
        v_clipped = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
        v_loss = 0.5 * torch.max(v_loss_unclipped, (v_clipped - returns) ** 2).mean()
    else:
        v_loss = 0.5 * v_loss_unclipped.mean()

    entropy_mean = entropy.mean()
    loss = pg_loss + vf_coef * v_loss - ent_coef * entropy_mean
    return loss, LossMetrics(pg_loss.detach(), v_loss.detach(), entropy_mean.detach(), approx_kl,
                             clip_fraction)


def explained_variance(values: Tensor, returns: Tensor) -> Tensor:
    """1 - Var(returns - values) / Var(returns) over all elements, 0-dim, no host sync.

    1 is a perfect critic, 0 no better than a constant, < 0 worse. When the returns have zero
    variance the ratio is undefined and NaN is returned (as CleanRL and SB3 do) instead of +-inf.
    """
    values, returns = values.flatten().float(), returns.flatten().float()
    var_returns = returns.var()
    ratio = (returns - values).var() / torch.where(var_returns > 0, var_returns, 1.0)
    return torch.where(var_returns > 0, 1.0 - ratio, torch.nan)
