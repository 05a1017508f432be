"""What a paper-trading ledger says so far: per symbol and for the equal-capital book, the equity,
return, annualised Sharpe (trainers.backtest.metrics, the one formula), drawdown and fills (the PNG:
trainers.backtest.report.plot_curves)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.splits import format_timestamp
from trainers.agent.ledger import Ledger
from trainers.backtest.metrics import equity_metrics, periods_per_year

BOOK = "book (equal capital)"


def ledger_curves(ledger_path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """symbol -> ((L,) int64 ns bar times, (L,) equity), and symbol -> fills, read from the ledger."""
    ledger = Ledger.open(ledger_path, create=False)
    try:
        curves = {s: (np.asarray(t, dtype=np.int64), np.asarray(e, dtype=np.float64))
                  for s, (t, e) in ledger.equity_curves().items()}
        return curves, ledger.fill_counts()
    finally:
        ledger.close()


def book_curve(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The equal-capital book: ((U,) union of bar times, (U,) sum of every symbol's equity carried
    forward to each time, a symbol counting its starting equity before its first bar)."""
    union = np.unique(np.concatenate([t for t, _ in curves.values()]))
    total = np.zeros(len(union))
    for stamps, equity in curves.values():
        at = np.searchsorted(stamps, union, side="right") - 1  # the newest row at or before each time
        total += equity[np.maximum(at, 0)]
    return union, total


def summarise(curves: dict[str, tuple[np.ndarray, np.ndarray]], fills: dict[str, int]) -> dict[str, dict]:
    """Per symbol (and the book when there are several): first and last bar, bars marked, fills,
    final equity, and equity_metrics (return, Sharpe/yr, drawdown...) once there are 3 rows."""
    rows = dict(curves)
    if len(curves) > 1:
        rows[BOOK] = book_curve(curves)
    out = {}
    for name, (stamps, equity) in rows.items():
        row = {"first": format_timestamp(int(stamps[0])), "last": format_timestamp(int(stamps[-1])),
               "bars": len(stamps) - 1, "equity": float(equity[-1]),
               "fills": sum(fills.values()) if name == BOOK else fills.get(name, 0)}
        if len(stamps) >= 3:
            row.update(equity_metrics(equity, periods_per_year(stamps)))
        out[name] = row
    return out
