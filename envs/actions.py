"""The action table: what each discrete action id does (its kind and fractions), the default
table of docs/design.md ("Actions"), and the table as device tensors for masks and fills. A config
(`EnvConfig.actions`) holds it and the env-policy interface (`envs.spec.TradingSpec`) exposes it;
it depends on neither.

An action kind is one `ActionKind` record in ACTION_KINDS: when its actions are valid (the mask,
envs.masking), which of the row's fractions it trades with (the fills, envs.accounts), whether it
counts as a trade (the repeat limit, the trade counters) and why predict says it is masked
(trainers.agent.decision). docs/environment.md, "Adding an action kind".
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class ActionKind:
    """What every action of one kind does; the rows of the action table name it by `name`."""

    name: str
    doc: str
    fraction: str | None
    """the row field it trades with: "buy_fraction" (spends that fraction of equity on shares at the
    next open), "sell_fraction" (sells that fraction of the held shares), None (trades nothing);
    a row of the kind must set it above 0 and the other to 0"""
    allowed: Callable[[Tensor, Tensor], Tensor]
    """(holding (N, 1) bool, can_buy (N, A) bool: the row's buy is affordable and exposure is under
    env.max_exposure) -> (N, A) bool: where actions of this kind are valid"""
    masked_flat: str
    """why predict says an action of this kind is masked for a flat account"""
    masked_holding: str
    """why predict says it is masked for an account holding shares"""

    @property
    def trades(self) -> bool:
        """Whether executing it is a trade (counted by the repeat limit and the trade statistics)."""
        return self.fraction is not None


ACTION_KINDS: tuple[ActionKind, ...] = (
    ActionKind("hold", "nothing", None, lambda holding, can_buy: torch.ones_like(can_buy), "", ""),
    ActionKind("buy", "opens a position from flat", "buy_fraction", lambda holding, can_buy: ~holding & can_buy,
               masked_flat="cash or exposure limit (env.max_exposure)",
               masked_holding="a position is open (buys open one, adds grow it)"),
    ActionKind("sell", "sells a fraction of the held shares", "sell_fraction",
               lambda holding, can_buy: holding.expand_as(can_buy),
               masked_flat="no position to sell (flat)", masked_holding=""),
    ActionKind("add", "buys more of a held position", "buy_fraction", lambda holding, can_buy: holding & can_buy,
               masked_flat="no position to add to (flat)", masked_holding="cash or exposure limit (env.max_exposure)"),
)
"""every action kind; a row's kind is an index into this tuple on the device"""

KINDS = tuple(kind.name for kind in ACTION_KINDS)
KIND = {kind.name: kind for kind in ACTION_KINDS}


@dataclass(frozen=True)
class Action:
    """One row of the action table: what a discrete action id does."""

    name: str
    """upper-case identifier used in logs, tables and tests (e.g. BUY_SMALL)"""
    kind: str
    """the name of one of ACTION_KINDS: hold, buy (from flat), sell (a held position), add (to a held
    position)"""
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
        traded = KIND[self.kind].fraction
        for name in ("buy_fraction", "sell_fraction"):
            if (name == traded) != (getattr(self, name) > 0):
                wanted = f"{traded} > 0 and the other fraction 0" if traded else "both fractions 0"
                raise ValueError(f"{self.name}: a {self.kind} action needs {wanted}, got buy_fraction "
                                 f"{self.buy_fraction}, sell_fraction {self.sell_fraction}")


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
    """long, an index into ACTION_KINDS"""
    trades: Tensor
    """bool: executing the row is a trade (its kind's `trades`)"""
