"""The trained agent's decision for the next bar: `python -m trainers.predict --run-dir RUN`.

For each symbol, from the newest bar in the data (features, window, observation and mask built by
the env's own code): the greedy action, the probability of every action, the value estimate,
which actions are masked and why, and the account it assumed (flat, --positions FILE, or the
account a paper-trading --ledger holds). Prints the data files'
hashes and the checkpoint used; --json for programs."""
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
from trainers.agent.decision import predict
from trainers.agent.paper import paper_trade
from trainers.agent.tables import decisions_table
from trainers import checkpoints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainers.predict", description=__doc__.splitlines()[0])
    add_run_dir(parser)
    add_data_dir(parser, of_run=True)
    parser.add_argument("--checkpoint", default=checkpoints.DEFAULT_CHOICE, metavar="average|best|latest|PATH",
                        help=checkpoints.CHOICE_HELP)
    parser.add_argument("--symbols", help="comma-separated subset of the run's symbols (default: all)")
    parser.add_argument("--max-age", default="auto",
                        help="refuse data whose newest bar is older (5d, 36h; auto = 5 bar intervals, at least "
                             "4 days; 0 = no limit)")
    parser.add_argument("--positions", type=Path, metavar="FILE",
                        help='the account to assume instead of flat: JSON {"SYMBOL": {"shares": 10, "cash": 90000, '
                             '"entry": 101.5}} (each key optional, symbols left out flat)')
    parser.add_argument("--ledger", type=Path,
                        help="assume the account a paper-trading ledger holds (trainers.paper), replayed to the "
                             "newest bar without writing")
    add_device(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a batch of one account per symbol: a thread pool only adds overhead
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    if args.positions and args.ledger:
        parser.error("--positions and --ledger both give the account: choose one")
    try:
        if args.ledger:
            result = paper_trade(args.run_dir, args.data_dir, args.ledger, None, args.checkpoint,
                                 resolve_device(device_or_auto(args.device)), write=False, max_age=args.max_age)
            decisions = [d for d in result.pending if not symbols or d.symbol in symbols]
            which = f"{result.policy} (frozen by {args.ledger})"
            for note in result.notes:
                print(note, file=sys.stderr)
        else:
            decisions, which = predict(args.run_dir, args.data_dir, args.checkpoint, symbols, args.max_age,
                                       resolve_device(device_or_auto(args.device)), positions=args.positions)
    except (ConfigError, DataError, checkpoints.ResumeError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"checkpoint": which, "decisions": [asdict(d) for d in decisions]}, indent=2))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 150)
    console.print(which, markup=False)
    console.print(decisions_table(decisions))
    for d in decisions:
        console.print(f"{d.symbol}: {d.data_file} sha256 {d.data_sha256}", markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
