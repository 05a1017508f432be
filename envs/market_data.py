"""One symbol's bars: parquet loading with schema normalisation and validation, and the choice
between a real file and the synthetic default market (splits: envs.splits)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from envs.bars import NUM_SL_PROBS, Bars, DataError, implausible_moves, validate_bars
from envs.synthetic import synthetic_bars
from envs.yahoo import fetch_hint

# Normalised name (lower case, no spaces/underscores) -> canonical column. `close` beats `adj close`
# when both exist: adjusted closes with unadjusted open/high/low would make inconsistent bars.
_ALIASES = {
    "timestamp": ("timestamp", "date", "datetime", "time", "ts"),
    "open": ("open",), "high": ("high",), "low": ("low",),
    "close": ("close", "adjclose"), "volume": ("volume", "vol"),
}


def load_bars(data_dir: str | Path, symbol: str, *, min_bars: int = 2) -> Bars:
    """Read and validate `<data_dir>/<symbol>.parquet` (raises DataError naming file, row, problem)."""
    path = Path(data_dir) / f"{symbol}.parquet"
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{path}: not a readable parquet file ({err})") from err
    columns = _match_columns(path, table.column_names)
    timestamps = _timestamps(path, table.column(columns["timestamp"]))
    prices = {}
    for name in ("open", "high", "low", "close", "volume"):
        prices[name] = _float_column(path, table, columns[name])
    sl_names = sorted(c for c in table.column_names if c.lower().startswith("sl_prob"))
    if len(sl_names) > NUM_SL_PROBS:
        raise DataError(f"{path}: at most {NUM_SL_PROBS} sl_prob_* columns are supported, got {sl_names}")
    sl_probs = np.full((len(timestamps), NUM_SL_PROBS), 0.5)
    for i, name in enumerate(sl_names):
        sl_probs[:, i] = _float_column(path, table, name)
    bars = Bars(symbol=symbol, timestamps=timestamps, **prices, sl_probs=sl_probs, source=str(path))
    validate_bars(bars, min_bars=min_bars)
    return bars


def check_moves(markets: Iterable[Bars], strict: bool) -> None:
    """Warn of implausible moves in real bars (envs.bars.implausible_moves); with `strict` (the
    trainer's --strict-data), a DataError naming every one instead."""
    found = [line for bars in markets for line in implausible_moves(bars)]
    if found and strict:
        raise DataError("; ".join(found) + " (--strict-data / env.strict_data refuses implausible moves; fix or "
                        "adjust the file, e.g. python -m envs.fetch --adjusted --force)")
    for line in found:
        warnings.warn(line + " Pass --strict-data to refuse such files.", stacklevel=3)


def load_market(symbols: Sequence[str], data_dir: str | Path = "data", *,
                min_bars: int = 2, strict: bool = False) -> dict[str, Bars]:
    """Bars per symbol: the file when `<data_dir>/<SYMBOL>.parquet` exists, else a synthetic market
    (announced with a warning; Bars.source == "synthetic") whose daily bars end on the real files'
    last day when there are any, so that the common split dates cut them too. A `data_dir` that is
    not a folder is an error: a typo in it must not silently swap every symbol's real bars for
    generated ones."""
    if not Path(data_dir).is_dir():
        raise DataError(f"data_dir {str(data_dir)!r}: no such folder (from {Path.cwd()}); point "
                        "--data-dir / run.data_dir at the folder of <SYMBOL>.parquet files, or create "
                        "it empty to trade synthetic markets")
    real = {s: load_bars(data_dir, s, min_bars=min_bars) for s in symbols
            if (Path(data_dir) / f"{s}.parquet").is_file()}
    check_moves(real.values(), strict)
    # generated bars end on the real files' last day, so the common split dates cut them too
    end = max((int(b.timestamps[-1]) for b in real.values()), default=None)
    markets = {}
    for symbol in symbols:
        if symbol in real:
            markets[symbol] = real[symbol]
        else:
            markets[symbol] = synthetic_bars(symbol, num_bars=max(3000, min_bars), end=end)
            dated = "" if end is None else ", dated to end on the real files' last day"
            warnings.warn(f"SYNTHETIC MARKET for {symbol}: no file {Path(data_dir) / symbol}.parquet, "
                          f"trading a generated market: regimes with momentum, a learnable edge "
                          f"(seeded by the symbol name{dated})",
                          stacklevel=2)
    synthetic = [s for s in symbols if markets[s].is_synthetic]
    if synthetic:
        warnings.warn(fetch_hint(synthetic, data_dir), stacklevel=2)
    return markets


def _match_columns(path: Path, names: Sequence[str]) -> dict[str, str]:
    normalised = {n.lower().replace(" ", "").replace("_", ""): n for n in names}
    columns = {}
    for canonical, aliases in _ALIASES.items():
        found = [normalised[a] for a in aliases if a in normalised]
        if not found:
            raise DataError(f"{path}: missing column {canonical!r} (accepted names: "
                            f"{', '.join(aliases)}, any case); the file has {list(names)}")
        columns[canonical] = found[0]
    return columns


def _timestamps(path: Path, column: pa.ChunkedArray) -> np.ndarray:
    kind = column.type
    try:
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind) or pa.types.is_string(kind) \
                or pa.types.is_large_string(kind):
            if pa.types.is_date(kind):
                column = pc.cast(column, pa.timestamp("s"))
            elif not pa.types.is_timestamp(kind):
                column = pc.cast(column, pa.timestamp("ns"))
            column = pc.cast(column, pa.timestamp("ns"), safe=False)
            column = pc.cast(column, pa.int64())
        elif not pa.types.is_integer(kind):
            raise DataError(f"{path}: timestamp column has type {kind}, expected a timestamp or date")
    except pa.ArrowInvalid as err:
        raise DataError(f"{path}: timestamp column cannot be read as timestamps ({err})") from err
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: row {row}: timestamp is missing")
    return column.to_numpy().astype(np.int64)


def _float_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)
            or pa.types.is_decimal(column.type)):
        raise DataError(f"{path}: column {name!r} has type {column.type}, expected numbers")
    return column.to_numpy().astype(np.float64) if column.null_count == 0 else \
        pc.fill_null(pc.cast(column, pa.float64()), float("nan")).to_numpy()

