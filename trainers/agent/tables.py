"""Rich tables of the agent commands (predict, paper): the decisions and a ledger's summary."""
from __future__ import annotations

from rich.table import Table

from trainers.agent.decision import Decision


def decisions_table(decisions: list[Decision], title: str = "decision for the next bar (greedy)") -> Table:
    """A row per symbol: as-of bar, greedy action, probabilities (>= 0.5 %), value, masked actions and
    why, the account assumed."""
    table = Table(title=title, title_justify="left")
    for column in ("symbol", "as of", "action", "probabilities", "value", "masked", "account"):
        table.add_column(column)
    for d in decisions:
        table.add_row(d.symbol, d.as_of, d.action,
                      " ".join(f"{name} {p:.0%}" for name, p in d.probabilities.items() if p >= 0.005),
                      f"{d.value:+.3f}", _masked(d.masked), d.account)
    return table


def _masked(masked: dict[str, str]) -> str:
    """Masked actions grouped by their reason: "A, B: why; C: why" ("-" for none)."""
    by_reason: dict[str, list[str]] = {}
    for name, why in masked.items():
        by_reason.setdefault(why, []).append(name)
    return "; ".join(f"{', '.join(names)}: {why}" for why, names in by_reason.items()) or "-"


def ledger_table(summary: dict[str, dict], title: str) -> Table:
    """A row per symbol (and the book): period, bars, fills, equity, return, Sharpe/yr, max drawdown."""
    table = Table(title=title, title_justify="left")
    for column in ("", "first", "last", "bars", "fills", "equity", "return", "Sharpe/yr", "max DD"):
        table.add_column(column, justify="left" if column in ("", "first", "last") else "right")
    for name, row in summary.items():
        table.add_row(name, row["first"], row["last"], str(row["bars"]), str(row["fills"]), f"{row['equity']:,.2f}",
                      *(f"{row[k]:{fmt}}" if k in row else "-" for k, fmt in
                        (("total_return", "+.2%"), ("sharpe_annualised", "+.2f"), ("max_drawdown", ".2%"))))
    return table
