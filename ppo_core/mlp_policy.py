"""A small MLP actor-critic on obs["obs"] (CleanRL's CartPole agent) with optional action masks."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ppo_core.distributions import entropy_of, masked_log_probs


def _layer(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int, out_gain: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [_layer(in_dim, width, math.sqrt(2)), nn.Tanh()]
        in_dim = width
    return nn.Sequential(*layers, _layer(in_dim, out_dim, out_gain))


class MLPActorCritic(nn.Module):
    """Separate tanh MLPs for actor and critic on obs["obs"] (B, F); CleanRL init (orthogonal,
    gain sqrt 2 hidden, 0.01 actor output, 1.0 critic output)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.actor = _mlp(obs_dim, hidden, num_actions, 0.01)
        self.critic = _mlp(obs_dim, hidden, 1, 1.0)

    def act(self, obs: dict[str, Tensor],
            action_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Sampled actions (B,) long, their log-probs (B,) and values (B,)."""
        x = obs["obs"]
        log_probs = masked_log_probs(self.actor(x), action_mask)  # (B, A)
        action = torch.multinomial(log_probs.exp(), 1)  # (B, 1)
        return action.squeeze(-1), log_probs.gather(-1, action).squeeze(-1), self.value(obs)

    def log_probs(self, obs: dict[str, Tensor], action_mask: Tensor | None = None) -> Tensor:
        """float32 log-probabilities (B, A) of every action, differentiable."""
        return masked_log_probs(self.actor(obs["obs"]), action_mask)

    def evaluate(self, obs: dict[str, Tensor], actions: Tensor,
                 action_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Log-probs of `actions` (B,), entropy over valid actions (B,) and values (B,)."""
        x = obs["obs"]
        log_probs = masked_log_probs(self.actor(x), action_mask)  # (B, A)
        return (log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy_of(log_probs),
                self.value(obs))

    def value(self, obs: dict[str, Tensor]) -> Tensor:
        """Critic values (B,)."""
        return self.critic(obs["obs"]).squeeze(-1)
