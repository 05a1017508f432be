"""Reward scaling by the running standard deviation of the discounted return.

Trading rewards are tiny (an equity change of 1e-4 of capital per step is typical), so the critic
spends its capacity on the scale and the advantages are mostly critic noise. Dividing rewards by
the running std of each account's discounted return (the rule of gymnasium's NormalizeReward and
SB3's VecNormalize) keeps returns near unit scale without shifting them, so the sign of every
reward and the optimal policy are unchanged. All statistics stay on the device (no host sync).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class RewardNormalizer:
    """Stateful `rewards (N,), dones (N,) -> scaled rewards (N,)`, one call per env step."""

    def __init__(self, num_envs: int, gamma: float, device: torch.device | str, epsilon: float = 1e-8,
                 clip: float = 10.0) -> None:
        self.gamma, self.epsilon, self.clip = gamma, epsilon, clip
        device = torch.device(device)
        self.returns = torch.zeros(num_envs, dtype=torch.float64, device=device)
        # running mean / variance / count of the discounted returns (parallel Welford)
        self.mean = torch.zeros((), dtype=torch.float64, device=device)
        self.var = torch.ones((), dtype=torch.float64, device=device)
        self.count = torch.full((), epsilon, dtype=torch.float64, device=device)

    def __call__(self, rewards: Tensor, dones: Tensor) -> Tensor:
        """Scale one step's rewards (N,); `dones` (N,) bool ends each account's discounted return."""
        self.returns = self.returns * self.gamma + rewards.double()
        self._update(self.returns)
        self.returns = torch.where(dones, 0.0, self.returns)
        scaled = rewards.double() / torch.sqrt(self.var + self.epsilon)
        return scaled.clamp(-self.clip, self.clip).to(rewards.dtype)

    def _update(self, batch: Tensor) -> None:
        batch_mean, batch_var, n = batch.mean(), batch.var(unbiased=False), batch.numel()
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + batch_var * n + delta.square() * self.count * n / total) / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"returns": self.returns.cpu(), "mean": self.mean.cpu(), "var": self.var.cpu(),
                "count": self.count.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.returns.device
        self.returns, self.mean, self.var, self.count = (
            state[k].to(device) for k in ("returns", "mean", "var", "count"))
