"""Real bars from Yahoo Finance, the library behind `python -m envs.fetch` (trainers' --fetch uses
it too): a checked request, yfinance's answer converted to the bundled files' schema and checked by
the loader's own validation, atomic writes, and the hint that tells a user how to fetch.

yfinance is an optional extra (`pip install -e ".[data]"`), imported only inside `download`; tests
put a stand-in `yfinance` module answering a recorded frame in its place, so they need neither the
package nor a network.
"""
from __future__ import annotations

import importlib.util
import io
import logging
import re
import shlex
import warnings
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from envs.bars import Bars, DataError, validate_bars
from ppo_core.files import atomic_write_bytes

if TYPE_CHECKING:
    from rich.console import Console

DEFAULT_START = date(2005, 1, 1)
INSTALL = 'pip install -e ".[data]"'
HISTORY_DAYS = {"1d": None, "1h": 730}
"""the intervals offered and how many days back Yahoo serves them (None: the whole history)"""
_COLUMNS = ("open", "high", "low", "close", "volume")
# yfinance's logged reasons that mean the request never reached Yahoo
_NETWORK = re.compile(r"resolve host|DNSError|ConnectionError|Failed to connect|timed? ?out|SSL", re.I)


class FetchError(RuntimeError):
    """One symbol could not be fetched; the message starts with the symbol and says why."""


class ExtraMissing(FetchError):
    """yfinance is not installed; the message says how to install it."""


@dataclass(frozen=True)
class FetchRequest:
    """What to ask Yahoo for, the same for every symbol of one fetch."""

    start: date
    """first calendar day, inclusive"""
    end: date | None = None
    """last calendar day, exclusive (yfinance's convention); None: up to now"""
    interval: str = "1d"
    """bar length, a key of HISTORY_DAYS"""
    adjusted: bool = True
    """OHLC adjusted for splits and dividends (yfinance auto_adjust); False: Yahoo's traded prices"""

    @property
    def span(self) -> str:
        """The requested days as `start .. end` for messages."""
        return f"{self.start} .. {self.end or 'now'}"


@dataclass(frozen=True)
class FetchResult:
    """What fetching one symbol did."""

    symbol: str
    path: Path
    status: Literal["written", "kept", "failed"]
    message: str
    """the line shown to the user: bars and span written, or why nothing was"""


def make_request(start: date | None = None, end: date | None = None, interval: str = "1d",
                 adjusted: bool = True, today: date | None = None) -> FetchRequest:
    """A checked FetchRequest; ValueError when the range is empty or beyond Yahoo's history limit
    for the interval. `start=None` means 2005-01-01, or the earliest day an intraday interval allows."""
    if interval not in HISTORY_DAYS:
        raise ValueError(f"--interval {interval!r}: not offered; choose one of {', '.join(HISTORY_DAYS)}")
    today = today or date.today()
    limit = HISTORY_DAYS[interval]
    # one day inside the limit: Yahoo counts it back from the moment of the request
    earliest = today - timedelta(days=limit - 1) if limit else None
    start = start or earliest or DEFAULT_START
    if earliest and start < earliest:
        raise ValueError(f"--interval {interval}: Yahoo Finance serves {interval} bars for the last {limit} "
                         f"days only (Yahoo's limit), so --start {start} is too early; the earliest is "
                         f"{earliest} (leave --start out to get it), or use --interval 1d for the whole "
                         "history")
    if end is not None and end <= start:
        raise ValueError(f"--end {end} is not after --start {start} (--end is exclusive)")
    if start > today:
        raise ValueError(f"--start {start} is in the future")
    return FetchRequest(start=start, end=end, interval=interval, adjusted=adjusted)


def yfinance_installed() -> bool:
    """Whether the optional yfinance is importable (without importing it)."""
    return importlib.util.find_spec("yfinance") is not None


