"""The typed container for one symbol's bars and the error every data problem raises."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NUM_SL_PROBS = 3


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

    def scaled(self, factor: float) -> Bars:
        """The same market with every price multiplied by `factor` (volume unchanged)."""
        return Bars(symbol=self.symbol, timestamps=self.timestamps.copy(), open=self.open * factor,
                    high=self.high * factor, low=self.low * factor, close=self.close * factor,
                    volume=self.volume.copy(), sl_probs=self.sl_probs.copy(), source=self.source)
