"""Several policies acting as one: the mean of their action probabilities and of their values.

Used to trade a run's best-k checkpoints together (`trainers.evaluate --checkpoint ensemble`):
averaging probabilities smooths the seed-to-seed and checkpoint-to-checkpoint noise of a single
greedy policy without training anything."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ppo_core.distributions import masked_logits


class PolicyEnsemble(nn.Module):
    """Members with the same symbols and observation spec; the interface of MultiSymbolPolicy's
    acting half (forward, act, log_probs)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("PolicyEnsemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.symbols = getattr(members[0], "symbols", None)

    def forward(self, obs: dict[str, Tensor], action_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(masked float32 logits (N, A) = log of the members' mean probabilities, mean values (N,))."""
        probs, values = None, None
        for member in self.members:
            logits, value = member(obs, action_mask)
            p = logits.softmax(dim=-1)
            probs = p if probs is None else probs + p
            values = value if values is None else values + value
        k = len(self.members)
        # a masked action has probability exactly 0 in every member: it stays masked
        return masked_logits((probs / k).clamp_min(1e-30).log(), action_mask), values / k

    def log_probs(self, obs: dict[str, Tensor], action_mask: Tensor | None = None) -> Tensor:
        """float32 (N, A) log of the mean probabilities."""
        return self(obs, action_mask)[0].log_softmax(dim=-1)

    @torch.no_grad()
    def act(self, obs: dict[str, Tensor], action_mask: Tensor | None = None,
            deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(action (N,), its log-probability (N,), value (N,)) under the mean distribution: argmax
        when `deterministic`, else a draw."""
        logits, value = self(obs, action_mask)
        log_probs = logits.log_softmax(dim=-1)
        action = (log_probs.argmax(dim=-1) if deterministic
                  else torch.multinomial(log_probs.exp(), num_samples=1).squeeze(-1))
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), value
