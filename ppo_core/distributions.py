"""The masked categorical distribution every policy in the project uses."""
from __future__ import annotations

import torch
from torch import Tensor


def masked_logits(logits: Tensor, action_mask: Tensor | None) -> Tensor:
    """float32 logits (B, A) with forbidden actions at float32's most negative value.

    finfo.min rather than -inf: masked probabilities underflow to exactly 0 (so sampling never
    draws them and entropy covers valid actions only) while every log-prob stays finite, so
    p * log p is 0 there, not NaN. Computed in float32 even under autocast. A row with every
    action masked becomes uniform; callers' envs keep at least one action valid.
    """
    logits = logits.float()
    if action_mask is None:
        return logits
    if action_mask.dtype != torch.bool or action_mask.shape != logits.shape:
        raise ValueError(f"action_mask: expected a bool tensor of shape {tuple(logits.shape)} (B, A), "
                         f"got {action_mask.dtype} {tuple(action_mask.shape)}")
    return logits.masked_fill(~action_mask, torch.finfo(logits.dtype).min)


def masked_log_probs(logits: Tensor, action_mask: Tensor | None) -> Tensor:
    """float32 log-probabilities (B, A) of the masked categorical over `logits` (B, A)."""
    return masked_logits(logits, action_mask).log_softmax(dim=-1)


def entropy_of(log_probs: Tensor) -> Tensor:
    """Entropy (B,) of categoricals given by (B, A) masked log-probabilities."""
    return -(log_probs.exp() * log_probs).sum(dim=-1)
