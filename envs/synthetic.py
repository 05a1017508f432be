"""Generated markets: the deterministic default for symbols without a file (regimes with momentum,
a learnable edge in the price path), AR(1) markets for the learning bench, and a market with a
planted, observable signal for end-to-end learning tests."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from envs.bars import NUM_SL_PROBS, Bars

# (daily drift, daily volatility) of the regimes: calm uptrend, volatile downtrend, quiet range.
REGIMES = np.array([[0.0006, 0.009], [-0.0009, 0.022], [0.0001, 0.006]])
STAY = 0.985
"""probability of staying in a regime each bar (mean regime length ~67 bars)"""
MOMENTUM = 0.25
"""AR(1) coefficient of the default market's daily returns around their regime's drift: the
learnable edge (docs/data.md#the-generated-market-and-its-edge)"""
SHOCK_CAP = 6.0
"""largest shock of the default market, in standard deviations"""


def symbol_seed(symbol: str) -> int:
    """Stable seed from a symbol name (crc32: unlike hash(), the same in every process)."""
    return zlib.crc32(symbol.encode("utf-8"))


def _business_days(num_bars: int, end: int | None = None) -> np.ndarray:
    """(num_bars,) int64 ns midnights of business days: from 2005-01-03, or the last ones on or
    before the day of `end` (int64 ns)."""
    if end is None:
        days = np.busday_offset("2005-01-03", np.arange(num_bars), roll="forward")
    else:
        last = np.datetime64(int(end), "ns").astype("datetime64[D]")
        days = np.busday_offset(last, np.arange(1 - num_bars, 1), roll="backward")
    return days.astype("datetime64[ns]").astype(np.int64)


def _ohlcv(rng: np.random.Generator, log_returns: np.ndarray, vol: np.ndarray, start_price: float,
           gap_scale: float) -> tuple[np.ndarray, ...]:
    """Bars whose close-to-close log returns are `log_returns` (T,), with a gap at each open."""
    close = start_price * np.exp(np.cumsum(log_returns))
    prev_close = np.r_[start_price, close[:-1]]
    open_ = prev_close * np.exp(gap_scale * vol * rng.standard_normal(len(close)))
    wick = np.abs(rng.standard_normal((2, len(close)))) * 0.5 * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = 1e6 * np.exp(0.3 * rng.standard_normal(len(close))) * (1 + 40 * np.abs(log_returns))
    return open_, high, low, close, volume


@dataclass(frozen=True)
class RegimeMomentum:
    """The hidden state of a `synthetic_bars` market: enough to know E[r[t + 1] | the past].

    Close-to-close log returns r[t] = drift[k[t]] + x[t], where k is a Markov chain over REGIMES
    (stay with probability `stay`, else move to one of the other regimes uniformly) and x is an
    AR(1), x[t] = phi x[t - 1] + vol[k[t]] sqrt(1 - phi^2) e[t], e fat-tailed with unit variance.
    """

    regime: np.ndarray
    """(T,) int regime index of each bar"""
    excess: np.ndarray
    """(T,) x[t] = r[t] - drift[k[t]]"""
    phi: float
    stay: float
    regimes: np.ndarray
    """(K, 2) (daily drift, daily volatility) per regime"""

    def expected_return(self) -> np.ndarray:
        """(T,) E[r[t + 1] | bars <= t, k[t]]: the next bar's expected log return for someone who
        knows the generating process and the current regime (the oracle's information)."""
        drift = self.regimes[:, 0]
        others = (drift.sum() - drift) / (len(drift) - 1)
        next_drift = self.stay * drift + (1.0 - self.stay) * others  # (K,) E[drift[k[t + 1]] | k[t]]
        return next_drift[self.regime] + self.phi * self.excess


def synthetic_market(symbol: str, num_bars: int = 3000, seed: int | None = None, *,
                     end: int | None = None, regimes: np.ndarray = REGIMES, stay: float = STAY,
                     phi: float = MOMENTUM) -> tuple[Bars, RegimeMomentum]:
    """The bars of `synthetic_bars` and the process that generated them. `regimes` ((K, 2) daily
    drift and volatility), `stay` and `phi` make other markets of the same family (the learning
    bench's slow trend: two regimes, no momentum); the defaults are the default market's."""
    rng = np.random.default_rng(symbol_seed(symbol) if seed is None else seed)
    regimes = np.asarray(regimes, dtype=np.float64)
    num_regimes = len(regimes)
    switch = rng.random(num_bars) > stay
    jumps = rng.integers(1, num_regimes, num_bars) * switch  # move to one of the other regimes
    regime = (rng.integers(num_regimes) + np.cumsum(jumps)) % num_regimes
    drift, vol = regimes[regime, 0], regimes[regime, 1]
    # fat tails with unit variance, capped at SHOCK_CAP: with the default regimes the largest log
    # return, below SHOCK_CAP x the highest volatility / (1 - MOMENTUM) = 0.18 (+19 %), stays under
    # the loader's implausible-move threshold (20 %)
    shocks = np.clip(rng.standard_t(5, num_bars) / np.sqrt(5 / 3), -SHOCK_CAP, SHOCK_CAP)
    innovations = vol * shocks * np.sqrt(1.0 - phi ** 2)
    innovations[0] = vol[0] * shocks[0]  # x[0] from the stationary distribution
    excess = np.empty(num_bars)
    previous = 0.0
    for t in range(num_bars):  # a recursion; runs once at generation
        previous = excess[t] = phi * previous + innovations[t]
    log_returns = drift + excess
    start_price = float(np.exp(rng.uniform(np.log(20), np.log(500))))
    open_, high, low, close, volume = _ohlcv(rng, log_returns, vol, start_price, gap_scale=0.2)
    bars = Bars(symbol=symbol, timestamps=_business_days(num_bars, end), open=open_, high=high, low=low,
                close=close, volume=volume, source="synthetic")
    return bars, RegimeMomentum(regime=regime, excess=excess, phi=phi, stay=stay, regimes=regimes)


def synthetic_bars(symbol: str, num_bars: int = 3000, seed: int | None = None, *,
                   end: int | None = None) -> Bars:
    """The default market (T = num_bars daily bars); seed defaults to symbol_seed(symbol).

    Persistent regimes (REGIMES, STAY: calm uptrend, volatile downtrend, quiet range) and momentum:
    daily returns around the regime's drift follow an AR(1) with coefficient MOMENTUM, so the last
    return predicts the next one (`RegimeMomentum`). Each bar opens a small random gap away from the
    previous close (noise: the closes do not depend on it). Bars start on 2005-01-03,
    or end on the business day on or before `end` (int64 ns) when given; the prices do not depend
    on the dates."""
    return synthetic_market(symbol, num_bars, seed, end=end)[0]


def autocorrelated_bars(symbol: str, num_bars: int = 3000, *, phi: float = 0.35, vol: float = 0.01,
                        drift: float = 0.0002, seed: int | None = None) -> Bars:
    """A market whose only edge is in the price path: daily log returns follow an AR(1),
    r[t] = drift + phi (r[t-1] - drift) + vol sqrt(1 - phi^2) N(0, 1) (stationary std `vol`),
    and every bar opens at the previous close. phi > 0 is momentum, phi < 0 mean reversion.

    A decision at bar t fills at open[t + 1] = close[t] and is marked at close[t + 1], so it earns
    exactly r[t + 1], whose expectation given the bars so far is `ar1_expected_return`: the long-only
    oracle holds exactly when that is positive. No column but the prices carries the signal.
    """
    rng = np.random.default_rng(symbol_seed(symbol) if seed is None else seed)
    shocks = vol * np.sqrt(1.0 - phi * phi) * rng.standard_normal(num_bars)
    log_returns = np.empty(num_bars)
    previous = drift
    for t in range(num_bars):  # a recursion; runs once at generation
        previous = log_returns[t] = drift + phi * (previous - drift) + shocks[t]
    close = 100.0 * np.exp(np.cumsum(log_returns))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.standard_normal((2, num_bars))) * 0.3 * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = 1e6 * np.exp(0.3 * rng.standard_normal(num_bars))
    return Bars(symbol=symbol, timestamps=_business_days(num_bars), open=open_, high=high, low=low,
                close=close, volume=volume, source=f"ar1 phi={phi:+.2f}")


