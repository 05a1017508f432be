"""Walk-forward evaluation: `python -m trainers.walkforward --symbols SPX,GOOGL --folds 3 --seeds 1,2`.

Each fold trains an ordinary run per seed on its past (RUN_DIR/fold_k/seed_s), selects a
checkpoint on its validation window and trades its test window; the test windows are stitched
into one out-of-sample curve per symbol and seed and judged with intervals over seeds and folds
(trainers.folds; docs/validation.md, "Walk-forward"). Rerun the same command to continue an
interrupted walk-forward: finished runs are not redone. The same command on several hosts sharing
RUN_DIR (or twice on one) splits the fold x seed runs between them (trainers.folds.runs.run_folds).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from configs.cli import add_config, add_data_dir, add_device, add_overrides
from configs.loader import ConfigError
from configs.train import TrainConfig, explicit_settings
from envs import DataError, load_market
from envs.folds import parse_span, plan_folds
from models import CheckpointError
from ppo_core import cpu_threads
from trainers.folds.report import print_report, write_report
from trainers.folds.runs import WalkForward, check_plan, purge_guarantee, run_folds
from trainers.folds.stitch import summarize
from trainers import checkpoints
from trainers.run.resolve import new_run_config, parse_symbols

EXIT_OK, EXIT_ERROR, EXIT_INTERRUPTED = 0, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.walkforward",
        description="Walk-forward evaluation: train per fold and seed, trade each fold's test window, "
                    "stitch them, and report intervals over seeds and folds.",
        epilog="Any trainer setting: --config FILE, --set section.key=value. Spans are bars of all "
               "symbols' timestamps (500) or calendar periods (90D, 8W, 6M, 2Y).")
    parser.add_argument("--symbols", help="comma-separated symbols (default: the config's)")
    add_data_dir(parser)
    add_config(parser)
    add_overrides(parser)
    parser.add_argument("--folds", type=int, default=3, help="number of folds (default 3)")
    parser.add_argument("--mode", choices=("anchored", "rolling"), default="anchored",
                        help="anchored: train from the data's start; rolling: --train-span before validation")
    parser.add_argument("--train-span", help="rolling mode's training span (default: 2 x the test span)")
    parser.add_argument("--val-span", help="validation window (default: the test span)")
    parser.add_argument("--test-span", help="test window (default: bars // (folds + 3))")
    parser.add_argument("--purge", default="auto",
                        help="bars between train and validation and between validation and test; auto = "
                             "lookback + 1: no validation or test observation window holds a bar of the "
                             "previous split (feature normalisation windows reach further: docs/validation.md)")
    parser.add_argument("--embargo", type=int, default=0, help="bars between consecutive test windows (default 0)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds (default 1,2,3)")
    parser.add_argument("--steps-per-fold", type=int, help="account-steps per fold and seed (default run.total_steps)")
    parser.add_argument("--configurations", type=int, default=1, metavar="N",
                        help="how many settings you compared on walk-forwards of this period before this one "
                             "(default 1: none); the significance of the stitched curves is deflated for N")
    parser.add_argument("--warm-start", action="store_true",
                        help="start fold k+1 from fold k's selected weights (continual retraining)")
    parser.add_argument("--jobs", type=int, default=1, help="runs of one fold trained in parallel processes")
    add_device(parser)
    parser.add_argument("--run-dir", type=Path, help="output folder (default: runs/walkforward-<time>-<symbols>)")
    return parser


def resolve(args: argparse.Namespace) -> WalkForward:
    """The walk-forward the command line asks for; ConfigError / ValueError naming the flag."""
    cli: dict[str, object] = {}
    if args.symbols is not None:
        cli["run.symbols"] = parse_symbols(args.symbols)
    for key, value in (("run.data_dir", args.data_dir), ("run.device", args.device)):
        if value is not None:
            cli[key] = value
    base: TrainConfig = new_run_config(explicit_settings(args.config, args.overrides, cli))
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 1,2,3") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {args.seeds!r}: give distinct seeds, e.g. 1,2,3")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be >= 1")
    if args.configurations < 1:
        raise ConfigError(f"--configurations {args.configurations}: must be >= 1 (1 = this setting alone)")
    purge = base.env.lookback + 1 if args.purge == "auto" else int(args.purge) if str(args.purge).isdigit() else None
    if purge is None:
        raise ConfigError(f"--purge {args.purge!r}: auto or a number of bars")
    if args.jobs > 1 and not base.run.torch_threads:  # processes x threads stay within the cores
        base = replace(base, run=replace(base.run, torch_threads=cpu_threads(0, args.jobs)))
    markets = load_market(base.run.symbols, base.run.data_dir)
    spans = {name: parse_span(value, f"--{name.replace('_', '-')}") if value is not None else None
             for name, value in (("test_span", args.test_span), ("val_span", args.val_span),
                                 ("train_span", args.train_span))}
    folds = plan_folds([bars.timestamps for bars in markets.values()], args.folds, args.mode,
                       embargo=args.embargo, **spans)
    run_dir = args.run_dir or Path("runs") / f"walkforward-{time.strftime('%Y%m%d-%H%M%S')}-{'-'.join(base.run.symbols)}"
    return WalkForward(run_dir, folds, seeds, base, args.steps_per_fold or base.run.total_steps, purge, args.warm_start)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        walk = resolve(args)
        continuing = check_plan(walk)
    except (ConfigError, ValueError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    console.print(f"{'continuing' if continuing else 'walk-forward'} in {walk.run_dir}: {len(walk.folds)} folds x "
                  f"{len(walk.seeds)} seeds, {walk.steps_per_fold:,} account-steps each; "
                  f"{purge_guarantee(walk.purge_bars, walk.base.env.lookback)}", markup=False)
    for fold in walk.folds:
        console.print(f"fold {fold.index}: train {fold.train_start} .., validation {fold.val_start} .., test "
                      f"{fold.test_start} .. {fold.test_end} (exclusive)", markup=False)
    try:
        payloads = run_folds(walk, args.jobs, on_pair=lambda pair, _, here: console.print(
            f"fold {pair.fold.index} seed {pair.seed}: tested {'here' if here else 'by another process'} "
            f"({pair.run_dir})", markup=False))
    except (ConfigError, ValueError, DataError, checkpoints.ResumeError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    if payloads is None:
        console.print(f"interrupted; run the same command again to continue in {walk.run_dir}", style="bold yellow")
        return EXIT_INTERRUPTED
    report = {**walk.plan(), "run_dir": str(walk.run_dir), "mode": args.mode, "embargo": args.embargo,
              "purge": purge_guarantee(walk.purge_bars, walk.base.env.lookback),
              "configurations": args.configurations,
              "summary": summarize(payloads, walk.folds, walk.seeds, walk.base.run.symbols,
                                   configurations=args.configurations)}
    print_report(report, console)
    paths = write_report(walk.run_dir, report)
    console.print(f"wrote {', '.join(str(p) for p in paths)}", markup=False)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
