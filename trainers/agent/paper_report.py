"""What a paper-trading ledger says so far: per symbol and for the equal-capital book, the equity,
return, annualised Sharpe (trainers.backtest.metrics, the one formula), drawdown and fills (the PNG:
trainers.backtest.report.plot_curves); and, where the bars it traded can be read, the same
baselines trainers.evaluate shows (buy-and-hold, matched buy-and-hold, the random valid paths and
the agent's percentile among them) over the same bars and dates."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import torch

from configs.train import read_run_config
from envs import load_market
from envs.splits import format_timestamp
from trainers.agent.ledger import Ledger, LedgerError
from trainers.agent.paper import check_meta, paper_env
from trainers.backtest import pages, tearsheet as ts
from trainers.backtest.evaluation import RANDOM_PATHS, SymbolOutcome, symbol_results
from trainers.backtest.report import AGENT
from envs.bars import periods_per_year
from trainers.backtest.metrics import equity_metrics
from trainers.backtest.simulate import simulate
from trainers import checkpoints

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


def ledger_baselines(ledger_path: Path, data_dir: str | None, device: torch.device,
                     num_random: int = RANDOM_PATHS, seed: int = 0) -> dict[str, SymbolOutcome]:
    """Per symbol of the ledger, evaluate's rows over exactly the bars it recorded: the frozen
    policy replayed greedy (which must reproduce the ledger's equity), buy-and-hold, matched
    buy-and-hold and `num_random` random valid paths, from the ledger's start to each symbol's
    newest recorded bar, read from `data_dir` (default: the run's). LedgerError when those bars
    are not the ones the ledger traded."""
    ledger = Ledger.open(ledger_path, create=False)
    try:
        meta, curves = ledger.meta(), ledger.equity_curves()
    finally:
        ledger.close()
    run_dir = Path(meta["run_dir"])
    config = read_run_config(run_dir / "config.toml")
    data_dir = data_dir or config.run.data_dir
    symbols = [s for s in config.run.symbols if s in curves]
    markets = load_market(symbols, data_dir, strict=config.env.strict_data)
    markets = {s: markets[s].until(int(curves[s][0][-1])) for s in symbols}
    env, _ = paper_env(config, markets, meta["start"], device, per_symbol=1 + num_random)
    if env is None:
        return {}
    weights = check_meta(meta, ledger_path, run_dir, None)
    chosen, _ = checkpoints.choose(run_dir, str(weights))
    actor = checkpoints.load_policy(config, [chosen], env.symbols, env.trading_spec, env.device)
    generator = torch.Generator(device=env.device).manual_seed(seed)
    with torch.no_grad():
        sim = simulate(env, actor, num_random, 0, generator)
    out = {}
    for s, symbol in enumerate(env.symbols):
        outcome = symbol_results(env, sim, s, num_random, 0)
        recorded = np.asarray(curves[symbol][1], dtype=np.float64)
        replayed = outcome.curves[AGENT]
        if replayed.shape != recorded.shape or not np.allclose(replayed, recorded, rtol=1e-9, atol=0.0):
            raise LedgerError(f"{ledger_path}: {symbol}'s bars in {data_dir} do not replay the equity the ledger "
                              "recorded; pass the --data-dir the ledger traded")
        out[symbol] = outcome
    return out


def write_paper_page(path: Path, ledger_path: Path, summary: dict[str, dict],
                     curves: dict[str, tuple[np.ndarray, np.ndarray]], outcomes: dict[str, SymbolOutcome],
                     skipped: str = "") -> None:
    """LEDGER.html: the ledger's summary, the equal-capital book's curve, and per symbol the same
    tear sheet as an evaluation (its baselines over the bars the ledger traded) when `outcomes`
    has it, else why not (`skipped`)."""
    rows = [(name, row["first"], row["last"], row["bars"], row["fills"], f"{row['equity']:,.2f}",
             *(f"{row[k]:{fmt}}" if k in row else "-" for k, fmt in
               (("total_return", "+.2%"), ("sharpe_annualised", "+.2f"), ("max_drawdown", ".2%"))))
            for name, row in summary.items()]
    sections = [ts.paragraph(f"ledger {ledger_path}"),
                ts.table(("", "first", "last", "bars", "fills", "equity", "return", "Sharpe/yr", "max DD"), rows)]
    if len(curves) > 1:
        stamps, equity = book_curve(curves)
        sections.append(ts.equity_section("book (equal capital)", stamps, {BOOK: equity}))
    for symbol, (stamps, _) in curves.items():
        if symbol not in outcomes:
            continue
        outcome = outcomes[symbol]
        title = f"{symbol}: paper trading {summary[symbol]['first']} .. {summary[symbol]['last']}"
        sections.append(pages.symbol_section(title, symbol, outcome.rows, outcome.curves, outcome.period,
                                             outcome.baselines, stamps, outcome.random_paths))
    if skipped:
        sections.append(ts.paragraph(f"baselines: skipped ({skipped})"))
    ts.write_page(path, f"Paper trading: {ledger_path.name}", sections)
