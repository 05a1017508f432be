"""One tuning trial: the guide's Appendix A search space, and a training run whose validations
report to the Optuna trial (pruned runs end with a checkpoint). Needs optuna (the tune extra)."""
from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from configs.loader import ConfigError
from configs.train import TrainConfig, resolve
from trainers.run.loop import EXIT_INTERRUPTED, EXIT_OK, train
from trainers.run.build import open_session
from trainers.run.session import Session
from trainers.backtest.validation import ValidationResult

JOURNAL = "journal:"
"""--storage prefix of an Optuna journal file"""
VAL_RETURNS = "val_returns/"
"""trial user attribute prefix: val_returns/<step> holds that validation's (L,) per-bar returns
(float64, base64), so a study's selection statistics count every validation of every trial on
whichever host ran it"""
MINIBATCH_SIZES = (32, 64, 128)
SEARCHED = ("ppo.learning_rate", "entropy.schedule.initial", "ppo.gae_lambda", "ppo.clip_coef",
            "ppo.update_epochs", "ppo.minibatch_size")
"""config keys each trial searches (entropy.schedule.final and the floors follow initial down)"""


class TrialFailed(RuntimeError):
    """A trial's training ended without a score; the search goes on with the next trial."""


@dataclass(frozen=True)
class StudySpec:
    """Everything a worker process needs to run trials (picklable)."""

    study_dir: Path
    config_path: Path | None
    """--config, or None for the trainer's defaults"""
    overrides: tuple[str, ...]
    """--set KEY=VALUE, applied last; none of them may name a SEARCHED key"""
    cli: dict[str, Any] = field(default_factory=dict)
    """dotted keys from the dedicated flags (symbols, steps per trial)"""
    minibatch_sizes: tuple[int, ...] = MINIBATCH_SIZES
    """the MINIBATCH_SIZES that divide each symbol's share of the rollout"""
    storage_url: str | None = None
    """--storage: an Optuna RDB URL (sqlite:///..., postgresql://..., mysql://...) or journal:PATH
    (Optuna's journal file, for a filesystem the hosts share); None: STUDY_DIR/study.db"""

    @property
    def storage(self) -> str:
        return self.storage_url or f"sqlite:///{self.study_dir.resolve() / 'study.db'}"

    def open_storage(self) -> optuna.storages.BaseStorage:
        """The Optuna storage `storage` names."""
        if self.storage.startswith(JOURNAL):
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(self.storage[len(JOURNAL):]))
        # SQLite serialises writers; a generous lock timeout lets workers queue instead of failing
        engine = {"connect_args": {"timeout": 60}} if self.storage.startswith("sqlite") else {}
        return optuna.storages.RDBStorage(self.storage, engine_kwargs=engine)

    def config(self, values: dict[str, Any] | None = None, threads: int = 0) -> TrainConfig:
        """The resolved config of a trial with `values` (dotted keys); `threads` sets
        run.torch_threads unless --set does."""
        cli = {**self.cli, **({"run.torch_threads": threads} if threads else {}), **(values or {})}
        return resolve(self.config_path, list(self.overrides), cli)


def check_spec(spec: StudySpec) -> StudySpec:
    """ConfigError for a --set of a searched key or a config without validation; the spec with the
    minibatch sizes that fit the rollout."""
    searched = [item for item in spec.overrides if item.partition("=")[0].strip() in SEARCHED]
    if searched:
        raise ConfigError(f"--set {', '.join(searched)}: trainers.tune searches {', '.join(SEARCHED)}; "
                          "leave them to the search")
    run = spec.config().run
    if not run.eval_every:
        raise ConfigError("run.eval_every = 0: trials are scored and pruned by validation; set it > 0")
    share = run.num_steps * run.envs_per_symbol
    fitting = tuple(m for m in MINIBATCH_SIZES if share % m == 0)
    if not fitting:
        raise ConfigError(f"ppo.minibatch_size: none of {MINIBATCH_SIZES} divides each symbol's share of "
                          f"the rollout (run.num_steps x run.envs_per_symbol = {share}); make it a multiple "
                          "of 32")
    return StudySpec(spec.study_dir, spec.config_path, spec.overrides, spec.cli, fitting, spec.storage_url)


