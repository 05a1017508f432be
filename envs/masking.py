"""Action ids and the mask rules of DESIGN.md section 4, as pure tensor functions."""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

HOLD, BUY_SMALL, BUY_MEDIUM, BUY_LARGE, SELL_PARTIAL, SELL_ALL, ADD_TO_POSITION = range(7)
ACTION_NAMES = ("HOLD", "BUY_SMALL", "BUY_MEDIUM", "BUY_LARGE", "SELL_PARTIAL", "SELL_ALL",
                "ADD_TO_POSITION")
NUM_ACTIONS = len(ACTION_NAMES)
BUY_FRACTIONS = (0.0, 0.025, 0.06, 0.09, 0.0, 0.0, 0.03)
"""fraction of equity each action buys (BUYs from flat, ADD into a position)"""
SELL_FRACTIONS = (0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 0.0)
"""fraction of held shares each action sells"""


@lru_cache(maxsize=16)
def action_table(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """(buy fractions (7,), sell fractions (7,), kind (7,) long: 0 hold, 1 buy, 2 sell, 3 add) on
    `device`, built once so steps never copy constants from the host."""
    kind = torch.tensor([0, 1, 1, 1, 2, 2, 3], device=device)
    return (torch.tensor(BUY_FRACTIONS, dtype=dtype, device=device),
            torch.tensor(SELL_FRACTIONS, dtype=dtype, device=device), kind)


def action_mask(cash: Tensor, shares: Tensor, equity: Tensor, price: Tensor, *, max_exposure: float,
                commission_rate: float) -> Tensor:
    """Valid actions (N, 7) bool for accounts with cash, shares, equity and current price (N,).

    HOLD is always valid. Flat: BUYs valid while exposure < max_exposure and cash covers the
    notional plus commission; SELLs and ADD invalid. Holding: BUYs invalid (scaling in is ADD's
    job), SELLs valid, ADD valid under the same exposure and cash conditions as a BUY.
    """
    buy_fractions, _, kind = action_table(cash.device, cash.dtype)
    holding = shares > 0
    exposure = shares * price / equity
    affordable = cash[:, None] >= buy_fractions * equity[:, None] * (1.0 + commission_rate)  # (N, 7)
    can_buy = affordable & (exposure < max_exposure)[:, None]
    flat = ~holding[:, None]
    return ((kind == 0) | ((kind == 1) & flat & can_buy) | ((kind == 2) & ~flat)
            | ((kind == 3) & ~flat & can_buy))


def masked_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """Logits (N, 7) with forbidden actions at the dtype's most negative value (probability 0)."""
    return logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
