"""Backtest metrics on host arrays (float64), computed once after an evaluation run.

Conventions: `equity` is the account value marked at each bar's close, starting with the initial
capital before the first decision, shape (T + 1,). Per-bar simple returns are
equity[t + 1] / equity[t] - 1. Ratios are annualised with the bar frequency measured from the
data (bars per calendar year), so daily and hourly data are both treated honestly.
"""
from __future__ import annotations

import math

import numpy as np

SECONDS_PER_YEAR = 365.25 * 24 * 3600


def periods_per_year(timestamps_ns: np.ndarray) -> float:
    """Bars per calendar year, measured from (T,) int64 nanosecond timestamps."""
    if len(timestamps_ns) < 2:
        raise ValueError("need at least two timestamps to measure the bar frequency")
    span_s = (int(timestamps_ns[-1]) - int(timestamps_ns[0])) / 1e9
    if span_s <= 0:
        raise ValueError("timestamps must increase to measure the bar frequency")
    return (len(timestamps_ns) - 1) / (span_s / SECONDS_PER_YEAR)


def max_drawdown(equity: np.ndarray) -> float:
    """Largest peak-to-trough fall of (T + 1,) equity as a positive fraction (0 = never fell)."""
    peaks = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peaks))


def equity_metrics(equity: np.ndarray, bars_per_year: float) -> dict[str, float]:
    """Return, risk and risk-adjusted figures of one (T + 1,) equity curve."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.ndim != 1 or len(equity) < 2:
        raise ValueError(f"equity must be a 1-D series of at least 2 values, got shape {equity.shape}")
    returns = equity[1:] / equity[:-1] - 1.0
    total = equity[-1] / equity[0] - 1.0
    years = len(returns) / bars_per_year
    annualised = (equity[-1] / equity[0]) ** (1.0 / years) - 1.0 if equity[-1] > 0 else -1.0
    std = returns.std(ddof=1) if len(returns) > 1 else 0.0
    sharpe = returns.mean() / std * math.sqrt(bars_per_year) if std > 0 else 0.0
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    sortino = returns.mean() / downside * math.sqrt(bars_per_year) if downside > 0 else 0.0
    mdd = max_drawdown(equity)
    calmar = annualised / mdd if mdd > 0 else 0.0
    return {
        "total_return": float(total),
        "annualised_return": float(annualised),
        "sharpe_annualised": float(sharpe),
        "sortino_annualised": float(sortino),
        "max_drawdown": mdd,
        "calmar": float(calmar),
    }


def trade_metrics(trade_pnls: np.ndarray) -> dict[str, float]:
    """Win rate and profit factor of closed trades' (K,) currency PnLs.

    Profit factor is gross profit / gross loss; it is reported as inf when there were winning
    trades and no losing ones, and 0 when there were no trades.
    """
    pnls = np.asarray(trade_pnls, dtype=np.float64)
    if len(pnls) == 0:
        return {"trades": 0.0, "win_rate": 0.0, "profit_factor": 0.0}
    gross_profit = pnls[pnls > 0].sum()
    gross_loss = -pnls[pnls < 0].sum()
    if gross_loss > 0:
        profit_factor = gross_profit / gross_loss
    else:
        profit_factor = math.inf if gross_profit > 0 else 0.0
    return {
        "trades": float(len(pnls)),
        "win_rate": float(np.mean(pnls > 0)),
        "profit_factor": float(profit_factor),
    }

