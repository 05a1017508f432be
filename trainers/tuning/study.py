"""An Optuna study of training runs: opened (or resumed, refusing other trial settings) in its
storage, worked on by one or several processes (or hosts), reported when it holds its trials.
trainers.tune is its command line."""
from __future__ import annotations

import multiprocessing
import os

import numpy as np
import optuna
from rich.console import Console

from configs.loader import ConfigError, flatten
from configs.train import as_dict
from trainers.tuning.report import SCORED, write_report
from trainers.tuning.trial import StudySpec, TrialFailed, run_trial

STUDY_NAME = "tune"
PER_RUN = ("run.device", "run.torch_threads")
"""settings that may differ when a study is resumed: where trials run, not what they learn"""


def open_study(spec: StudySpec, seed: int = 0, pruner: optuna.pruners.BasePruner | None = None
               ) -> optuna.Study:
    """Create or load the study in its storage (spec.storage); ConfigError when a loaded one was
    started with other trial settings. `seed` varies the sampler between workers and resumptions."""
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
    from optuna.study import MaxTrialsCallback

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
