"""The env-policy interface in one place: the action table and the observation keys and shapes.

Everything that needs an action count, an action name or an observation shape (the env's masks
and fills, the policy, the rollout buffer, the evaluator, benches and tests) reads it from a
`TradingSpec`, built from an `EnvConfig` by `TradingSpec.from_config` or taken from
`VecTradingEnv.trading_spec`. Adding an action is one row in the table: masks and fills follow
its kind and fractions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

from envs.bars import NUM_SL_PROBS
from envs.features import CLIP, NUM_REGIME, NUM_TECHNICAL

if TYPE_CHECKING:
    from envs.config import EnvConfig

KINDS = ("hold", "buy", "sell", "add")
"""hold: nothing; buy: opens a position from flat; sell: sells a fraction of the held shares;
add: buys more of a held position"""

POSITION_FEATURES = ("entry_vs_close", "position_share", "unrealised_pnl", "hold_time", "side")
PORTFOLIO_FEATURES = ("equity", "exposure", "rolling_sharpe", "rolling_sortino", "realised_pnl",
                      "cash_share", "drawdown", "trade_count")
RULE_FEATURES = ("repeat_streak", "distinct_actions", "steps_since_trade")
"""the state the env's own rules act on, followed by a one-hot of the policy's previous action: an
extension of DESIGN's observation (key "rules") so that the repeat limit and the diversity bonus
depend only on what the policy sees"""


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
"""DESIGN.md section 4's Discrete(7) action set"""


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


@dataclass(frozen=True)
class TradingSpec:
    """Observation keys and per-account shapes, their bounds, and the action table."""

    obs_shapes: dict[str, tuple[int, ...]]
    """key -> per-account shape; 2-D shapes are (bars, features) sequences, 1-D ones vectors"""
    obs_bounds: dict[str, tuple[float, float]]
    """key -> (low, high) of its values"""
    actions: tuple[Action, ...]

    @classmethod
    def from_config(cls, config: EnvConfig) -> TradingSpec:
        """The interface of a VecTradingEnv built with `config` (no data needed)."""
        check_actions(config.actions)
        shapes = {"technical": (config.lookback, NUM_TECHNICAL), "sl_probs": (NUM_SL_PROBS,),
                  "position": (len(POSITION_FEATURES),), "portfolio": (len(PORTFOLIO_FEATURES),),
                  "regime": (NUM_REGIME,), "rules": (len(RULE_FEATURES) + len(config.actions),)}
        bounds = {"technical": (-CLIP, CLIP), "sl_probs": (0.0, 1.0), "position": (-10.0, 10.0),
                  "portfolio": (-10.0, 10.0), "regime": (-CLIP, CLIP), "rules": (0.0, 5.0)}
        return cls(obs_shapes=shapes, obs_bounds=bounds, actions=tuple(config.actions))

    @property
    def num_actions(self) -> int:
        return len(self.actions)

    @property
    def action_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.actions)

    def action_id(self, name: str) -> int:
        """The id of the action called `name` (KeyError listing the names when there is none)."""
        for index, action in enumerate(self.actions):
            if action.name == name:
                return index
        raise KeyError(f"no action {name!r}; the actions are {', '.join(self.action_names)}")

    def ids(self, kind: str) -> list[int]:
        """Ids of every action of `kind`, in table order."""
        return [i for i, a in enumerate(self.actions) if a.kind == kind]

    @property
    def hold_id(self) -> int:
        """The action that masked or repeat-limited actions execute as (the first hold)."""
        return self.ids("hold")[0]

    def tensors(self, device: torch.device, dtype: torch.dtype) -> ActionTensors:
        """The table as device tensors, so a step never copies constants from the host."""
        return ActionTensors(
            buy_fraction=torch.tensor([a.buy_fraction for a in self.actions], dtype=dtype, device=device),
            sell_fraction=torch.tensor([a.sell_fraction for a in self.actions], dtype=dtype, device=device),
            kind=torch.tensor([KINDS.index(a.kind) for a in self.actions], device=device))

