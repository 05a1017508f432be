"""Evaluation output: the per-symbol comparison table, evaluation.json and equity-curve PNGs."""
from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; evaluation runs on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ppo_core.files import atomic_write_bytes  # noqa: E402

AGENT = "agent (greedy)"
ORACLE = "oracle (long-only)"
"""the row of the long-only oracle, for generated symbols whose process is known"""
BUY_AND_HOLD = "buy & hold"
MATCHED = "matched buy & hold"
"""buy-and-hold rebalanced every bar to the agent's realised mean exposure"""
RANDOM = "random valid"
"""the median over the random valid paths (trainers.backtest.evaluation.RANDOM_PATHS by default)"""
BASELINES = (BUY_AND_HOLD, MATCHED, RANDOM)

# (metric key, column title, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "return", "{:+.2%}"),
    ("annualised_return", "annual", "{:+.2%}"),
    ("sharpe_annualised", "Sharpe/yr", "{:+.2f}"),
    ("sortino_annualised", "Sortino/yr", "{:+.2f}"),
    ("max_drawdown", "max DD", "{:.2%}"),
    ("calmar", "Calmar", "{:+.2f}"),
    ("win_rate", "win", "{:.0%}"),
    ("profit_factor", "PF", "{:.2f}"),
    ("trades", "trades", "{:.0f}"),
    ("turnover", "turnover", "{:.2f}"),
    ("exposure", "exposure", "{:.0%}"),
)


def print_tables(results: dict[str, dict[str, dict[str, float]]], split: str, console: Console) -> None:
    """One table per symbol: a row per strategy, a column per metric."""
    for symbol, strategies in results.items():
        table = Table(title=f"{symbol} - {split} split", title_justify="left")
        table.add_column("strategy")
        for _, title, _ in COLUMNS:
            table.add_column(title, justify="right")
        for name, metrics in strategies.items():
            table.add_row(name, *[format_cell(metrics.get(key), fmt) for key, _, fmt in COLUMNS])
        console.print(table)


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz of named arrays, written atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_json(path: Path, payload: dict) -> None:
    """JSON with non-finite floats written as strings ("inf"), which strict parsers accept."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return value
    path.write_text(json.dumps(clean(payload), indent=2))


def random_band(random_paths: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(label, low, high): the 5-95 % band of (K, T + 1) random valid paths' equity at each bar."""
    low, high = np.quantile(random_paths, [0.05, 0.95], axis=0)
    return f"random valid, 5-95 % of {len(random_paths)} paths", low, high


def plot_equity(path: Path, symbol: str, split: str, curves: dict[str, np.ndarray], timestamps_ns: np.ndarray,
                random_paths: np.ndarray | None = None) -> None:
    """One PNG: each strategy's (T + 1,) equity curve over the split's bar timestamps, and the 5-95 %
    band of the (K, T + 1) random valid paths when given."""
    plot_curves(path, f"{symbol}: equity on the {split} split",
                {name: (timestamps_ns[: len(equity)], equity) for name, equity in curves.items()},
                None if random_paths is None else random_band(random_paths))


def plot_curves(path: Path, title: str, curves: dict[str, tuple[np.ndarray, np.ndarray]],
                band: tuple[str, np.ndarray, np.ndarray] | None = None) -> None:
    """One PNG of equity curves (equity_figure)."""
    fig = equity_figure(title, curves, band)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def equity_figure(title: str, curves: dict[str, tuple[np.ndarray, np.ndarray]],
                  band: tuple[str, np.ndarray, np.ndarray] | None = None,
                  boundaries: Sequence[tuple[str, int]] = ()) -> plt.Figure:
    """Equity curves, each over its own (T,) int64 ns timestamps, agent lines bolder; `band` (label,
    low, high) shaded over the first curve's timestamps; a dotted line at each of `boundaries`
    (label, ns timestamp)."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    if band is not None and curves:
        label, low, high = band
        stamps = next(iter(curves.values()))[0].astype("datetime64[ns]")
        ax.fill_between(stamps[: len(low)], low, high, color="grey", alpha=0.2, label=label)
    for name, (stamps, equity) in curves.items():
        ax.plot(stamps.astype("datetime64[ns]"), equity, label=name,
                linewidth=1.6 if name.startswith("agent") else 1.0)
    for label, stamp in boundaries:
        date = np.datetime64(int(stamp), "ns")
        ax.axvline(date, color="grey", linestyle=":", linewidth=0.8)
        ax.text(date, ax.get_ylim()[1], f" {label}", fontsize=7, va="top")
    ax.set_title(title)
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def format_cell(value: float | None, fmt: str) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return "inf" if value > 0 else "-inf"
    return fmt.format(value)
