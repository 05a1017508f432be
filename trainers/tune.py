"""Hyperparameter search with Optuna: `python -m trainers.tune --symbols SPY,AAPL --trials 20`.

Each trial trains one run (STUDY_DIR/trial_NNNN) with the guide's Appendix A ranges (learning rate,
entropy coefficient, GAE lambda, clip, epochs, minibatch size) and is scored by its best mean
validation Sharpe; the median pruner ends weak trials at a validation. The study lives in
STUDY_DIR/study.db (SQLite) or the --storage an Optuna RDB URL or journal file names: the same
command with a larger --trials resumes it, --jobs K runs K worker processes on it, and the same
command on several hosts with one shared --storage makes them workers of one study. At the end the ranked table and the selection bias of picking
its top (trainers.tuning.report) are printed and written as study.json and study.csv.

Optuna is an optional extra: pip install -e ".[tune]".
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from configs.cli import add_config, add_overrides
from configs.loader import ConfigError
from trainers.run.resolve import parse_symbols

if TYPE_CHECKING:
    from trainers.tuning.trial import StudySpec

INSTALL_HINT = 'trainers.tune needs Optuna, the tune extra: pip install -e ".[tune]"'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.tune",
        description="Search PPO hyperparameters (Appendix A ranges) by best mean validation Sharpe.",
        epilog="Trials use --config and --set like trainers.ppo, e.g. --set run.eval_every=10000; "
               "the searched keys themselves cannot be set.")
    parser.add_argument("--symbols", help="comma-separated symbols (default: the config's)")
    parser.add_argument("--trials", type=int, required=True,
                        help="completed plus pruned trials the study should hold (a resumed study runs "
                             "the rest)")
    parser.add_argument("--study-dir", type=Path,
                        help="study folder: study.db, trial_NNNN run dirs, study.json/csv "
                             "(default: runs/tune-<time>-<symbols>); an existing one is resumed")
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes sharing the study (each gets cores / jobs torch threads)")
    parser.add_argument("--storage", metavar="URL",
                        help="where the study lives, for workers on several hosts: an Optuna RDB URL "
                             "(postgresql://user:pass@host/db, mysql://..., sqlite:///PATH) or journal:PATH (a "
                             "journal file on a filesystem every host shares); default STUDY_DIR/study.db")
    parser.add_argument("--steps-per-trial", type=int, help="run.total_steps of each trial")
    add_config(parser)
    add_overrides(parser)  # of every trial
    return parser


def study_spec(args: argparse.Namespace) -> StudySpec:
    """The checked StudySpec of the command line (ConfigError for a bad one)."""
    from trainers.tuning.trial import StudySpec, check_spec

    if args.trials < 1 or args.jobs < 1:
        raise ConfigError(f"--trials and --jobs must be >= 1, got {args.trials} and {args.jobs}")
    cli: dict[str, object] = {}
    if args.symbols is not None:
        cli["run.symbols"] = parse_symbols(args.symbols)
    if args.steps_per_trial is not None:
        cli["run.total_steps"] = args.steps_per_trial
    study_dir = args.study_dir
    spec = check_spec(StudySpec(study_dir or Path("."), args.config, tuple(args.overrides), cli,
                                storage_url=args.storage))
    if study_dir is None:
        symbols = "-".join(spec.config().run.symbols)
        study_dir = Path("runs") / f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{symbols}"
    return StudySpec(study_dir, spec.config_path, spec.overrides, spec.cli, spec.minibatch_sizes, spec.storage_url)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import optuna  # noqa: F401 (only to say how to install it)
    except ImportError:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 2
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        spec = study_spec(args)
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from trainers.tuning.study import run_study

    try:
        run_study(spec, args.trials, args.jobs, console)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; resume with --study-dir {spec.study_dir} and the same settings", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
