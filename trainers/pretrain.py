"""Supervised pretraining on the env's inputs: `python -m trainers.pretrain --symbols SPX,GOOGL`.

Trains small models (mlp, lstm, gru) and the project's encoder with a prediction head to predict
whether the close `--horizon` bars ahead is above this bar's close, on the train split of the run's
calendar splits, early-stopped on validation; writes copies of the bars with causal `sl_prob_<model>`
columns (walk-forward refits), encoder.safetensors and pretrain.json (trainers.supervised,
docs/supervised.md). Config flags work as in trainers.ppo, so the env and encoder are the ones a
later RL run uses.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

from configs.cli import add_config, add_data_dir, add_device, add_overrides
from configs.loader import ConfigError
from configs.train import explicit_settings
from envs import DataError
from trainers.run.resolve import new_run_config, parse_symbols
from trainers.supervised.fit import TARGETS, FitSettings
from trainers.supervised.models import MODEL_NAMES
from trainers.supervised.pipeline import PretrainOptions, run_pretrain


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.pretrain",
        description="Supervised models on the env's own features: metrics, a cost-aware backtest, "
                    "causal sl_prob_* columns and an encoder checkpoint.",
        epilog="Any config field can be set with --set section.key=value (the env's lookback, split "
               "dates and costs, model.encoder.*), as for trainers.ppo; see docs/supervised.md.")
    parser.add_argument("--symbols", help="comma-separated symbols, e.g. SPX,GOOGL (default: SPY,AAPL)")
    add_data_dir(parser)
    parser.add_argument("--models", default=",".join(MODEL_NAMES),
                        help=f"comma-separated models out of {', '.join(MODEL_NAMES)} (default: all); the "
                             "copies carry the first three as sl_prob_<model> columns")
    parser.add_argument("--target", default="direction", choices=TARGETS,
                        help="direction: up/down with cross-entropy (default); return: regression of the "
                             "log return, its probability sigmoid(1.702 x prediction / residual spread)")
    parser.add_argument("--horizon", type=int, default=1, help="bars ahead the label looks (default 1)")
    parser.add_argument("--out-dir", type=Path,
                        help="output folder (default: runs/pretrain-<time>-<symbols>); not the data folder")
    add_config(parser)
    add_overrides(parser)
    parser.add_argument("--seed", type=int, help="seed of the model inits and batch orders (run.seed)")
    add_device(parser)
    parser.add_argument("--refits", type=int, default=4,
                        help="walk-forward refits across the train split (default 4)")
    parser.add_argument("--min-history", type=int, default=500,
                        help="train examples (all symbols) a first walk-forward model needs; earlier "
                             "train bars keep sl_prob 0.5 (default 500)")
    parser.add_argument("--epochs", type=int, default=30, help="most epochs per fit (default 30)")
    parser.add_argument("--patience", type=int, default=4,
                        help="epochs without a better early-stopping loss before a fit ends (default 4)")
    parser.add_argument("--batch-size", type=int, default=64, help="examples per gradient step (default 64)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--hidden", type=int, default=32, help="width of mlp, lstm and gru (default 32)")
    return parser


def options_from(args: argparse.Namespace, symbols: list[str]) -> PretrainOptions:
    """PretrainOptions from the flags; ValueError naming the flag at fault."""
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    out_dir = args.out_dir or Path("runs") / f"pretrain-{time.strftime('%Y%m%d-%H%M%S')}-{'-'.join(symbols)}"
    try:
        settings = FitSettings(target=args.target, max_epochs=args.epochs, patience=args.patience,
                               batch_size=args.batch_size, lr=args.lr)
    except ValueError as err:
        raise ValueError(f"--{str(err).replace('max_epochs', 'epochs').replace('_', '-')}") from err
    return PretrainOptions(out_dir=out_dir, models=models, horizon=args.horizon, refits=args.refits,
                           min_history=args.min_history, hidden=args.hidden, fit=settings)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cli = {"run.symbols": parse_symbols(args.symbols) if args.symbols is not None else None,
               "run.data_dir": args.data_dir, "run.seed": args.seed, "run.device": args.device}
        config = new_run_config(explicit_settings(args.config, args.overrides,
                                                  {k: v for k, v in cli.items() if v is not None}))
        options = options_from(args, list(config.run.symbols))
        # a pipe or a file gets a table wide enough for its 12 columns
        console = Console() if sys.stdout.isatty() else Console(width=160)
        run_pretrain(config, options, console)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
