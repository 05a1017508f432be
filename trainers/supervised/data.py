"""Inputs and labels of supervised models, made by the env itself.

Every input is the observation a flat account would get deciding at that bar: `VecTradingEnv.
decision_inputs` on accounts from `reset(options={"at": "last"})` whose bar `t` is set to the bars
wanted. So the features, the lookback window and the regime vector are the env's own (causal,
z-scored with trailing statistics, docs/design.md "Features and no look-ahead"); nothing here
computes a feature. Labels look `horizon` bars ahead of the decision bar: `up` = close[t + h] >
close[t], `log_return` = log(close[t + h] / close[t]).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from envs import VecTradingEnv
from envs.features import WARMUP_BARS
from envs.splits import parse_split_dates

CHUNK = 256
"""bars per symbol observed in one decision_inputs call (the env's accounts per symbol)"""


@dataclass
class Examples:
    """Every bar that has an input (from the first decision bar on), pooled over symbols, M rows."""

    obs: dict[str, Tensor]
    """key -> (M, ...) float32, the env's observation of a flat account at that bar"""
    symbol: np.ndarray
    """(M,) int: index into `symbols`"""
    bar: np.ndarray
    """(M,) int: the bar t within its symbol"""
    stamp: np.ndarray
    """(M,) int64 ns: the timestamp of bar t"""
    up: np.ndarray
    """(M,) float: 1.0 when close[t + h] > close[t], 0.0 otherwise, NaN without a bar t + h"""
    log_return: np.ndarray
    """(M,) float: log(close[t + h] / close[t]), NaN without a bar t + h"""
    labelled: np.ndarray
    """(M,) bool: bar t + h exists"""
    symbols: list[str]
    timestamps: list[np.ndarray]
    """each symbol's (T_s,) int64 ns timestamps, every bar"""

    def __len__(self) -> int:
        return len(self.bar)

    def target(self, kind: str) -> np.ndarray:
        """(M,) the training target of `kind`: "direction" (up) or "return" (log_return)."""
        return self.up if kind == "direction" else self.log_return

    def rows_of(self, symbol: int) -> np.ndarray:
        """Row indices of `symbol`'s bars, oldest first."""
        return np.flatnonzero(self.symbol == symbol)

    def take(self, rows: np.ndarray) -> tuple[dict[str, Tensor], Tensor]:
        """The model inputs of `rows` (index array): the observations as a dict of (B, ...)
        tensors and the rows' symbols (B,) long, on the observations' device."""
        device = next(iter(self.obs.values())).device
        index = torch.as_tensor(rows, dtype=torch.long, device=device)
        symbol = torch.as_tensor(self.symbol[rows], dtype=torch.long, device=device)
        return {key: value.index_select(0, index) for key, value in self.obs.items()}, symbol


def first_decision_bar(lookback: int) -> int:
    """The earliest bar with an input: its lookback window holds only warmed-up features."""
    return WARMUP_BARS + lookback - 1


def observe_bars(env: VecTradingEnv, bars: list[np.ndarray]) -> dict[str, Tensor]:
    """The observations of flat accounts at the given bars of each symbol (`bars[s]`: (K_s,) bar
    indices of env.symbols[s]), stacked symbol by symbol: key -> (sum K_s, ...) on the env's device.
    `env` must have `envs_per_symbol` accounts per symbol (any number); the bars are observed that
    many at a time."""
    per_symbol = env.envs_per_symbol
    env.reset(options={"at": "last"})
    base = env.accounts  # flat accounts with the run's capital; only their bar changes
    parts: list[dict[str, Tensor]] = []
    for s, wanted in enumerate(bars):
        for start in range(0, len(wanted), per_symbol):
            chunk = wanted[start:start + per_symbol]
            t = base.t.clone()
            rows = env.layout.accounts_of(s)
            # every row needs a valid bar: pad with the chunk's last bar, keep only the chunk's rows
            filled = np.full(per_symbol, chunk[-1], dtype=np.int64)
            filled[:len(chunk)] = chunk
            t[rows] = torch.as_tensor(filled, device=t.device)
            obs, _ = env.decision_inputs(replace(base, t=t))
            parts.append({k: v[rows][:len(chunk)].clone() for k, v in obs.items()})
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def build_examples(env: VecTradingEnv, horizon: int) -> Examples:
    """Every bar of every symbol of `env` from the first decision bar on, with its observation and
    its `horizon`-bar labels (NaN where the series ends first)."""
    first = first_decision_bar(env.config.lookback)
    bars_per_symbol, symbol, bar, stamp, up, log_return = [], [], [], [], [], []
    for s, name in enumerate(env.symbols):
        market = env.markets[name]
        t = np.arange(first, len(market))
        bars_per_symbol.append(t)
        ahead = t + horizon
        labelled = ahead < len(market)
        later = market.close[np.minimum(ahead, len(market) - 1)]
        change = np.where(labelled, np.log(later / market.close[t]), np.nan)
        symbol.append(np.full(len(t), s))
        bar.append(t)
        stamp.append(market.timestamps[t])
        up.append(np.where(labelled, (change > 0).astype(float), np.nan))
        log_return.append(change)
    obs = observe_bars(env, bars_per_symbol)
    up_all = np.concatenate(up)
    return Examples(obs=obs, symbol=np.concatenate(symbol), bar=np.concatenate(bar),
                    stamp=np.concatenate(stamp), up=up_all, log_return=np.concatenate(log_return),
                    labelled=~np.isnan(up_all), symbols=list(env.symbols),
                    timestamps=[env.markets[s].timestamps for s in env.symbols])


def split_bounds(env: VecTradingEnv) -> tuple[int, int]:
    """(first validation, first test) timestamps (int64 ns) the env cut its splits at."""
    return parse_split_dates(env.config.split_dates)
