"""The state of N trading accounts as tensors, and the pure functions that fill orders and summarise
episodes. Money is float64 (exact enough to check equity == cash + shares x close to the cent)."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import Tensor

from envs.actions import ActionTensors

_SCALARS_F = ("cash", "shares", "entry", "equity", "peak", "realised", "sum_ret", "sum_ret_sq",
              "max_drawdown", "gross_profit", "gross_loss")
_SCALARS_L = ("t", "steps", "hold_time", "last_action", "run_length", "since_trade", "trades", "sells",
              "wins")


@dataclass
class Accounts:
    """Per-account state; every field is (N,) unless noted. `t` is the current (decision) bar."""

    cash: Tensor
    shares: Tensor
    entry: Tensor
    """average fill price of the held shares (0 when flat)"""
    equity: Tensor
    peak: Tensor
    """highest equity of the episode (drawdown reference)"""
    realised: Tensor
    """realised PnL of the episode, net of sell-side commission (currency)"""
    sum_ret: Tensor
    sum_ret_sq: Tensor
    max_drawdown: Tensor
    gross_profit: Tensor
    gross_loss: Tensor
    t: Tensor
    steps: Tensor
    hold_time: Tensor
    last_action: Tensor
    """the policy's previous action (-1 at episode start)"""
    run_length: Tensor
    since_trade: Tensor
    """steps since the last executed non-hold action (or since the episode start)"""
    trades: Tensor
    sells: Tensor
    wins: Tensor
    returns: Tensor
    """(N, W) ring of per-step equity returns for the rolling Sharpe / Sortino (0 = empty)"""
    action_ring: Tensor
    """(N, D) ring of executed actions in the diversity window (-1 = empty)"""
    action_counts: Tensor
    """(N, A) executed-action counts within the diversity window"""
    seen: Tensor
    """(N, A) bool: actions executed this episode"""

    @classmethod
    def fresh(cls, start: Tensor, initial_capital: float, sharpe_window: int, diversity_window: int,
              num_actions: int) -> Accounts:
        """N new accounts holding only cash, at decision bars `start` (N,) long."""
        n, device = start.shape[0], start.device
        values = {name: torch.zeros(n, dtype=torch.float64, device=device) for name in _SCALARS_F}
        values.update({name: torch.zeros(n, dtype=torch.long, device=device) for name in _SCALARS_L})
        for name in ("cash", "equity", "peak"):
            values[name] = torch.full((n,), initial_capital, dtype=torch.float64, device=device)
        values["t"] = start.clone()
        values["last_action"] = torch.full((n,), -1, dtype=torch.long, device=device)
        return cls(**values,
                   returns=torch.zeros(n, sharpe_window, dtype=torch.float64, device=device),
                   action_ring=torch.full((n, diversity_window), -1, dtype=torch.long, device=device),
                   action_counts=torch.zeros(n, num_actions, dtype=torch.long, device=device),
                   seen=torch.zeros(n, num_actions, dtype=torch.bool, device=device))

    def replace_where(self, done: Tensor, fresh: Accounts) -> None:
        """Rows where `done` (N,) bool take `fresh`'s values (a branch-free auto-reset)."""
        for f in fields(self):
            old, new = getattr(self, f.name), getattr(fresh, f.name)
            cond = done.view(-1, *([1] * (old.dim() - 1)))
            setattr(self, f.name, torch.where(cond, new, old))

    def state_dict(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name).clone() for f in fields(self)}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor], device: torch.device) -> Accounts:
        return cls(**{f.name: state[f.name].to(device) for f in fields(cls)})


class Fill(NamedTuple):
    """Result of executing one action per account at the next bar's open; all (N,)."""

    cash: Tensor
    shares: Tensor
    entry: Tensor
    cost: Tensor
    """commission + slippage (currency, >= 0; 0 exactly when nothing filled)"""
    sold: Tensor
    """shares sold"""
    trade_pnl: Tensor
    """realised PnL of the shares sold, net of sell commission (0 when nothing sold)"""
    notional: Tensor
    """value traded at the open, buys plus sells (currency), for turnover"""


def buy_fill(notional: Tensor, open_price: Tensor, commission_rate: float, slippage_rate: float
             ) -> tuple[Tensor, Tensor, Tensor]:
    """The cost model of a buy of `notional` currency at `open_price`: (shares bought, commission,
    fill price), any shape. The fill price is the open moved up by slippage; commission is charged
    on the notional on top of it, so the cash spent is notional + commission."""
    price = open_price * (1.0 + slippage_rate)
    return notional / price, commission_rate * notional, price


