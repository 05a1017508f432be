"""One self-contained HTML page per report (images inline as base64 PNG, no script, no server; it
opens from disk): the tear sheet a quant knows, equity and drawdown against dates, rolling Sharpe,
monthly returns, every baseline with the random paths' band, and each statistic with its meaning
in one line. trainers.evaluate, trainers.walkforward and trainers.paper --report build their
pages from these pieces; the figures use matplotlib and the numbers the project's own metrics.
"""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ppo_core.files import atomic_write_bytes  # noqa: E402
from trainers.backtest.metrics import sharpe_from_sums  # noqa: E402
from trainers.backtest.report import COLUMNS, equity_figure, format_cell  # noqa: E402

MEANINGS = {
    "Sharpe interval": "the range the agent's annualised Sharpe could have taken on other draws of the same "
                       "bars (stationary bootstrap, 95 %); an interval above 0 is an edge this period shows",
    "random percentile": "the share of the random valid paths whose Sharpe is below the agent's; 0.5 = it "
                         "trades like them, above 0.95 = better than 19 in 20 (a low bar: they pay far more costs)",
    "matched buy & hold": "buy-and-hold rebalanced every bar to the agent's realised exposure: what that "
                          "exposure earned without timing",
    "PBO": "the chance that the best checkpoint in sample ranks below the median out of sample over "
           "every validation; 0.5 = selection no better than luck (ties count one half)",
    "deflated Sharpe": "the probability that the chosen weights' val Sharpe beats the best that as many "
                       "skill-less trials would show by luck; skill is claimed at 0.95",
    "P(skill)": "the probability that the stitched out-of-sample Sharpe is above 0 (probabilistic Sharpe; "
                "deflated when several configurations were compared); skill is claimed at 0.95",
    "paired p-value": "the chance of a Sharpe lead at least this large over the baseline on the same bars "
                      "if there were none (paired stationary bootstrap); 0.05 or less is evidence",
    "IQM": "the interquartile mean over seeds x folds, with a stratified-bootstrap 95 % interval",
}
"""one line per statistic, shown under the tables that use it"""

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}th,td{border:1px solid #ddd;padding:3px 7px;
text-align:right}th:first-child,td:first-child{text-align:left}img{max-width:100%}
.meaning{color:#555;font-size:0.85em;margin:0.2em 0}.pos{background:#e3f4e3}.neg{background:#f8e1e1}"""


def esc(text: object) -> str:
    return html.escape(str(text))


def as_dates(timestamps_ns: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(timestamps_ns, dtype=np.int64).astype("datetime64[ns]")


def figure_html(fig: plt.Figure, alt: str) -> str:
    """`fig` as an inline PNG <img> (closed afterwards)."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def equity_section(title: str, timestamps_ns: np.ndarray, curves: dict[str, np.ndarray],
                   band: tuple[str, np.ndarray, np.ndarray] | None = None,
                   boundaries: Sequence[tuple[str, int]] = ()) -> str:
    """Equity curves (each (T,) over the (T,) int64 ns timestamps) with `band` (label, low, high;
    the random paths', report.random_band) shaded and `boundaries` (label, ns timestamp) marked,
    as an inline image."""
    stamps = np.asarray(timestamps_ns, dtype=np.int64)
    fig = equity_figure(title, {name: (stamps[: len(equity)], equity) for name, equity in curves.items()},
                        band, boundaries)
    return figure_html(fig, title)


def drawdowns(equity: np.ndarray) -> np.ndarray:
    """(T,) fall from the running peak, as a negative fraction (0 at a new high)."""
    equity = np.asarray(equity, dtype=np.float64)
    return equity / np.maximum.accumulate(equity) - 1.0


def rolling_sharpe(equity: np.ndarray, window: int, bars_per_year: float) -> np.ndarray:
    """(T,) annualised Sharpe of the `window` bars' returns ending at each bar (NaN before the
    first full window): trainers.backtest.metrics' formula over a moving window."""
    returns = np.diff(np.asarray(equity, dtype=np.float64)) / np.asarray(equity, dtype=np.float64)[:-1]
    out = np.full(len(equity), np.nan)
    if len(returns) < window:
        return out
    sums = np.convolve(returns, np.ones(window), "valid")
    squares = np.convolve(returns * returns, np.ones(window), "valid")
    out[window:] = sharpe_from_sums(sums, squares, float(window), bars_per_year)
    return out


def risk_section(title: str, timestamps_ns: np.ndarray, curves: dict[str, np.ndarray], bars_per_year: float) -> str:
    """Drawdown and rolling Sharpe (a quarter-year window) of each curve, one panel each."""
    dates = as_dates(timestamps_ns)
    window = max(5, round(bars_per_year / 4))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4.6), sharex=True)
    for name, equity in curves.items():
        width = 1.4 if name.startswith("agent") else 0.9
        top.plot(dates[: len(equity)], 100.0 * drawdowns(equity), label=name, linewidth=width)
        bottom.plot(dates[: len(equity)], rolling_sharpe(equity, window, bars_per_year), label=name, linewidth=width)
    top.set_ylabel("drawdown %")
    bottom.set_ylabel(f"Sharpe/yr, {window} bars")
    bottom.axhline(0.0, color="grey", linewidth=0.6)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(loc="lower left", fontsize=8)
    top.set_title(title)
    fig.autofmt_xdate()
    return figure_html(fig, title)