def suggest(trial: optuna.Trial, base: TrainConfig, minibatch_sizes: tuple[int, ...]) -> dict[str, Any]:
    """Appendix A: dotted config values of one trial."""
    initial = trial.suggest_float("entropy.schedule.initial", 1e-3, 5e-2, log=True)
    # the schedule decays from initial to final and is held above both floors: keep all of them at or
    # under initial, or a low initial would never take effect
    final = min(base.entropy.schedule.final, initial)
    return {
        "ppo.learning_rate": trial.suggest_float("ppo.learning_rate", 1e-4, 1e-3, log=True),
        "entropy.schedule.initial": initial, "entropy.schedule.final": final,
        "entropy.schedule.floor": min(base.entropy.schedule.floor, final),
        "entropy.adaptive.floor": min(base.entropy.adaptive.floor, final),
        "ppo.gae_lambda": trial.suggest_float("ppo.gae_lambda", 0.90, 0.98),
        "ppo.clip_coef": trial.suggest_float("ppo.clip_coef", 0.1, 0.3),
        "ppo.update_epochs": trial.suggest_int("ppo.update_epochs", 5, 15),
        "ppo.minibatch_size": trial.suggest_categorical("ppo.minibatch_size", list(minibatch_sizes)),
    }


def trial_dir(study_dir: Path, number: int) -> Path:
    return study_dir / f"trial_{number:04d}"


def run_trial(trial: optuna.Trial, spec: StudySpec, threads: int) -> float:
    """Train one trial in its own run dir (console output in its train.log); its best mean val
    Sharpe. Raises optuna.TrialPruned (after a checkpoint) or TrialFailed."""
    base = spec.config(threads=threads)
    config = spec.config(suggest(trial, base, spec.minibatch_sizes), threads)
    run_dir = trial_dir(spec.study_dir, trial.number)
    run_dir.mkdir(parents=True, exist_ok=True)
    trial.set_user_attr("run_dir", str(run_dir))
    with open(run_dir / "train.log", "w") as log, contextlib.redirect_stdout(log):
        session = open_session(config, run_dir)
        session.on_validation = lambda step, result: report(trial, session, step, result)
        try:
            code = train(session)
        except optuna.TrialPruned:
            session.save()  # the pruned run keeps its weights and best list like any other
            raise
        finally:
            record_best(trial, session)
            session.close()
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt  # Ctrl-C / SIGTERM ends the search, not just this trial
    top = session.best_k.top
    if code != EXIT_OK or top is None:
        why = f"training exited with code {code}" if code != EXIT_OK else "no finite validation score"
        raise TrialFailed(f"trial {trial.number}: {why}; see {run_dir / 'train.log'}")
    return top.score


def report(trial: optuna.Trial, session: Session, step: int, result: ValidationResult) -> None:
    """Session.on_validation: record the validation's returns on the trial (VAL_RETURNS), report
    the mean Sharpe to the trial and prune when the pruner says so."""
    trial.set_user_attr(f"{VAL_RETURNS}{step}", encode_returns(result.returns))
    score = result.mean["sharpe"]
    if np.isfinite(score):
        trial.report(score, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step:,}: mean val Sharpe {score:+.3f}")


def record_best(trial: optuna.Trial, session: Session) -> None:
    """The run's best validation on the trial (pruned trials have no value of their own)."""
    top = session.best_k.top
    if top is not None:
        trial.set_user_attr("best_val_sharpe", top.score)
        trial.set_user_attr("best_step", top.step)
    trial.set_user_attr("steps", session.global_step)


def encode_returns(returns: np.ndarray) -> str:
    """(L,) float64 returns as base64 text (a trial user attribute; exact, unlike a decimal list)."""
    return base64.b64encode(np.asarray(returns, dtype="<f8").tobytes()).decode("ascii")


def decode_returns(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").copy()
