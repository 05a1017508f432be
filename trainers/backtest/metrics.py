"""Backtest metrics on host arrays (float64), computed once after an evaluation run.

Conventions: `equity` is the account value marked at each bar's close, starting with the initial
capital before the first decision, shape (T + 1,). Per-bar simple returns are
equity[t + 1] / equity[t] - 1. Ratios are annualised with the bar frequency measured from the
data (bars per calendar year), so daily and hourly data are both treated honestly.
"""
from __future__ import annotations

import math

import numpy as np

def sharpe_from_sums(total: np.ndarray, squares: np.ndarray, count: np.ndarray | float,
                     periods_per_year: float = 1.0) -> np.ndarray:
    """The Sharpe ratio, the one formula every report uses: mean / std (ddof 1) of per-period
    simple returns x sqrt(periods_per_year), 0 where the std is 0; from the returns' sums, sums of
    squares and counts (any matching shapes), so split statistics need no re-slicing.

    periods_per_year = 1 gives the per-period Sharpe (the selection statistics count periods);
    the bars' measured frequency (`periods_per_year(timestamps)`) gives the annualised one of the
    backtest tables. Not the env's `sharpe_per_step` episode statistic or its Sharpe reward term,
    which are running per-step figures inside the environment."""
    count = np.asarray(count, dtype=np.float64)
    mean = total / count
    variance = np.maximum((squares - total * mean) / (count - 1.0), 0.0)
    std = np.sqrt(variance)
    ratio = np.divide(mean, std, out=np.zeros_like(mean * std), where=std > 0)
    return ratio * math.sqrt(periods_per_year)


def sharpe(returns: np.ndarray, periods_per_year: float = 1.0) -> np.ndarray:
    """Sharpe ratio (`sharpe_from_sums`) of each column of (T, N) per-period returns, or of one (T,) series."""
    returns = np.asarray(returns, dtype=np.float64)
    return sharpe_from_sums(returns.sum(axis=0), (returns * returns).sum(axis=0), len(returns), periods_per_year)


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
    ratio = float(sharpe(returns, bars_per_year)) if len(returns) > 1 else 0.0
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))
    sortino = returns.mean() / downside * math.sqrt(bars_per_year) if downside > 0 else 0.0
    mdd = max_drawdown(equity)
    calmar = annualised / mdd if mdd > 0 else 0.0
    return {
        "total_return": float(total),
        "annualised_return": float(annualised),
        "sharpe_annualised": ratio,
        "sortino_annualised": float(sortino),
        "max_drawdown": mdd,
        "calmar": float(calmar),
    }
