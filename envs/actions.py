"""The action table: what each discrete action id does (its kind and fractions), the default
table of docs/design.md ("Actions"), and the table as device tensors for masks and fills. A config
(`EnvConfig.actions`) holds it and the env-policy interface (`envs.spec.TradingSpec`) exposes it;
it depends on neither.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor

KINDS = ("hold", "buy", "sell", "add")
"""hold: nothing; buy: opens a position from flat; sell: sells a fraction of the held shares;
add: buys more of a held position"""


@dataclass(frozen=True)
class Action:
    """One row of the action table: what a discrete action id does."""

    name: str
    """upper-case identifier used in logs, tables and tests (e.g. BUY_SMALL)"""
    kind: str
    """hold, buy (from flat), sell (a held position) or add (to a held position)"""
    buy_fraction: float = 0.0
    """fraction of equity bought (buy and add)"""
    sell_fraction: float = 0.0
    """fraction of held shares sold (sell); 1.0 closes the position exactly"""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("_", "").isalnum():
            raise ValueError(f"name: must be letters, digits and _, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")
        for name in ("buy_fraction", "sell_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {value!r}")
        buys, sells = self.kind in ("buy", "add"), self.kind == "sell"
        if buys != (self.buy_fraction > 0) or sells != (self.sell_fraction > 0):
            raise ValueError(f"{self.name}: a {self.kind} action needs "
                             + {"hold": "both fractions 0", "sell": "sell_fraction > 0 and buy_fraction 0"}
                             .get(self.kind, "buy_fraction > 0 and sell_fraction 0")
                             + f", got buy_fraction {self.buy_fraction}, sell_fraction {self.sell_fraction}")


DEFAULT_ACTIONS: tuple[Action, ...] = (
    Action("HOLD", "hold"),
    Action("BUY_SMALL", "buy", buy_fraction=0.025),
    Action("BUY_MEDIUM", "buy", buy_fraction=0.06),
    Action("BUY_LARGE", "buy", buy_fraction=0.09),
    Action("SELL_PARTIAL", "sell", sell_fraction=0.5),
    Action("SELL_ALL", "sell", sell_fraction=1.0),
    Action("ADD_TO_POSITION", "add", buy_fraction=0.03),
)
"""the original plan's Discrete(7) action set (docs/design.md, "Actions")"""


def check_actions(actions: tuple[Action, ...]) -> None:
    """Raise ValueError unless the table has >= 2 actions, unique names and a hold action."""
    if len(actions) < 2:
        raise ValueError(f"actions: need at least 2 actions, got {len(actions)}")
    names = [a.name for a in actions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"actions: duplicate names {duplicates}")
    if not any(a.kind == "hold" for a in actions):
        raise ValueError("actions: need a hold action (masked and repeat-limited actions execute as it)")


class ActionTensors(NamedTuple):
    """The action table as (A,) tensors on the env's device, built once per env."""

    buy_fraction: Tensor
    sell_fraction: Tensor
    kind: Tensor
    """long, an index into KINDS"""
