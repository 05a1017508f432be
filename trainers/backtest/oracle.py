"""The long-only oracle of a generated market: the strategy that knows the generating process.

It holds (BUY_LARGE from flat) while the next bar's expected return given the bars so far (and the
process's hidden state, such as the current regime) is positive and sells everything otherwise,
trading in a VecTradingEnv with the env's own fills and costs. Its Sharpe is the yardstick of what
the price path lets a long-only agent earn at the env's position size; real bars have no known
process and so no oracle (docs/validation.md#the-oracle-of-a-generated-market).
"""
from __future__ import annotations

import numpy as np
import torch

from envs import Bars, VecTradingEnv
from envs.synthetic import synthetic_market
from envs.bars import periods_per_year
from trainers.backtest.metrics import equity_metrics
from trainers.backtest.simulate import run_episode


def known_expected_return(bars: Bars) -> np.ndarray | None:
    """(T,) E[r[t + 1] | bars <= t] of the default generated market (`envs.synthetic_bars`),
    regenerated from the symbol's name and checked price for price; None when `bars` are anything
    else (a real file, another generator or seed, rescaled prices): no process is known."""
    if bars.source != "synthetic":
        return None
    regenerated, process = synthetic_market(bars.symbol, len(bars))
    if not np.array_equal(regenerated.close, bars.close) or not np.array_equal(regenerated.open, bars.open):
        return None
    return process.expected_return()


def simulate_oracle(env: VecTradingEnv, expected: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One full-split episode of the long-only oracle in every account of `env` (whose symbols are
    the keys of `expected`, each a (T,) expected next-bar return over that symbol's bars);
    `simulate`'s arrays."""
    width = max(len(env.markets[s]) for s in env.symbols)
    table = np.zeros((env.num_envs, width), dtype=bool)  # (N, T_max); bars past a symbol's end never trade
    for s, symbol in enumerate(env.symbols):
        for e in range(env.layout.per_symbol):
            table[env.layout.account(s, e), :len(expected[symbol])] = expected[symbol] > 0
    return hold_while_long(env, table)


def hold_while_long(env: VecTradingEnv, long: np.ndarray) -> dict[str, np.ndarray]:
    """One full-split episode in which account n holds BUY_LARGE from flat while `long[n, t]` (an
    (N, T_max) bool table over its symbol's bars) and sells everything otherwise; a buy the mask
    forbids (cash rules) waits. `simulate`'s arrays."""
    spec = env.trading_spec
    buy, sell, hold = spec.action_id("BUY_LARGE"), spec.action_id("SELL_ALL"), spec.hold_id
    long_table = torch.as_tensor(long, device=env.device)
    rows = torch.arange(env.num_envs, device=env.device)

    def choose(obs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        acc = env.accounts
        up = long_table[rows, acc.t.long()]
        holding = acc.shares > 0
        actions = torch.where(up & ~holding, buy, torch.where(~up & holding, sell, hold))
        valid = mask.gather(1, actions.unsqueeze(1)).squeeze(1)
        return torch.where(valid, actions, hold)

    return run_episode(env, choose)


def oracle_sharpe(env: VecTradingEnv, expected: dict[str, np.ndarray]) -> dict[str, float]:
    """Annualised Sharpe of the long-only oracle over each symbol's decision range of `env`'s
    split (one account per symbol)."""
    sim = simulate_oracle(env, expected)
    out = {}
    for s, symbol in enumerate(env.symbols):
        first, last = env.decision_range[symbol]
        n = env.layout.account(s, 0)
        curve = np.concatenate([[env.config.initial_capital], sim["equity"][:last - first, n]])
        per_year = periods_per_year(env.markets[symbol].timestamps[first:last + 1])
        out[symbol] = equity_metrics(curve, per_year)["sharpe_annualised"]
    return out
