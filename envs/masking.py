"""The mask rules (docs/design.md, "Mask rules") as one pure tensor function of account state: each
action kind's `allowed` rule (envs.actions.ACTION_KINDS) applied to the rows of that kind."""
from __future__ import annotations

import torch
from torch import Tensor

from envs.actions import ACTION_KINDS, ActionTensors


def action_mask(table: ActionTensors, buy_fraction: Tensor, cash: Tensor, shares: Tensor, equity: Tensor,
                price: Tensor, *, max_exposure: float, commission_rate: float) -> Tensor:
    """Valid actions (N, A) bool for accounts with cash, shares, equity and current price (N,), whose
    buys and adds would spend `buy_fraction` (A,) or (N, A) of equity (the table's, or sized by
    volatility targeting: envs.sizing).

    With the default kinds: hold actions are always valid. Flat: buys valid while exposure <
    max_exposure and cash covers the notional plus commission; sells and adds invalid. Holding:
    buys invalid (scaling in is add's job), sells valid, adds valid under the same exposure and
    cash conditions as a buy.
    """
    holding = (shares > 0)[:, None]
    exposure = shares * price / equity
    affordable = cash[:, None] >= buy_fraction * equity[:, None] * (1.0 + commission_rate)  # (N, A)
    can_buy = affordable & (exposure < max_exposure)[:, None]
    mask = torch.zeros_like(can_buy)
    for index, kind in enumerate(ACTION_KINDS):  # a few kinds: elementwise ops over (N, A), no sync
        mask |= (table.kind == index) & kind.allowed(holding, can_buy)
    return mask