def fetch_command(symbols: Sequence[str], data_dir: str | Path = "data") -> str:
    """The shell command that fetches `symbols` into `data_dir`."""
    words = ["python", "-m", "envs.fetch", *symbols]
    if Path(data_dir) != Path("data"):
        words += ["--data-dir", str(data_dir)]
    return " ".join(shlex.quote(w) for w in words)


def fetch_hint(symbols: Sequence[str], data_dir: str | Path = "data") -> str:
    """How to get real bars for `symbols`, with the install step when the extra is missing."""
    command = fetch_command(symbols, data_dir)
    if yfinance_installed():
        return f"fetch real bars for {', '.join(symbols)} with: {command}"
    return f"fetch real bars for {', '.join(symbols)} with: {INSTALL} (adds yfinance), then {command}"


def download(symbol: str, request: FetchRequest) -> Any:
    """yfinance's answer for one symbol: a pandas DataFrame with (Price, Ticker) columns and a
    timezone-aware index. Raises ExtraMissing without yfinance, FetchError with Yahoo's reason
    when the answer is empty or the call fails."""
    try:
        import yfinance as yf
    except ImportError as err:
        raise ExtraMissing(f"fetching real bars needs yfinance, an optional extra: {INSTALL}") from err
    reasons = _Reasons()
    logger = logging.getLogger("yfinance")
    logger.addHandler(reasons)  # yfinance logs failures instead of raising them
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # yfinance's own pandas deprecations; nothing a user can act on
            frame = yf.download(symbol, start=request.start.isoformat(),
                                end=request.end.isoformat() if request.end else None,
                                interval=request.interval, auto_adjust=request.adjusted, actions=False,
                                ignore_tz=False, progress=False, threads=False)
    except Exception as err:  # a third-party network call: whatever it raises fails this symbol only
        raise FetchError(f"{symbol}: {_explain([f'{type(err).__name__}: {err}'])}") from err
    finally:
        logger.removeHandler(reasons)
    if (frame is None or len(frame) == 0) and reasons.messages:
        raise FetchError(f"{symbol}: {_explain(reasons.messages)}")
    return frame