def monthly_returns(timestamps_ns: np.ndarray, equity: np.ndarray) -> str:
    """An HTML table of calendar-month returns (years down, months across, the year's return last),
    from the equity marked at each month's last bar."""
    months = as_dates(timestamps_ns).astype("datetime64[M]")
    last_of_month = np.flatnonzero(np.r_[months[1:] != months[:-1], True])
    marks = np.r_[equity[0], np.asarray(equity, dtype=np.float64)[last_of_month]]
    returns = marks[1:] / marks[:-1] - 1.0
    by_year: dict[int, dict[int, float]] = {}
    for month, value in zip(months[last_of_month], returns):
        year, index = int(str(month)[:4]), int(str(month)[5:7])
        by_year.setdefault(year, {})[index] = float(value)
    header = "".join(f"<th>{m}</th>" for m in ("year", *"JFMAMJJASOND", "year"))
    rows = []
    for year, values in by_year.items():
        cells = [_pct_cell(values.get(m)) for m in range(1, 13)]
        total = math.prod(1.0 + v for v in values.values()) - 1.0
        rows.append(f"<tr><td>{year}</td>{''.join(cells)}{_pct_cell(total)}</tr>")
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def metrics_table(rows: dict[str, dict[str, float | None]]) -> str:
    """A row per strategy, the console table's columns (trainers.backtest.report.COLUMNS)."""
    header = "<th>strategy</th>" + "".join(f"<th>{esc(title)}</th>" for _, title, _ in COLUMNS)
    body = "".join(
        f"<tr><td>{esc(name)}</td>"
        + "".join(f"<td>{esc(format_cell(metrics.get(key), fmt))}</td>" for key, _, fmt in COLUMNS) + "</tr>"
        for name, metrics in rows.items())
    return f"<table><tr>{header}</tr>{body}</table>"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain HTML table of already formatted cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def meanings(*names: str) -> str:
    """The one-line meaning of each named statistic (MEANINGS)."""
    return "".join(f'<p class="meaning"><b>{esc(n)}</b>: {esc(MEANINGS[n])}</p>' for n in names)


def paragraph(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def write_page(path: Path, title: str, sections: Sequence[str]) -> None:
    """The page: a title, then `sections` (HTML fragments) in order; written atomically."""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{esc(title)}</h1>{''.join(sections)}</body></html>\n")
    atomic_write_bytes(path, page.encode("utf-8"))


def _pct_cell(value: float | None) -> str:
    if value is None:
        return "<td></td>"
    return f'<td class="{"pos" if value >= 0 else "neg"}">{value:+.1%}</td>'
