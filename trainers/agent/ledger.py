"""The paper-trading ledger: one SQLite file (stdlib sqlite3) holding what a paper account did.

Tables (every row keyed by symbol and bar, timestamps as ISO text and int64 ns UTC):
  meta       key -> value: the run, the frozen policy weights (file and sha256), the start
  orders     each decision: the bar it was made on, the policy's action, the action executed after
             the env's rules, whether it filled (HOLD rows included: the full decision log)
  fills      each fill: the bar it filled on, side, shares, that bar's open, notional, cost
             (commission + slippage, the env's cost model)
  positions  each bar an account was marked on: close, shares, cash, equity, exposure (the first
             row of a symbol is its flat start at the first decision bar)

A bar's rows of every symbol are written in one transaction, so an interrupted run leaves whole
bars only. The ledger never rewrites a row: a bar already recorded is checked against the replay
instead (`LedgerError` when they disagree).
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from configs.loader import ConfigError
from envs.splits import format_timestamp

SCHEMA_VERSION = "1"
_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    symbol TEXT NOT NULL, decided_at TEXT NOT NULL, decided_ns INTEGER NOT NULL, action TEXT NOT NULL,
    executed TEXT NOT NULL, filled INTEGER NOT NULL, PRIMARY KEY (symbol, decided_ns));
CREATE TABLE IF NOT EXISTS fills (
    symbol TEXT NOT NULL, filled_at TEXT NOT NULL, filled_ns INTEGER NOT NULL, side TEXT NOT NULL,
    shares REAL NOT NULL, open REAL NOT NULL, notional REAL NOT NULL, cost REAL NOT NULL,
    PRIMARY KEY (symbol, filled_ns));
CREATE TABLE IF NOT EXISTS positions (
    symbol TEXT NOT NULL, timestamp TEXT NOT NULL, ts_ns INTEGER NOT NULL, close REAL NOT NULL,
    shares REAL NOT NULL, cash REAL NOT NULL, equity REAL NOT NULL, exposure REAL NOT NULL,
    PRIMARY KEY (symbol, ts_ns));
"""
_TOLERANCE = 1e-9
"""relative equity difference above which a recorded bar and its replay disagree"""


class LedgerError(ConfigError):
    """A ledger that cannot be read, or whose recorded bars the replay does not reproduce."""


@dataclass(frozen=True)
class BarRecord:
    """One symbol's account over one bar: the decision at `decided_ns`, its fill at the next bar's
    open and the mark at that bar's close (`bar_ns`)."""

    symbol: str
    decided_ns: int
    bar_ns: int
    action: str
    executed: str
    filled: bool
    shares_traded: float
    """signed: > 0 bought, < 0 sold"""
    open: float
    notional: float
    cost: float
    close: float
    shares: float
    cash: float
    equity: float
    exposure: float


@dataclass(frozen=True)
class Start:
    """A symbol's flat account at its first decision bar (the first positions row)."""

    symbol: str
    ts_ns: int
    close: float
    cash: float


class Ledger:
    """An open ledger file; `Ledger.open(path)` creates the tables of a new one."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path, self._db = Path(path), connection

    @classmethod
    def open(cls, path: Path, create: bool = True) -> Ledger:
        """The ledger at `path` (made when `create` and missing); LedgerError for a file that is
        not a ledger of this schema."""
        path = Path(path)
        if not create and not path.is_file():
            raise LedgerError(f"{path}: no such ledger (trainers.paper --ledger creates one)")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
            # write-ahead log: a commit is atomic and survives the process being killed; "normal"
            # sync skips the per-commit fsync that only a power loss would need
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.executescript(_TABLES)
            version = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as err:
            raise LedgerError(f"{path}: not a paper-trading ledger ({err})") from None
        if version is not None and version[0] != SCHEMA_VERSION:
            raise LedgerError(f"{path}: ledger schema {version[0]}, this version reads {SCHEMA_VERSION}")
        return cls(path, connection)

    def close(self) -> None:
        self._db.close()

    # ---- meta --------------------------------------------------------------------------------
    def meta(self) -> dict[str, str]:
        """Every meta key -> value; {} for a new ledger."""
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def initialise(self, meta: dict[str, str]) -> None:
        """Write a new ledger's meta (with the schema version) in one transaction."""
        with self._transaction():
            self._db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                 [("schema", SCHEMA_VERSION), *sorted(meta.items())])

    # ---- bars --------------------------------------------------------------------------------
    def recorded(self) -> dict[tuple[str, int], float]:
        """(symbol, bar ns) -> equity of every positions row."""
        return {(s, t): e for s, t, e in self._db.execute("SELECT symbol, ts_ns, equity FROM positions")}

    def write_bar(self, starts: list[Start], records: list[BarRecord]) -> None:
        """One step's rows of every symbol (flat starts, decisions, fills, marks) in one transaction."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO positions VALUES (?, ?, ?, ?, 0.0, ?, ?, 0.0)",
                [(s.symbol, format_timestamp(s.ts_ns), s.ts_ns, s.close, s.cash, s.cash) for s in starts])
            self._db.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                [(r.symbol, format_timestamp(r.decided_ns), r.decided_ns, r.action, r.executed, int(r.filled))
                 for r in records])
            self._db.executemany(
                "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.symbol, format_timestamp(r.bar_ns), r.bar_ns, "buy" if r.shares_traded > 0 else "sell",
                  abs(r.shares_traded), r.open, r.notional, r.cost) for r in records if r.filled])
            self._db.executemany(
                "INSERT INTO positions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.symbol, format_timestamp(r.bar_ns), r.bar_ns, r.close, r.shares, r.cash, r.equity, r.exposure)
                 for r in records])

    def equity_curves(self) -> dict[str, tuple[list[int], list[float]]]:
        """symbol -> (bar ns, equity) of its positions rows, oldest first."""
        curves: dict[str, tuple[list[int], list[float]]] = {}
        for symbol, ts, equity in self._db.execute("SELECT symbol, ts_ns, equity FROM positions "
                                                   "ORDER BY symbol, ts_ns"):
            stamps, values = curves.setdefault(symbol, ([], []))
            stamps.append(ts)
            values.append(equity)
        return curves

    def fill_counts(self) -> dict[str, int]:
        """symbol -> number of fills."""
        return dict(self._db.execute("SELECT symbol, COUNT(*) FROM fills GROUP BY symbol").fetchall())

    def last_positions(self) -> dict[str, tuple]:
        """symbol -> (timestamp, shares, cash, equity) of its newest positions row."""
        rows = self._db.execute("SELECT symbol, timestamp, shares, cash, equity, MAX(ts_ns) FROM positions "
                                "GROUP BY symbol").fetchall()
        return {row[0]: row[1:5] for row in rows}

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, traceback) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def check_recorded(recorded: dict[tuple[str, int], float], symbol: str, bar_ns: int, equity: float,
                   ledger: Path, data_file: str) -> None:
    """LedgerError when the ledger holds a different equity for this bar than the replay."""
    kept = recorded[(symbol, bar_ns)]
    if abs(kept - equity) > _TOLERANCE * max(abs(kept), 1.0):
        raise LedgerError(
            f"{ledger}: {symbol}'s equity at {format_timestamp(bar_ns)} is {kept:,.6f} in the ledger but "
            f"{equity:,.6f} when replayed on {data_file}: the bars up to the ledger's newest one changed "
            "since it was written (a re-adjusted or different data file). The ledger is left as it is; "
            "start a new one (--ledger NEW --from DATE) to paper-trade these bars")
