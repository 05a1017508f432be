"""The account-state part of VecTradingEnv's observation (keys position, portfolio and rules), a
pure function of the accounts and the current close. The market part (technical, sl_probs, regime)
is gathered from the env's bar tables."""
from __future__ import annotations

import torch
from torch import Tensor

from envs.accounts import Accounts, rolling_ratios
from envs.actions import ActionTensors
from envs.config import EnvConfig
from envs.spec import PORTFOLIO_FEATURES, POSITION_FEATURES, RULE_FEATURES, TradingSpec


def account_observation(acc: Accounts, close: Tensor, table: ActionTensors, config: EnvConfig,
                        spec: TradingSpec) -> dict[str, Tensor]:
    """{"position": (N, 5), "portfolio": (N, 8), "rules": (N, 3 + A)} float32, clipped to the
    spec's bounds, of accounts `acc` at the current bar's close (N,) float64."""
    initial = config.initial_capital
    holding = acc.shares > 0
    value = acc.shares * close
    sharpe, sortino = rolling_ratios(acc.returns, acc.steps)
    zero = torch.zeros_like(close)
    position = {
        "entry_vs_close": torch.where(holding, acc.entry / close - 1.0, zero),
        "position_share": value / acc.equity,
        "unrealised_pnl": torch.where(holding, (close - acc.entry) * acc.shares / acc.equity, zero),
        "hold_time": (acc.hold_time / 100.0).clamp_max(5.0), "side": holding.to(close.dtype),
    }
    portfolio = {
        "equity": acc.equity / initial, "exposure": value / acc.equity,
        "rolling_sharpe": sharpe.clamp(-5.0, 5.0), "rolling_sortino": sortino.clamp(-5.0, 5.0),
        "realised_pnl": acc.realised / initial, "cash_share": acc.cash / acc.equity,
        "drawdown": 1.0 - acc.equity / acc.peak,
        "trade_count": torch.log1p(acc.trades.to(close.dtype)) / 5.0,
    }
    limit = config.max_consecutive_actions
    counted = (acc.last_action >= 0) & table.trades[acc.last_action.clamp_min(0)]
    rules = {
        "repeat_streak": torch.where(counted, acc.run_length / limit, 0.0),  # > 1: the limit bites
        "distinct_actions": (acc.action_counts > 0).sum(1) / spec.num_actions,
        "steps_since_trade": acc.since_trade / 20.0,
    }
    previous = torch.nn.functional.one_hot(acc.last_action.clamp_min(0), spec.num_actions)
    previous = previous * (acc.last_action >= 0)[:, None]  # no previous action at an episode start
    bounds = spec.obs_bounds
    return {"position": _stack(position, POSITION_FEATURES, bounds["position"]),
            "portfolio": _stack(portfolio, PORTFOLIO_FEATURES, bounds["portfolio"]),
            "rules": torch.cat([_stack(rules, RULE_FEATURES, bounds["rules"]), previous.float()], dim=1)}


def _stack(columns: dict[str, Tensor], names: tuple[str, ...], bounds: tuple[float, float]) -> Tensor:
    """(N, len(names)) float32 of the named (N,) columns in the spec's order, clipped to bounds."""
    return torch.stack([columns[name] for name in names], dim=1).float().clamp(*bounds)
