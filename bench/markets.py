"""The generated markets the learning benches train on, one per family, each written as a parquet
file the trainer loads. Their only edge is in the price path; each comes with the expected next-bar
return its generating process implies, which the long-only oracle trades on."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from envs import Bars, ar1_expected_return, autocorrelated_bars
from envs.synthetic import symbol_seed, synthetic_market

DRIFT = 0.0002
"""daily drift of the AR(1) markets"""
TREND_REGIMES = np.array([[0.003, 0.01], [-0.003, 0.01]])
"""(daily drift, daily volatility) of the slow-trend market's bull and bear regimes"""
TREND_STAY = 0.99
"""probability that the slow-trend market stays in its regime each bar (mean length 100 bars); a
30-bar moving-average rule earns about 70 % of its oracle's Sharpe over a whole 3000-bar series"""


@dataclass(frozen=True)
class GeneratedMarket:
    """One bench market: its family in words and its generator, (symbol, bar count, random seed) ->
    (bars, (T,) expected next-bar log return given the bars so far and the process's hidden state)."""

    family: str
    generate: Callable[[str, int, int], tuple[Bars, np.ndarray]]


def ar1(phi: float) -> Callable[[str, int, int], tuple[Bars, np.ndarray]]:
    """An AR(1) market (`envs.autocorrelated_bars`): phi > 0 momentum, phi < 0 mean reversion."""
    def generate(symbol: str, num_bars: int, seed: int) -> tuple[Bars, np.ndarray]:
        bars = autocorrelated_bars(symbol, num_bars, phi=phi, drift=DRIFT, seed=seed)
        return bars, ar1_expected_return(bars, phi, DRIFT)
    return generate


def regimes(**process) -> Callable[[str, int, int], tuple[Bars, np.ndarray]]:
    """A Markov-regime market (`envs.synthetic.synthetic_market` with `process`'s regimes, stay and
    phi); its oracle knows the current regime."""
    def generate(symbol: str, num_bars: int, seed: int) -> tuple[Bars, np.ndarray]:
        bars, hidden = synthetic_market(symbol, num_bars, seed, **process)
        return bars, hidden.expected_return()
    return generate


GENERATED = {
    "MOMA": GeneratedMarket("AR(1) momentum, phi +0.35", ar1(0.35)),
    "REVA": GeneratedMarket("AR(1) mean reversion, phi -0.35", ar1(-0.35)),
    "MOMB": GeneratedMarket("AR(1) weak momentum, phi +0.25", ar1(0.25)),
    "TRND": GeneratedMarket("slow trend: bull/bear regimes of ~100 bars, drift +-0.3 %/day, no autocorrelation",
                            regimes(regimes=TREND_REGIMES, stay=TREND_STAY, phi=0.0)),
    "RGMO": GeneratedMarket("the default generated market: three regimes of ~67 bars with momentum phi +0.25",
                            regimes()),
}
"""symbol -> market; one run trains on all of them"""


def write_parquet(bars: Bars, path: Path) -> None:
    """`bars` as a parquet file in the loader's schema (timestamp, open, high, low, close, volume)."""
    pq.write_table(pa.table({
        "timestamp": pa.array(bars.timestamps.astype("datetime64[ns]")), "open": bars.open,
        "high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume}), path)


def realisation_seed(symbol: str, realisation: int) -> int:
    """The random seed of a market's `realisation`: 0 is the one training sees (the symbol's own
    seed, `envs.synthetic.symbol_seed`), 1, 2, ... are fresh draws of the same process on the same
    dates, bars no run has trained, validated or been tested on."""
    base = symbol_seed(symbol)
    return base if realisation == 0 else int(np.random.SeedSequence([base, realisation]).generate_state(1)[0])


def write_generated(data_dir: Path, num_bars: int, realisation: int = 0) -> dict[str, np.ndarray]:
    """One `<SYMBOL>.parquet` of `num_bars` daily bars per GENERATED market in `data_dir`, drawn
    with `realisation_seed`; symbol -> its (T,) expected next-bar return (the oracle's information)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    expected = {}
    for symbol, market in GENERATED.items():
        bars, expected[symbol] = market.generate(symbol, num_bars, realisation_seed(symbol, realisation))
        write_parquet(bars, data_dir / f"{symbol}.parquet")
    return expected
