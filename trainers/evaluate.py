"""Backtest a trained run on a whole split: `python -m trainers.evaluate --run-dir runs/...`
(trainers.backtest.evaluation does the work; docs/validation.md explains the table)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

from configs.cli import add_data_dir, add_device, add_run_dir, add_threads, device_or_auto
from configs.loader import ConfigError
from models import CheckpointError
from ppo_core import resolve_device, set_cpu_threads
from trainers.backtest.evaluation import RANDOM_PATHS, evaluate
from trainers import checkpoints


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainers.evaluate",
                                     description="Backtest a trained run on a whole data split.")
    add_run_dir(parser)
    parser.add_argument("--split", choices=["train", "val", "test"], default="test",
                        help="which chronological split to trade (default: test)")
    parser.add_argument("--sampled", type=int, default=0, metavar="K",
                        help="also run K accounts with the sampled (stochastic) policy")
    parser.add_argument("--random-paths", type=int, default=RANDOM_PATHS, metavar="K",
                        help=f"uniformly random valid paths per symbol, the random baseline's distribution "
                             f"(default {RANDOM_PATHS})")
    add_device(parser)
    add_threads(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random and sampled policies")
    parser.add_argument("--checkpoint", default=checkpoints.DEFAULT_CHOICE,
                        metavar="average|best|latest|ensemble|PATH",
                        help=checkpoints.CHOICE_HELP + "; ensemble: the best list traded as one policy (mean "
                             "of their action probabilities)")
    add_data_dir(parser, of_run=True)  # other or newer bars of the run's symbols, split at the run's dates
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.sampled < 0:
        parser.error("--sampled must be >= 0")
    if args.random_paths < 1:
        parser.error("--random-paths must be >= 1")
    if args.threads < 0:
        parser.error(f"--threads must be >= 0 (0 = the cores not busy with other work), got {args.threads}")
    set_cpu_threads(args.threads)
    data_dir = Path(args.data_dir) if args.data_dir is not None else None
    if data_dir is not None and not data_dir.is_dir():
        parser.error(f"--data-dir {data_dir}: no such directory")
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        evaluate(args.run_dir, args.split, args.sampled, resolve_device(device_or_auto(args.device)), args.seed,
                 console, checkpoint=args.checkpoint, data_dir=data_dir, num_random=args.random_paths)
    except (ConfigError, checkpoints.ResumeError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
