"""Export a trained run's policy: `python -m trainers.export --run-dir RUN [--format torchscript|onnx]`.

The file takes the observation keys in the env's order and the action mask of S x E accounts
(symbol-major, E = --accounts-per-symbol, default 1: one decision per symbol) and returns the
masked logits and the values (models.export); it is checked against the eager policy on random
observations before it is written, and the largest difference is printed."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from configs.cli import add_run_dir
from configs.loader import ConfigError
from configs.train import read_run_config
from envs.spec import TradingSpec
from models import CheckpointError, MultiSymbolPolicy
from models.export import FORMATS, export
from trainers import checkpoints

SUFFIX = {"torchscript": ".pt", "onnx": ".onnx"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainers.export", description=__doc__.splitlines()[0])
    add_run_dir(parser)
    parser.add_argument("--format", choices=FORMATS, default="torchscript",
                        help='torchscript (default) or onnx (needs pip install -e ".[export]")')
    parser.add_argument("--checkpoint", default=checkpoints.DEFAULT_CHOICE, metavar="average|best|latest|PATH",
                        help=checkpoints.CHOICE_HELP)
    parser.add_argument("--accounts-per-symbol", type=int, default=1, metavar="E",
                        help="accounts per symbol in the batch the file takes (default 1)")
    parser.add_argument("--out", type=Path, help="output file (default: RUN_DIR/policy.pt or policy.onnx)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.accounts_per_symbol < 1:
        parser.error("--accounts-per-symbol must be >= 1")
    if args.checkpoint == "ensemble":
        parser.error("--checkpoint ensemble: the ensemble averages several networks' action probabilities at "
                     "run time and is not one network to export; export --checkpoint average (one network "
                     "with the mean of the same best list's weights) or each member's step_*.safetensors")
    try:
        config = read_run_config(args.run_dir / "config.toml")
        chosen, which = checkpoints.choose(args.run_dir, args.checkpoint)
        policy = MultiSymbolPolicy(config.run.symbols, config.model, TradingSpec.from_config(config.env))
        checkpoints.load_weights(chosen, policy)
        out = args.out or args.run_dir / f"policy{SUFFIX[args.format]}"
        diff = export(policy, out, args.format, args.accounts_per_symbol)
    except (ConfigError, checkpoints.ResumeError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n = len(config.run.symbols) * args.accounts_per_symbol
    print(f"{which}\nwrote {out} ({args.format}): inputs {', '.join(policy.spec.obs_shapes)} (each (N, ...)) and "
          f"mask (N, {policy.spec.num_actions}) for N = {n} accounts ({', '.join(config.run.symbols)} x "
          f"{args.accounts_per_symbol}); outputs masked logits (N, {policy.spec.num_actions}) and values (N,); "
          f"max |diff| from the eager policy {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
