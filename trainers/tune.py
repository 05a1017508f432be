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
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from configs.cli import add_config, add_overrides
from configs.loader import ConfigError, flatten
from configs.train import as_dict
from trainers.run.resolve import parse_symbols

if TYPE_CHECKING:
    import optuna

    from trainers.tuning.trial import StudySpec

STUDY_NAME = "tune"
INSTALL_HINT = 'trainers.tune needs Optuna, the tune extra: pip install -e ".[tune]"'
PER_RUN = ("run.device", "run.torch_threads")
"""settings that may differ when a study is resumed: where trials run, not what they learn"""


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


def open_study(spec: StudySpec, seed: int = 0, pruner: optuna.pruners.BasePruner | None = None
               ) -> optuna.Study:
    """Create or load the study in its storage (spec.storage); ConfigError when a loaded one was
    started with other trial settings. `seed` varies the sampler between workers and resumptions."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trainers.tune prints its own line per trial
    spec.study_dir.mkdir(parents=True, exist_ok=True)
    storage = spec.open_storage()
    study = optuna.create_study(
        study_name=STUDY_NAME, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=pruner or optuna.pruners.MedianPruner())
    base = {key: value for key, value in flatten(as_dict(spec.config())).items() if key not in PER_RUN}
    saved = study.user_attrs.get("base_config")
    if saved is None:
        study.set_user_attr("base_config", base)
        study.set_user_attr("minibatch_sizes", list(spec.minibatch_sizes))
        return study
    changed = [key for key in base.keys() | saved.keys()
               if key not in PER_RUN and _json_form(base.get(key)) != saved.get(key)]
    if changed:
        details = "; ".join(f"{key}: the study has {saved.get(key)!r}, given {base.get(key)!r}"
                            for key in sorted(changed))
        raise ConfigError(f"{spec.storage}: {details}. A resumed study keeps its trial settings; "
                          "start a new --study-dir (or --storage) for others")
    return study


def _json_form(value: object) -> object:
    """A value as it reads back from the study's JSON user attributes (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def work(spec: StudySpec, num_trials: int, seed: int, threads: int, total: int,
         pruner: optuna.pruners.BasePruner | None = None) -> None:
    """Run up to `num_trials` trials of the study (one worker; the parent, a spawned process or
    another host's command), stopping once the study holds `total` completed or pruned trials."""
    import optuna
    from optuna.study import MaxTrialsCallback

    from trainers.tuning.report import SCORED
    from trainers.tuning.trial import TrialFailed, run_trial

    study = open_study(spec, seed, pruner)

    def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = trial.user_attrs.get("best_val_sharpe")
        score = ("no score" if best is None
                 else f"best mean val Sharpe {best:+.3f} at step {trial.user_attrs['best_step']:,}")
        where = trial.user_attrs.get("run_dir")
        print(f"trial {trial.number}: {trial.state.name.lower()}, {score} ({where})", flush=True)

    # other workers (other hosts too) add trials to the same study: stop at the study's total
    study.optimize(lambda trial: run_trial(trial, spec, threads), n_trials=num_trials, catch=(TrialFailed,),
                   callbacks=[announce, MaxTrialsCallback(total, states=SCORED)])


def run_study(spec: StudySpec, trials: int, jobs: int, console: Console,
              pruner: optuna.pruners.BasePruner | None = None) -> dict:
    """Bring the study to `trials` completed or pruned trials with up to `jobs` processes, then
    write its report; returns study.json's content."""
    from trainers.tuning.report import SCORED, write_report

    study = open_study(spec, pruner=pruner)
    done = sum(t.state in SCORED for t in study.trials)
    remaining = max(trials - done, 0)
    jobs = max(min(jobs, remaining), 1)
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    console.print(f"study {spec.storage} ({spec.study_dir}): {done} trials done, running {remaining} more with "
                  f"{jobs} worker"
                  f"{'s' * (jobs > 1)} ({threads} torch threads each)", markup=False)
    shares = [remaining // jobs + (k < remaining % jobs) for k in range(jobs)]
    # a shared --storage may have workers on other hosts starting at the same moment: this process
    # joins the seed so that they do not sample the same settings
    host = [os.getpid()] if spec.storage_url else []
    seeds = [int(np.random.SeedSequence([spec.config().run.seed, len(study.trials), k, *host]).generate_state(1)[0])
             for k in range(jobs)]
    if jobs == 1:
        if remaining:
            work(spec, remaining, seeds[0], threads, trials, pruner)
    else:
        # spawn: a fresh interpreter per worker, no forked torch thread pools or SQLite handles
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=work, args=(spec, share, seed, threads, trials, pruner))
                   for share, seed in zip(shares, seeds)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        failed = [w.exitcode for w in workers if w.exitcode]
        if failed:
            console.print(f"warning: {len(failed)} worker(s) exited with codes {failed}; the table shows "
                          "what finished (run the command again to resume)", style="bold yellow")
    return write_report(open_study(spec, pruner=pruner), spec.study_dir, console)


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
