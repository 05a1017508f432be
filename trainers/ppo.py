"""Train one PPO policy head per symbol over a shared encoder: `python -m trainers.ppo --symbols SPY,AAPL`.

This module turns the command line into a config and a run directory; the run itself lives in
trainers.run (the session's pieces in build/session, the loop in loop). Under `torchrun
--nproc_per_node=K -m trainers.ppo ...` every process runs the loop on its own accounts
(trainers.run.distributed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from configs.cli import add_config, add_data_dir, add_device, add_overrides
from configs.loader import ConfigError
from configs.train import TrainConfig, explicit_settings
from envs.yahoo import FetchError, fetch_command, fetch_symbols, make_request
from models import CheckpointError
from models.transfer import NEW_SYMBOL_HEADS, TRANSFER_STRATEGIES
from trainers import checkpoints
from trainers.run import distributed
from trainers.run.loop import train
from trainers.run.resolve import default_run_dir, new_run_config, parse_symbols, resumed_config
from trainers.run.build import open_session
from trainers.run.session import Session
from trainers.run.transfer import TransferRequest, preflight

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.ppo",
        description="Train a multi-symbol PPO trading agent (one head per symbol, shared encoder).",
        epilog="Any config field can be set with --set section.key=value, e.g. "
               "--set ppo.learning_rate=1e-4 --set env.reward.pnl=1.0. "
               "See configs/default.toml for every field.")
    parser.add_argument("--symbols", help="comma-separated symbols, e.g. SPY,AAPL (default: SPY,AAPL)")
    add_data_dir(parser)
    parser.add_argument("--fetch", action="store_true",
                        help="first download the symbols without a file from Yahoo Finance into --data-dir "
                             "(daily, adjusted, since 2005-01-01: python -m envs.fetch with its defaults; "
                             'needs the data extra: pip install -e ".[data]")')
    parser.add_argument("--strict-data", action="store_true",
                        help="refuse data files with an implausible move (an unadjusted split, a bad tick) "
                             "instead of warning (env.strict_data)")
    add_config(parser)
    parser.add_argument("--total-steps", type=int, help="account-steps to train for (all accounts count)")
    parser.add_argument("--envs-per-symbol", type=int, help="parallel accounts per symbol")
    add_device(parser)
    parser.add_argument("--amp", choices=["auto", "fp16", "bf16", "off"],
                        help="mixed precision (auto = fp16 on CUDA, off on CPU)")
    parser.add_argument("--seed", type=int, help="seed of every random stream")
    parser.add_argument("--run-dir", type=Path, help="output folder (default: runs/<time>-<symbols>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its newest intact checkpoint; settings "
                             "come from the run (flags repeating them are fine; --total-steps, --device, "
                             "run.torch_threads, run.checkpoint_every, run.eval_every, run.keep_best and "
                             "run.early_stop_* may change); a run that early stopping ended trains on "
                             "when --total-steps grows")
    parser.add_argument("--init-from", type=Path, metavar="CHECKPOINT_OR_RUN_DIR",
                        help="start a new run (step 0, fresh optimizer) from another run's weights (a run "
                             "directory's best checkpoint, else its latest) moved into this config's "
                             "architecture and symbols; report in RUN_DIR/transfer.json")
    parser.add_argument("--transfer-strategy", choices=TRANSFER_STRATEGIES,
                        help="how grown dimensions start with --init-from or a --resume with another "
                             "architecture: copy_and_extend (new entries random at 10%% of the old std), "
                             "interpolate (midpoints of neighbours), zero_pad (outputs unchanged); required "
                             "when a dimension grows")
    parser.add_argument("--new-symbol-heads", choices=NEW_SYMBOL_HEADS, default="mean",
                        help="heads of symbols the source lacks: mean of its heads (default) or fresh")
    parser.add_argument("--init-encoder-from", type=Path, metavar="CHECKPOINT_OR_RUN_DIR",
                        help="experimental: a new run whose encoder is --encoder-blend ALPHA x that run's "
                             "(transferred) encoder + (1 - ALPHA) x a fresh one; heads start fresh")
    parser.add_argument("--allow-encoder-overlap", action="store_true",
                        help="start from a supervised encoder (trainers.pretrain) whose labels reach into this run's "
                             "validation or test anyway (refused otherwise; logged)")
    parser.add_argument("--encoder-blend", type=float, default=1.0, metavar="ALPHA",
                        help="experimental: alpha in [0, 1] for --init-encoder-from (default 1)")
    parser.add_argument("--kl-anchor", type=float, metavar="COEF",
                        help="experimental: add COEF x KL(initial policy || current) to the PPO loss "
                             "(ppo.kl_anchor), e.g. 0.01 after --init-encoder-from")
    parser.add_argument("--kl-anchor-steps", type=int, metavar="N",
                        help="account-steps over which the KL anchor decays linearly to 0 (ppo.kl_anchor_steps)")
    add_overrides(parser)
    return parser


def cli_values(args: argparse.Namespace) -> dict[str, object]:
    """Dotted config keys set by the dedicated flags (ConfigError for an empty --symbols)."""
    symbols = parse_symbols(args.symbols) if args.symbols is not None else None
    mapping = {"run.symbols": symbols,
               "run.data_dir": args.data_dir, "run.total_steps": args.total_steps,
               "run.envs_per_symbol": args.envs_per_symbol, "run.device": args.device,
               "run.seed": args.seed, "ppo.amp": args.amp, "ppo.kl_anchor": args.kl_anchor,
               "ppo.kl_anchor_steps": args.kl_anchor_steps,
               "env.strict_data": True if args.strict_data else None}
    return {key: value for key, value in mapping.items() if value is not None}


def resolve_run(args: argparse.Namespace) -> tuple[TrainConfig, Path, bool]:
    """(config, run_dir, resuming) from the command line (trainers.run.resolve's rules)."""
    explicit = explicit_settings(args.config, args.overrides, cli_values(args))
    if args.resume is None:
        config = new_run_config(explicit)
        return config, args.run_dir or default_run_dir(config), False
    if args.run_dir is not None and args.run_dir.resolve() != args.resume.resolve():
        raise ConfigError(f"--run-dir {args.run_dir} differs from --resume {args.resume}; a resumed run "
                          "keeps writing to its own directory")
    return resumed_config(args.resume, explicit), args.resume, True


def fetch_missing(symbols: list[str], data_dir: str) -> None:
    """--fetch: download the symbols that have no `<data_dir>/<SYMBOL>.parquet` (envs.fetch's
    defaults), saying so; FetchError naming each symbol that could not be fetched."""
    missing = [s for s in symbols if not (Path(data_dir) / f"{s}.parquet").is_file()]
    if not missing:
        print(f"--fetch: every symbol has a file in {data_dir}; nothing to fetch")
        return
    print(f"--fetch: downloading {', '.join(missing)} from Yahoo Finance "
          f"({fetch_command(missing, data_dir)})")
    failed = [r.message for r in fetch_symbols(missing, data_dir, make_request()) if r.status == "failed"]
    if failed:
        raise FetchError(f"--fetch: {'; '.join(failed)}. Nothing trained (without --fetch, symbols "
                         "without a file trade synthetic markets)")


def open_run(args: argparse.Namespace, config: TrainConfig, run_dir: Path, resuming: bool,
             world: distributed.World) -> Session:
    """--fetch, the transfer preflight, then the session (one rank of it under torchrun)."""
    if args.fetch:
        if resuming:
            raise ConfigError("--fetch starts a new run with real bars; a resumed run keeps the "
                              "markets it started with")
        # under torchrun rank 0 downloads and the others wait for its files (or its error)
        world.main_first(lambda: fetch_missing(config.run.symbols, config.run.data_dir)
                         if world.is_main else None)
    transfer = TransferRequest(args.init_from, args.transfer_strategy, args.new_symbol_heads,
                               args.init_encoder_from, args.encoder_blend, args.allow_encoder_overlap)
    preflight(config, run_dir, resuming, transfer)
    return open_session(config, run_dir, resume=resuming, transfer=transfer, world=world)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    world = distributed.World()
    try:
        config, run_dir, resuming = resolve_run(args)
        world = distributed.start(config.run.device)  # joins torchrun's process group; else one process
        session = open_run(args, config, run_dir, resuming, world)
    except (ConfigError, checkpoints.ResumeError, CheckpointError, ValueError, FileNotFoundError,
            FetchError, distributed.LaunchError) as err:
        print(f"error: {f'rank {world.rank}: ' if world.active else ''}{err}", file=sys.stderr)
        world.close()
        return 2
    try:
        return train(session)
    finally:
        session.close()
        world.close()


if __name__ == "__main__":
    sys.exit(main())
