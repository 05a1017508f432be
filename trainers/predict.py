"""The trained agent's decision for the next bar: `python -m trainers.predict --run-dir RUN`.

For each symbol, from the newest bar in the data (features, window, observation and mask built by
the env's own code): the greedy action, the probability of every action, the value estimate,
which actions are masked and why, and the account it assumed (flat). Prints the data files'
hashes and the checkpoint used; --json for programs."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from configs.loader import ConfigError
from envs import DataError
from models import CheckpointError
from ppo_core import resolve_device
from trainers.agent.decision import predict
from trainers.run import checkpoints


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.predict", description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="a run directory written by trainers.ppo")
    parser.add_argument("--data-dir", help="folder of <SYMBOL>.parquet files (default: the run's)")
    parser.add_argument("--checkpoint", default="best", metavar="best|latest|PATH", help="which weights (default best)")
    parser.add_argument("--symbols", help="comma-separated subset of the run's symbols (default: all)")
    parser.add_argument("--max-age", default="auto",
                        help="refuse data whose newest bar is older (5d, 36h; auto = 5 bar intervals, at least "
                             "4 days; 0 = no limit)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    try:
        decisions, which = predict(args.run_dir, args.data_dir, args.checkpoint, symbols, args.max_age,
                                   resolve_device(args.device))
    except (ConfigError, DataError, checkpoints.ResumeError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"checkpoint": which, "decisions": [asdict(d) for d in decisions]}, indent=2))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(which, markup=False)
    table = Table(title="decision for the next bar (greedy)", title_justify="left")
    for column in ("symbol", "as of", "action", "probabilities", "value", "masked", "account"):
        table.add_column(column)
    for d in decisions:
        table.add_row(d.symbol, d.as_of, d.action,
                      " ".join(f"{name} {p:.0%}" for name, p in d.probabilities.items() if p >= 0.005),
                      f"{d.value:+.3f}", "; ".join(f"{n}: {why}" for n, why in d.masked.items()) or "-", d.account)
    console.print(table)
    for d in decisions:
        console.print(f"{d.symbol}: {d.data_file} sha256 {d.data_sha256}", markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
