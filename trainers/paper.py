"""Paper-trade a trained agent through a SQLite ledger: `python -m trainers.paper --run-dir RUN
--data-dir D --ledger L [--from DATE]`; `python -m trainers.paper --report L`.

Each run trades every bar newer than the ledger's newest one with the env's fills, costs and rules
(greedy, the policy frozen when the ledger started) and records orders, fills, positions, cash and
equity per symbol, one transaction per bar. Run again on the same data, it writes nothing; with
new bars (python -m envs.fetch SYMBOL --force), it trades only those. `--from` starts a new ledger
at a past date (a replay of history); without it a new ledger starts at the newest bar, flat.
Prints what was written and each symbol's decision for the next bar. `--report` prints the
equity, fills, Sharpe and drawdown so far (per symbol and for the equal-capital book), the same
baselines as trainers.evaluate over the bars the ledger traded (read from --data-dir, default the
run's) and writes a PNG of the equity curves."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from rich.console import Console

from configs.cli import add_data_dir, add_device, add_run_dir, device_or_auto
from configs.loader import ConfigError
from envs import DataError
from models import CheckpointError
from ppo_core import resolve_device
from trainers.agent.paper import paper_trade
from trainers.agent.paper_report import ledger_baselines, ledger_curves, summarise, write_paper_page
from trainers.agent.tables import decisions_table, ledger_table
from trainers.backtest.evaluation import RANDOM_PATHS, describe_symbol
from trainers.backtest.report import plot_curves, print_tables
from trainers import checkpoints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainers.paper", description=__doc__.splitlines()[0])
    add_run_dir(parser, required=False)
    add_data_dir(parser, of_run=True)
    parser.add_argument("--ledger", type=Path, help="the SQLite ledger (made when missing)")
    parser.add_argument("--from", dest="start", metavar="DATE",
                        help="a new ledger starts here, flat (ISO date); default the newest bar")
    parser.add_argument("--checkpoint", default=checkpoints.DEFAULT_CHOICE, metavar="average|best|latest|PATH",
                        help="the weights a new ledger freezes: " + checkpoints.CHOICE_HELP)
    parser.add_argument("--report", type=Path, metavar="LEDGER", help="print what LEDGER holds and plot it")
    parser.add_argument("--png", type=Path, help="--report's plot (default LEDGER with .png; the HTML tear sheet "
                                                 "beside it with .html)")
    parser.add_argument("--random-paths", type=int, default=RANDOM_PATHS, metavar="K",
                        help=f"--report's random valid paths per symbol (default {RANDOM_PATHS})")
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a batch of one account per symbol: a thread pool only adds overhead
    console = Console(width=None if sys.stdout.isatty() else 150)
    if args.random_paths < 1:
        parser.error("--random-paths must be >= 1")
    try:
        if args.report:
            return report(args.report, args.png, args.json, console, args.data_dir, args.random_paths,
                          resolve_device(device_or_auto(args.device)))
        if not (args.run_dir and args.ledger):
            parser.error("--run-dir and --ledger are required (or --report LEDGER)")
        result = paper_trade(args.run_dir, args.data_dir, args.ledger, args.start, args.checkpoint,
                             resolve_device(device_or_auto(args.device)))
    except (ConfigError, DataError, checkpoints.ResumeError, CheckpointError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**asdict(result), "ledger": str(args.ledger)}, indent=2))
        return 0
    console.print(f"ledger {args.ledger}: started {result.start}; {result.policy}", markup=False)
    console.print(f"wrote {result.written} new bar(s), checked {result.checked} recorded one(s) against the replay",
                  markup=False)
    for symbol, (stamp, shares, cash, equity) in result.newest.items():
        console.print(f"{symbol}: newest bar {stamp}, {shares:,.4f} shares, {cash:,.2f} cash, equity {equity:,.2f}",
                      markup=False)
    for note in result.notes:
        console.print(note, markup=False)
    if result.pending:
        console.print(decisions_table(result.pending, "each account's decision for the next bar (greedy)"))
    return 0


def report(ledger: Path, png: Path | None, as_json: bool, console: Console, data_dir: str | None = None,
           num_random: int = RANDOM_PATHS, device: torch.device = torch.device("cpu")) -> int:
    """Print the ledger's summary (per symbol and the book) and, where its bars can be read, the
    baselines over the same bars; write the equity PNG."""
    curves, fills = ledger_curves(ledger)
    if not curves:
        print(f"{ledger}: no bar recorded yet", file=sys.stderr)
        return 0
    summary = summarise(curves, fills)
    try:
        outcomes = ledger_baselines(ledger, data_dir, device, num_random)
        baselines = {"results": {s: o.rows for s, o in outcomes.items()},
                     "baselines": {s: o.baselines for s, o in outcomes.items()}}
    except (DataError, FileNotFoundError) as err:
        outcomes, baselines = {}, {"skipped": f"the bars the ledger traded cannot be read ({err}); pass --data-dir"}
    png = png or ledger.with_suffix(".png")
    page = png.with_suffix(".html")
    plot_curves(png, f"paper trading: {ledger.name}", curves)
    write_paper_page(page, ledger, summary, curves, outcomes, baselines.get("skipped", ""))
    if as_json:
        print(json.dumps({"ledger": str(ledger), "png": str(png), "html": str(page), "summary": summary, **baselines},
                         indent=2))
        return 0
    console.print(ledger_table(summary, f"paper trading so far: {ledger}"))
    if outcomes:
        print_tables(baselines["results"], "paper", console)
        for symbol, outcome in outcomes.items():
            console.print(describe_symbol(symbol, outcome.period, outcome.baselines), markup=False)
    else:
        console.print(f"baselines: skipped ({baselines['skipped']})", markup=False)
    console.print(f"wrote {png} and {page}", markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