def bars_table(frame: Any, symbol: str, request: FetchRequest) -> pa.Table:
    """yfinance's frame as the canonical table (`timestamp` timestamp[us, UTC], open..volume
    float64, oldest first) after the loader's checks; FetchError naming the symbol otherwise.
    Daily bars are stamped at 00:00 UTC of their session's date, like the bundled files; intraday
    bars at their UTC instant (a timezone-naive index is read as UTC)."""
    if frame is None or len(frame) == 0:
        raise FetchError(f"{symbol}: Yahoo Finance returned no {request.interval} bars for {request.span} "
                         "(unknown ticker, or nothing traded in that range)")
    columns = _ohlcv_columns(frame, symbol)
    index = frame.index
    if request.interval.endswith("d"):
        local = index.tz_localize(None) if index.tz is not None else index
        stamps = np.asarray(local.normalize(), dtype="datetime64[ns]")
    else:
        stamps = np.asarray(index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index,
                            dtype="datetime64[ns]")
    values = {name: frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
              for name, column in columns.items()}
    bars = Bars(symbol=symbol, timestamps=stamps.astype(np.int64), **values,
                source=f"Yahoo's {request.interval} bars")
    try:
        validate_bars(bars)
    except DataError as err:  # the message starts with the symbol: Bars.where
        raise FetchError(str(err)) from err
    return pa.table({"timestamp": pa.array(bars.timestamps // 1000, pa.timestamp("us", tz="UTC")),
                     **{name: pa.array(values[name]) for name in _COLUMNS}})


def fetch_symbol(symbol: str, data_dir: Path, request: FetchRequest, *, force: bool = False) -> FetchResult:
    """Download, convert, check and atomically write `<data_dir>/<symbol>.parquet`; an existing file
    is kept unless `force`. A failure leaves no file behind (ExtraMissing propagates)."""
    path = Path(data_dir) / f"{symbol}.parquet"
    if path.exists() and not force:
        return FetchResult(symbol, path, "kept", f"{symbol}: kept the existing {path} (--force replaces it)")
    try:
        table = bars_table(download(symbol, request), symbol, request)
    except ExtraMissing:
        raise
    except FetchError as err:
        return FetchResult(symbol, path, "failed", f"{str(err).rstrip('.')}; nothing written")
    metadata = {"symbol": symbol, "source": "Yahoo Finance via yfinance", "interval": request.interval,
                "frequency": request.interval,  # the bundled files' name for the bar length
                "adjusted": str(request.adjusted).lower(), "requested": request.span,
                "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buffer)
    atomic_write_bytes(path, buffer.getvalue())
    first, last = (str(t.as_py().date()) for t in (table["timestamp"][0], table["timestamp"][-1]))
    return FetchResult(symbol, path, "written",
                       f"{symbol}: {len(table):,} {request.interval} bars {first} .. {last} -> {path}")


def fetch_symbols(symbols: Sequence[str], data_dir: str | Path, request: FetchRequest, *,
                  force: bool = False, console: Console | None = None) -> list[FetchResult]:
    """fetch_symbol for each symbol in turn, one line each and a progress bar for several; one
    symbol's failure never stops the others (a missing yfinance does: ExtraMissing)."""
    # rich here, not at the top: envs.market_data imports this module for fetch_hint, and loading
    # bars should not pay for a progress bar library
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.text import Text

    console = console or Console()
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True, disable=len(symbols) < 2 or not console.is_terminal) as progress:
        task = progress.add_task("fetching", total=len(symbols))
        for symbol in symbols:
            progress.update(task, description=f"fetching {symbol}")
            result = fetch_symbol(symbol, Path(data_dir), request, force=force)
            style = {"written": "green", "kept": "", "failed": "bold red"}[result.status]
            progress.console.print(Text(result.message, style=style), soft_wrap=True)
            results.append(result)
            progress.advance(task)
    return results


class _Reasons(logging.Handler):
    """Collects yfinance's error records for one call."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().strip()
        if text and not re.fullmatch(r"\d+ Failed downloads?:", text):  # the summary's header line
            text = re.sub(r"^(\[[^\]]*\]|\$\S+): ", "", text)  # the ['SPY'] or $SPY it begins with
            self.messages.append(re.sub(r"\s*See https?://\S+ first for more details\.?", "", text))


def _explain(messages: list[str]) -> str:
    """The reason to show: a network failure when any message reports one (yfinance goes on to
    blame the ticker, "possibly delisted", when it could not even ask), else the last message."""
    network = [m for m in messages if _NETWORK.search(m)]
    if network:
        return f"cannot reach Yahoo Finance (no network connection?): {network[-1]}"
    return messages[-1]


def _ohlcv_columns(frame: Any, symbol: str) -> dict[str, Any]:
    """Canonical name -> the frame's column label, from yfinance's (Price, Ticker) columns or flat ones."""
    labels = list(frame.columns)
    if frame.columns.nlevels == 2:  # (Price, Ticker)
        tickers = sorted({str(ticker) for _, ticker in labels})
        labels = [label for label in labels if str(label[1]).upper() == symbol.upper()]
        if not labels:
            raise FetchError(f"{symbol}: yfinance's answer holds {tickers}, not {symbol}")
        names = {str(price).lower().replace(" ", ""): (price, ticker) for price, ticker in labels}
    else:  # yfinance before 0.2.48 answers one ticker with flat columns
        names = {str(label).lower().replace(" ", ""): label for label in labels}
    missing = [name for name in _COLUMNS if name not in names]
    if missing:
        raise FetchError(f"{symbol}: yfinance's answer lacks {missing}; it has {list(frame.columns)}")
    # "close", never "adjclose": with --raw the open/high/low are unadjusted too
    return {name: names[name] for name in _COLUMNS}

