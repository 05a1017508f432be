"""Volatility targeting: how much each buy's fraction of equity is scaled at a bar, so that a position
bought at an action's fraction carries about that fraction of `env.vol_target` in volatility
(docs/environment.md, Sizing). A pure function of one symbol's closes up to the bar: causal.
"""
from __future__ import annotations

import numpy as np

from envs.bars import SECONDS_PER_YEAR, Bars
from envs.config import EnvConfig


def trailing_volatility(close: np.ndarray, timestamps_ns: np.ndarray, window: int) -> np.ndarray:
    """(T,) annualised standard deviation (ddof 1) of the last `window` close-to-close log returns
    ending at each bar (fewer at the start, NaN before two), from (T,) closes and int64 nanosecond
    timestamps. Annualised with the bar frequency measured over bars 0 .. t, so bar t uses nothing
    later than itself."""
    returns = np.diff(np.log(close))                                            # (T - 1,), return into bar t + 1
    cumsum = np.concatenate([[0.0], np.cumsum(returns)])
    cumsq = np.concatenate([[0.0], np.cumsum(returns * returns)])
    end = np.arange(len(close))                                                 # returns 0 .. t - 1 end at bar t
    start = np.maximum(end - window, 0)
    count = (end - start).astype(np.float64)
    total, squares = cumsum[end] - cumsum[start], cumsq[end] - cumsq[start]
    years = (timestamps_ns - timestamps_ns[0]) / 1e9 / SECONDS_PER_YEAR
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = np.maximum((squares - total * total / count) / (count - 1.0), 0.0)
        bars_per_year = end / years                                            # periods_per_year over bars 0 .. t
    return np.where(count >= 2, np.sqrt(variance * bars_per_year), np.nan)


def position_scale(bars: Bars, config: EnvConfig) -> np.ndarray:
    """(T,) factor on every buy and add fraction of `bars`' symbol at each decision bar:
    vol_target / trailing volatility, at most vol_scale_max (also where the volatility is 0), 1
    before the volatility is defined; all ones when vol_target is 0 (off)."""
    if config.vol_target == 0 or len(bars) < 2:
        return np.ones(len(bars))
    volatility = trailing_volatility(bars.close, bars.timestamps, config.vol_window)
    with np.errstate(divide="ignore"):
        scale = np.minimum(config.vol_target / volatility, config.vol_scale_max)
    return np.where(np.isnan(volatility), 1.0, scale)
