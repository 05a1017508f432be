"""Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438) as a reverse scan."""
from __future__ import annotations

import torch
from torch import Tensor


def compute_gae(rewards: Tensor, values: Tensor, dones: Tensor, last_values: Tensor,
                gamma: float, gae_lambda: float) -> tuple[Tensor, Tensor]:
    """Advantages and returns (T, N) from rewards, values, dones (T, N) and last_values (N,).

    dones[t] = 1 means the episode ended after step t (terminated or truncated), so
    delta_t = r_t + gamma * V_{t+1} * (1 - dones[t]) - V_t, with V_T = last_values, and
    A_t = delta_t + gamma * lambda * (1 - dones[t]) * A_{t+1}.

    Truncation is not a terminal state, but V_{t+1} after a done already belongs to the next
    episode, so the collector folds the bootstrap into the reward instead: for truncated,
    not terminated steps r_t += gamma * V(final_obs) (see `collect_rollout`). Here every done
    simply cuts the recursion. returns = advantages + values (the critic's targets).
    """
    T, N = rewards.shape
    for name, tensor in (("values", values), ("dones", dones)):
        if tensor.shape != rewards.shape:
            raise ValueError(f"{name}: expected shape {(T, N)} (T, N), got {tuple(tensor.shape)}")
    if last_values.shape != (N,):
        raise ValueError(f"last_values: expected shape {(N,)} (N,), got {tuple(last_values.shape)}")
    not_done = 1.0 - dones.to(values.dtype)
    next_values = torch.cat([values[1:], last_values.unsqueeze(0)])  # (T, N): V_{t+1}
    deltas = rewards + gamma * next_values * not_done - values
    discounts = gamma * gae_lambda * not_done
    advantages = torch.empty_like(deltas)
    running = torch.zeros_like(last_values)
    for t in reversed(range(T)):
        running = deltas[t] + discounts[t] * running
        advantages[t] = running
    return advantages, advantages + values