def sell_fill(shares: Tensor, open_price: Tensor, commission_rate: float, slippage_rate: float
              ) -> tuple[Tensor, Tensor, Tensor]:
    """The cost model of selling `shares` at `open_price`: (proceeds before commission, commission,
    fill price), any shape. The fill price is the open moved down by slippage."""
    price = open_price * (1.0 - slippage_rate)
    proceeds = shares * price
    return proceeds, commission_rate * proceeds, price


def fill_orders(acc: Accounts, executed: Tensor, open_price: Tensor, table: ActionTensors, buy_fraction: Tensor,
                commission_rate: float, slippage_rate: float) -> Fill:
    """Execute `executed` (N,) long at `open_price` (N,) with buy_fill / sell_fill. Buys spend
    `buy_fraction` ((A,) or (N, A): the table's, or sized by volatility targeting) of the equity at
    decision time (the mask guarantees the cash), sells sell the action's fraction of the shares."""
    buy_notional = buy_fraction.expand(executed.shape[0], -1).gather(1, executed[:, None])[:, 0] * acc.equity
    bought, buy_commission, buy_price = buy_fill(buy_notional, open_price, commission_rate, slippage_rate)
    sell_fraction = table.sell_fraction[executed]
    sold = sell_fraction * acc.shares
    proceeds, sell_commission, sell_price = sell_fill(sold, open_price, commission_rate, slippage_rate)
    commission = buy_commission + sell_commission
    # the fill moved against the trade by slippage_rate x open per share
    cost = commission + (bought + sold) * open_price * slippage_rate
    cash = acc.cash - buy_notional - commission + proceeds
    shares = torch.where(sell_fraction == 1.0, torch.zeros_like(acc.shares), acc.shares - sold + bought)
    entry = torch.where(bought > 0, (acc.shares * acc.entry + bought * buy_price) / shares.clamp_min(1e-300),
                        torch.where(shares > 0, acc.entry, torch.zeros_like(acc.entry)))
    trade_pnl = sold * (sell_price - acc.entry) - sell_commission
    return Fill(cash=cash, shares=shares, entry=entry, cost=cost, sold=sold, trade_pnl=trade_pnl,
                notional=buy_notional + sold * open_price)


def rolling_ratios(returns: Tensor, steps: Tensor) -> tuple[Tensor, Tensor]:
    """(Sharpe, Sortino) (N,) of the filled part of the (N, W) return ring; 0 before 2 returns."""
    count = steps.clamp(max=returns.shape[1]).to(returns.dtype)
    safe = count.clamp_min(1.0)
    mean = returns.sum(1) / safe
    var = ((returns * returns).sum(1) / safe - mean * mean).clamp_min(0.0)
    downside = (returns.clamp_max(0.0).square().sum(1) / safe).sqrt()
    enough = count >= 2
    sharpe = torch.where(enough & (var > 1e-18), mean / var.clamp_min(1e-18).sqrt(), 0.0)
    sortino = torch.where(enough & (downside > 1e-9), mean / downside.clamp_min(1e-9), 0.0)
    return sharpe, sortino


def episode_stats(acc: Accounts, initial_capital: float) -> dict[str, Tensor]:
    """Per-account statistics of the episode so far (N,) float32: return, Sharpe of the per-step
    equity returns (not annualised), max drawdown, trades, closed trades (sells), win rate and
    profit factor over sells (capped at 100; 0 before the first sell), voluntary trade rate
    (fills per step), distinct actions executed, length."""
    steps = acc.steps.to(torch.float64).clamp_min(1.0)
    mean = acc.sum_ret / steps
    std = (acc.sum_ret_sq / steps - mean * mean).clamp_min(0.0).sqrt()
    sells = acc.sells.to(torch.float64)
    stats = {
        "return": acc.equity / initial_capital - 1.0,
        "sharpe_per_step": torch.where(std > 1e-12, mean / std.clamp_min(1e-12), 0.0),
        "max_drawdown": acc.max_drawdown,
        "trades": acc.trades.to(torch.float64),
        "closed_trades": sells,
        "win_rate": torch.where(sells > 0, acc.wins / sells.clamp_min(1.0), 0.0),
        "profit_factor": torch.where(acc.gross_loss > 0, acc.gross_profit / acc.gross_loss.clamp_min(1e-300),
                                     torch.where(acc.gross_profit > 0, 100.0, 0.0)).clamp_max(100.0),
        "voluntary_trade_rate": acc.trades / steps,
        "unique_actions": acc.seen.sum(1).to(torch.float64),
        "length": acc.steps.to(torch.float64),
    }
    return {name: value.float() for name, value in stats.items()}
