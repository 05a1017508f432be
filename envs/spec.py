"""The env-policy interface in one place: the action table and the observation keys and shapes.

Everything that needs an action count, an action name or an observation shape (the env's masks
and fills, the policy, the rollout buffer, the evaluator, benches and tests) reads it from a
`TradingSpec`, built from an `EnvConfig` by `TradingSpec.from_config` or taken from
`VecTradingEnv.trading_spec`. Adding an action is one row in the table (`envs.actions`): masks
and fills follow its kind and fractions.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from envs.actions import KIND, KINDS, Action, ActionTensors, check_actions
from envs.bars import NUM_SL_PROBS
from envs.config import EnvConfig
from envs.features import CLIP, NUM_REGIME, NUM_TECHNICAL

POSITION_FEATURES = ("entry_vs_close", "position_share", "unrealised_pnl", "hold_time", "side")
PORTFOLIO_FEATURES = ("equity", "exposure", "rolling_sharpe", "rolling_sortino", "realised_pnl",
                      "cash_share", "drawdown", "trade_count")
RULE_FEATURES = ("repeat_streak", "distinct_actions", "steps_since_trade")
"""the state the env's own rules act on, followed by a one-hot of the policy's previous action: an
extension of DESIGN's observation (key "rules") so that the repeat limit and the diversity bonus
depend only on what the policy sees"""


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
            kind=torch.tensor([KINDS.index(a.kind) for a in self.actions], device=device),
            trades=torch.tensor([KIND[a.kind].trades for a in self.actions], device=device))