def ar1_expected_return(bars: Bars, phi: float, drift: float) -> np.ndarray:
    """(T,) E[r[t + 1] | bars <= t] of an `autocorrelated_bars` market with these parameters."""
    last = np.log(bars.close / bars.open)  # = r[t], since each bar opens at the previous close
    return drift + phi * (last - drift)


def planted_signal_bars(num_bars: int = 2000, seed: int = 0, *, move: float = 0.006,
                        noise: float = 0.004, drift: float = -0.0004, persistence: float = 0.7,
                        signal_noise: float = 0.08, symbol: str = "PLANTED") -> Bars:
    """A market where sl_probs[:, 0] predicts the next bar's open-to-close move (T = num_bars).

    Timing (matches VecTradingEnv's fills): a hidden direction z[t] in {+1, -1} (a Markov chain that
    keeps its sign with probability `persistence`) drives bar t's open-to-close log return
    drift + z[t] * move + noise * N(0, 1). The observation at bar t carries
    sl_probs[t, 0] = clip(0.5 + 0.3 * z[t + 1] + signal_noise * N(0, 1), 0.02, 0.98): a decision at
    t fills at open[t + 1] and is marked at close[t + 1], so it earns exactly the move the signal
    announces. Opens gap from the previous close by pure noise (no signal) and the drift is slightly
    negative, so buy-and-hold loses while the oracle (hold when sl_probs[t, 0] > 0.5) wins.
    sl_probs[:, 1] is uninformative noise and sl_probs[:, 2] is 0.5.
    """
    rng = np.random.default_rng(seed)
    flips = rng.random(num_bars + 1) > persistence
    z = np.where(np.cumsum(flips) % 2 == 0, 1.0, -1.0) * rng.choice([-1.0, 1.0])  # (T + 1,)
    start_price = 100.0
    intrabar = drift + z[:num_bars] * move + noise * rng.standard_normal(num_bars)
    gaps = 0.001 * rng.standard_normal(num_bars)
    close = start_price * np.exp(np.cumsum(gaps + intrabar))
    open_ = close * np.exp(-intrabar)
    wick = np.abs(rng.standard_normal((2, num_bars))) * 0.002
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = 1e6 * np.exp(0.3 * rng.standard_normal(num_bars))
    sl_probs = np.full((num_bars, NUM_SL_PROBS), 0.5)
    sl_probs[:, 0] = np.clip(0.5 + 0.3 * z[1:] + signal_noise * rng.standard_normal(num_bars), 0.02, 0.98)
    sl_probs[:, 1] = rng.uniform(0.3, 0.7, num_bars)
    return Bars(symbol=symbol, timestamps=_business_days(num_bars), open=open_, high=high, low=low,
                close=close, volume=volume, sl_probs=sl_probs, source="planted-signal")
