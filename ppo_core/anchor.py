"""The KL anchor: COEF x KL(initial policy || current policy) added to the PPO loss, its coefficient
decaying linearly to 0 over the first N env steps (the weight-initialisation seed's guard for a
transferred start: the policy may move, but not far from where it began until PPO has found its
footing). The initial policy is a frozen copy taken once the run's starting weights are set."""
from __future__ import annotations

import copy
from typing import Any, Protocol

import torch
from torch import Tensor, nn


class FullDistribution(Protocol):
    """What the anchor needs from a policy beyond ActorCritic: every action's log-probability."""

    def log_probs(self, obs: dict[str, Tensor], action_mask: Tensor | None) -> Tensor:
        """float32 (B, A) log-probabilities of the masked categorical, differentiable."""
        ...


def kl_divergence(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p || q) (B,) of categoricals given by (B, A) log-probabilities; actions p gives no
    probability (masked: exactly 0) contribute 0, never NaN."""
    p = log_p.exp()
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(dim=-1)


class KLAnchor:
    """`coef` x KL(reference || policy), the coefficient falling linearly from `coef` at step 0 to 0
    at `steps` env steps. `capture(policy)` freezes the reference (a deep copy in eval mode)."""

    def __init__(self, coef: float, steps: int) -> None:
        if coef < 0 or steps < 1:
            raise ValueError(f"KL anchor: needs coef >= 0 and steps >= 1, got {coef} and {steps}")
        self.coef, self.steps = coef, steps
        self.reference: nn.Module | None = None

    def capture(self, policy: nn.Module) -> None:
        """Freeze a copy of `policy` as the reference the penalty pulls toward."""
        self.reference = copy.deepcopy(policy).eval().requires_grad_(False)

    def coefficient(self, global_step: int) -> float:
        """coef x max(0, 1 - global_step / steps): exactly 0 from step `steps` on."""
        return self.coef * max(0.0, 1.0 - global_step / self.steps)

    def divergence(self, policy: FullDistribution, obs: dict[str, Tensor], action_mask: Tensor | None) -> Tensor:
        """Mean KL(reference || policy) over the batch, 0-dim, differentiable in `policy` only."""
        if self.reference is None:
            raise RuntimeError("KLAnchor.divergence before capture(): no reference policy")
        with torch.no_grad():
            reference = self.reference.log_probs(obs, action_mask)
        return kl_divergence(reference.float(), policy.log_probs(obs, action_mask).float()).mean()

    def state_dict(self) -> dict[str, Any]:
        return {"reference": self.reference.state_dict() if self.reference is not None else None}

    def load_state_dict(self, state: dict[str, Any], policy: nn.Module) -> None:
        """Restore the reference (shaped like `policy`); a state without one leaves it uncaptured."""
        if state.get("reference") is None:
            return
        self.capture(policy)
        self.reference.load_state_dict(state["reference"])
