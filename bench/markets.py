"""The generated markets the learning benches train on: AR(1) daily returns whose only edge is in
the price path (momentum and mean reversion), written as parquet files the trainer loads."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from envs import Bars, autocorrelated_bars

DRIFT = 0.0002
"""daily drift of every generated market"""
GENERATED = {"MOMA": 0.35, "REVA": -0.35, "MOMB": 0.25}
"""symbol -> AR(1) coefficient of its daily returns"""


def write_parquet(bars: Bars, path: Path) -> None:
    """`bars` as a parquet file in the loader's schema (timestamp, open, high, low, close, volume)."""
    pq.write_table(pa.table({
        "timestamp": pa.array(bars.timestamps.astype("datetime64[ns]")), "open": bars.open,
        "high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume}), path)


def write_generated(data_dir: Path, num_bars: int) -> None:
    """One `<SYMBOL>.parquet` of `num_bars` daily bars per GENERATED market in `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for symbol, phi in GENERATED.items():
        write_parquet(autocorrelated_bars(symbol, num_bars, phi=phi, drift=DRIFT), data_dir / f"{symbol}.parquet")
