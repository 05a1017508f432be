"""The typed container for one symbol's bars, its validation (shared by the parquet loader and the
Yahoo fetcher) and the error every data problem raises."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_SL_PROBS = 3
SECONDS_PER_YEAR = 365.25 * 24 * 3600


def periods_per_year(timestamps_ns: np.ndarray) -> float:
    """Bars per calendar year, measured from (T,) int64 nanosecond timestamps."""
    if len(timestamps_ns) < 2:
        raise ValueError("need at least two timestamps to measure the bar frequency")
    span_s = (int(timestamps_ns[-1]) - int(timestamps_ns[0])) / 1e9
    if span_s <= 0:
        raise ValueError("timestamps must increase to measure the bar frequency")
    return (len(timestamps_ns) - 1) / (span_s / SECONDS_PER_YEAR)



class DataError(ValueError):
    """A market data file is missing, malformed or too short; the message names file, row, problem."""


@dataclass
class Bars:
    """One symbol's bars, oldest first. Arrays are float64 of shape (T,); sl_probs is (T, 3)."""

    symbol: str
    timestamps: np.ndarray
    """(T,) int64 nanoseconds since the epoch (UTC)"""
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    sl_probs: np.ndarray = field(default=None)  # type: ignore[assignment]
    """(T, 3) auxiliary probabilities in [0, 1]; 0.5 where the source has none"""
    source: str = ""
    """file path, or "synthetic" / "planted-signal" for generated markets"""

    def __post_init__(self) -> None:
        if self.sl_probs is None:
            self.sl_probs = np.full((len(self.close), NUM_SL_PROBS), 0.5)
        lengths = {len(a) for a in (self.timestamps, self.open, self.high, self.low, self.close,
                                    self.volume, self.sl_probs)}
        if len(lengths) != 1 or self.sl_probs.shape[1:] != (NUM_SL_PROBS,):
            raise DataError(f"{self.where}: arrays of one Bars must share length T "
                            f"and sl_probs must be (T, {NUM_SL_PROBS})")

    def __len__(self) -> int:
        return len(self.close)

    @property
    def where(self) -> str:
        """How error messages name these bars: the file path, or the symbol and generator."""
        if self.source.endswith(".parquet"):
            return self.source
        return f"{self.symbol} ({self.source or 'in memory'})"

    @property
    def is_synthetic(self) -> bool:
        return not self.source.endswith(".parquet")

    def until(self, last_ns: int) -> Bars:
        """The bars up to and including timestamp `last_ns`: the market as it was known then."""
        n = int(np.searchsorted(self.timestamps, last_ns, side="right"))
        return Bars(symbol=self.symbol, timestamps=self.timestamps[:n], open=self.open[:n], high=self.high[:n],
                    low=self.low[:n], close=self.close[:n], volume=self.volume[:n], sl_probs=self.sl_probs[:n],
                    source=self.source)

    def scaled(self, factor: float) -> Bars:
        """The same market with every price multiplied by `factor` (volume unchanged)."""
        return Bars(symbol=self.symbol, timestamps=self.timestamps.copy(), open=self.open * factor,
                    high=self.high * factor, low=self.low * factor, close=self.close * factor,
                    volume=self.volume.copy(), sl_probs=self.sl_probs.copy(), source=self.source)


def validate_bars(bars: Bars, *, min_bars: int = 2) -> None:
    """Raise DataError on NaN/inf, non-positive prices, high < low, negative volume, sl_probs outside
    [0, 1], unsorted or duplicate timestamps, or fewer than `min_bars` bars."""
    where = bars.where
    if len(bars) < min_bars:
        raise DataError(f"{where}: {len(bars)} bars, too few: need at least {min_bars} "
                        "(lookback + warm-up + one episode)")
    for name in ("open", "high", "low", "close"):
        values = getattr(bars, name)
        _first_bad(where, name, ~np.isfinite(values), "is NaN or inf")
        _first_bad(where, name, values <= 0, "is not a positive price")
    _first_bad(where, "volume", ~np.isfinite(bars.volume), "is NaN or inf")
    _first_bad(where, "volume", bars.volume < 0, "is negative")
    _first_bad(where, "high", bars.high < bars.low, "is below low (high < low)")
    bad_prob = ~np.isfinite(bars.sl_probs) | (bars.sl_probs < 0) | (bars.sl_probs > 1)
    _first_bad(where, "sl_prob", bad_prob.any(axis=1), "is outside [0, 1]")
    steps = np.diff(bars.timestamps)
    _first_bad(where, "timestamp", np.r_[False, steps == 0], "duplicates the previous row")
    _first_bad(where, "timestamp", np.r_[False, steps < 0], "is earlier than the previous row (unsorted)")


def _first_bad(where: str, name: str, bad: np.ndarray, problem: str) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{where}: row {row}: {name} {problem} ({int(bad.sum())} bad rows)")


ROBUST_SIGMAS = 15.0
"""a close-to-close move this many robust standard deviations (1.4826 x the median absolute
deviation of the symbol's log returns) from the median is implausible for the symbol..."""
MIN_IMPLAUSIBLE_MOVE = 0.2
"""...when it is also at least this large (20 %): hourly news moves reach 25 robust sigmas at 1.6 %,
an unadjusted 10:1 split is -90 % and a bad tick rarely less than this"""


def implausible_moves(bars: Bars) -> list[str]:
    """One line per bar whose close moved implausibly for the symbol (ROBUST_SIGMAS and
    MIN_IMPLAUSIBLE_MOVE), naming the file, the row, the timestamp and the move: the signature of
    an unadjusted split or a bad tick."""
    log_returns = np.diff(np.log(bars.close))
    if len(log_returns) < 10:
        return []
    median = np.median(log_returns)
    robust_std = 1.4826 * np.median(np.abs(log_returns - median))
    if robust_std <= 0:
        return []
    sigmas = np.abs(log_returns - median) / robust_std
    moves = np.expm1(log_returns)
    rows = np.flatnonzero((sigmas > ROBUST_SIGMAS) & (np.abs(moves) >= MIN_IMPLAUSIBLE_MOVE)) + 1
    return [f"{bars.where}: row {row} ({np.datetime_as_string(np.datetime64(int(bars.timestamps[row]), 'ns'), unit='s')}) "
            f"closes {moves[row - 1]:+.1%} from the bar before, {sigmas[row - 1]:.0f} robust standard deviations "
            "of this symbol's moves: an unadjusted split or a bad tick?" for row in rows]
