"""The mask rules (docs/design.md, "Mask rules") as one pure tensor function of account state."""
from __future__ import annotations

from torch import Tensor

from envs.actions import KINDS, ActionTensors

HOLD_KIND, BUY_KIND, SELL_KIND, ADD_KIND = (KINDS.index(k) for k in ("hold", "buy", "sell", "add"))


def action_mask(table: ActionTensors, buy_fraction: Tensor, cash: Tensor, shares: Tensor, equity: Tensor,
                price: Tensor, *, max_exposure: float, commission_rate: float) -> Tensor:
    """Valid actions (N, A) bool for accounts with cash, shares, equity and current price (N,), whose
    buys and adds would spend `buy_fraction` (A,) or (N, A) of equity (the table's, or sized by
    volatility targeting: envs.sizing).

    Hold actions are always valid. Flat: buys valid while exposure < max_exposure and cash covers
    the notional plus commission; sells and adds invalid. Holding: buys invalid (scaling in is
    add's job), sells valid, adds valid under the same exposure and cash conditions as a buy.
    """
    kind = table.kind
    holding = (shares > 0)[:, None]
    exposure = shares * price / equity
    affordable = cash[:, None] >= buy_fraction * equity[:, None] * (1.0 + commission_rate)  # (N, A)
    can_buy = affordable & (exposure < max_exposure)[:, None]
    return ((kind == HOLD_KIND) | ((kind == BUY_KIND) & ~holding & can_buy)
            | ((kind == SELL_KIND) & holding) | ((kind == ADD_KIND) & holding & can_buy))
