"""Scoring the signals: classification metrics per split and a cost-aware backtest of trading each
model's probability in the env, then the rich table and pretrain.json.

The backtest reuses the engine (trainers.backtest.simulate.run_episode) the way the oracle does
(trainers.backtest.oracle): one backtest env per split with one account per strategy and symbol;
each account holds BUY_LARGE from flat while its strategy's probability is above 0.5 and sells
everything (SELL_ALL) otherwise, greedy, with the env's own fills, commission and slippage. A model
whose AUC beats 0.5 can still lose money here: its edge may be smaller than the costs of the
trades it asks for, or sit in bars where the moves are small.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from envs import Bars, DataError, EnvConfig, VecTradingEnv
from envs.bars import periods_per_year
from trainers.backtest.oracle import hold_while_long
from trainers.backtest.simulate import account_metrics

SPLIT_NAMES = {"train": "train (walk-forward)", "val": "val", "test": "test"}


def split_env(env_config: EnvConfig, markets: dict[str, Bars], split: str, strategies: int,
              device: torch.device) -> tuple[VecTradingEnv | None, dict[str, str]]:
    """A backtest env of `split` with `strategies` accounts per symbol over the symbols that can
    trade it, and why each other symbol cannot (None when none can)."""
    config = env_config.backtest()
    skipped = {}
    for symbol, bars in markets.items():
        try:
            VecTradingEnv([symbol], 1, config, device, markets={symbol: bars}, split=split, seed=0)
        except DataError as err:
            skipped[symbol] = str(err)
    symbols = [s for s in markets if s not in skipped]
    if not symbols:
        return None, skipped
    return VecTradingEnv(symbols, strategies, config, device, markets={s: markets[s] for s in symbols},
                         split=split, seed=0), skipped


def backtest(env: VecTradingEnv, signals: Sequence[dict[str, np.ndarray]]) -> list[dict[str, dict]]:
    """Trade each of `signals` (strategy -> {symbol: (T,) probability}) in its own account of every
    symbol of `env` (env.envs_per_symbol == len(signals)); per strategy, per symbol the backtest
    metrics (trainers.backtest.simulate.account_metrics)."""
    per_symbol = env.envs_per_symbol
    if per_symbol != len(signals):
        raise ValueError(f"backtest: {len(signals)} signals for {per_symbol} accounts per symbol")
    width = max(len(env.markets[s]) for s in env.symbols)
    table = np.zeros((env.num_envs, width), dtype=bool)  # (N, T_max): hold while True
    for s, symbol in enumerate(env.symbols):
        for e, signal in enumerate(signals):
            table[env.layout.account(s, e), :len(signal[symbol])] = signal[symbol] > 0.5
    sim = hold_while_long(env, table)
    out: list[dict[str, dict]] = [{} for _ in signals]
    for s, symbol in enumerate(env.symbols):
        first, last = env.decision_range[symbol]
        per_year = periods_per_year(env.markets[symbol].timestamps[first:last + 1])
        for e in range(per_symbol):
            metrics, _ = account_metrics(sim, env.layout.account(s, e), last - first,
                                         env.config.initial_capital, per_year)
            out[e][symbol] = metrics
    return out


def summarise_backtest(per_symbol: dict[str, dict]) -> dict[str, object]:
    """Mean Sharpe, return and exposure over the symbols, with each symbol's figures."""
    def mean(key: str) -> float | None:
        values = [m[key] for m in per_symbol.values() if m.get(key) is not None]
        return float(np.mean(values)) if values else None
    return {"sharpe": mean("sharpe_annualised"), "total_return": mean("total_return"),
            "exposure": mean("exposure"), "trades": mean("trades"), "per_symbol": per_symbol}


def _cell(value: object, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return fmt.format(value)


def print_table(payload: dict, console: Console) -> None:
    """One row per model (and baseline) and split: the classification metrics of its causal
    sl_prob values and the backtest of trading them."""
    table = Table(title=f"supervised {payload['target']} models, horizon {payload['horizon']}: "
                        f"{', '.join(payload['symbols'])}", title_justify="left")
    columns = (("bars", "bars", "{:d}"), ("auc", "AUC", "{:.3f}"), ("f1", "F1", "{:.3f}"),
               ("log_loss", "log loss", "{:.4f}"), ("accuracy", "acc", "{:.3f}"),
               ("majority_accuracy", "majority", "{:.3f}"), ("sharpe", "Sharpe/yr", "{:+.2f}"),
               ("total_return", "return", "{:+.2%}"), ("exposure", "exposure", "{:.1%}"),
               ("trades", "trades", "{:.0f}"))
    table.add_column("model")
    table.add_column("split")
    for _, title, _ in columns:
        table.add_column(title, justify="right")
    rows = [(name, entry["splits"]) for name, entry in payload["models"].items()]
    rows += [(name, entry["splits"]) for name, entry in payload["baselines"].items()]
    for index, (name, splits) in enumerate(rows):
        for split, entry in splits.items():
            values = {**entry.get("classification", {}), **{k: v for k, v in entry.get("backtest", {}).items()
                                                            if k != "per_symbol"}}
            table.add_row(name, SPLIT_NAMES[split], *[_cell(values.get(key), fmt) for key, _, fmt in columns],
                          end_section=split == list(splits)[-1] and index < len(rows) - 1)
    console.print(table)
    if len(payload["symbols"]) > 1:  # each symbol's own relation, which pooled figures can hide
        for name, entry in payload["models"].items():
            test = entry["splits"].get("test", {}).get("per_symbol", {})
            if test:
                console.print(f"{name} test AUC per symbol: " + ", ".join(
                    f"{symbol} {_cell(metrics.get('auc'), '{:.3f}')}" for symbol, metrics in test.items()))
    for note in payload["notes"]:
        console.print(f"[yellow]note:[/] {note}")
