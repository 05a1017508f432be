"""The live objects of one training run and what it does with them between loop steps: the
training iteration, validation and early stopping, checkpoint writes and restoring a checkpoint's
state (trainers.run.build opens a Session; trainers.run.loop drives it).

Under torchrun (trainers.run.distributed) every rank holds a Session over its own accounts; the
methods that write or validate are collectives that every rank calls at the same point, and rank
0 alone writes, validates and logs."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from configs.train import TrainConfig, as_dict
from envs import VecTradingEnv
from models import MultiSymbolPolicy
from ppo_core import (EntropyController, IterationResult, PPOLearner, PPOParts, RewardNormalizer,
                      RolloutBuffer, ppo_iteration)
from ppo_core.files import atomic_write_bytes
from trainers.backtest import trials
from trainers.checkpoints.best_k import BestK, Verdict
from trainers.backtest.validation import ValidationResult, Validator, describe, summary
from trainers.monitoring.alerts import CollapseAlerts
from trainers.monitoring.console import RunLog
from trainers.monitoring.rollout_stats import RolloutStats
from trainers import checkpoints
from trainers.run.distributed import World, rank_part, to_cpu, world_change_note
from trainers.run.lock import ProcessLock

STOPPED_FILE = "stopped.json"
"""RUN_DIR/stopped.json: why and where early stopping ended the run"""
RANK_KEYS = ("env", "obs", "rng", "generator", "episode_returns", "episode_lengths", "reward_normalizer")
"""the trainer state each data-parallel rank has of its own (its accounts and random streams); the
rest (counters, optimizer, entropy stack, alerts, best list) is the same on every rank"""


@dataclass
class Session:
    """The live objects of one run and its counters."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    env: VecTradingEnv
    policy: MultiSymbolPolicy
    learner: PPOLearner
    entropy: EntropyController
    buffer: RolloutBuffer
    stats: RolloutStats
    alerts: CollapseAlerts
    generator: torch.Generator
    log: RunLog
    """QuietLog on data-parallel ranks other than 0"""
    obs: dict[str, torch.Tensor]
    best_k: BestK
    validator: Validator | None = None
    """None when run.eval_every is 0 or no symbol can trade its val split"""
    reward_normalizer: RewardNormalizer | None = None
    global_step: int = 0
    iteration: int = 0
    early_stop: dict[str, Any] | None = None
    """{"reason", "step", "total_steps"} once early stopping has ended the run"""
    on_validation: Callable[[int, ValidationResult], None] | None = None
    """called with (global_step, result) after each validation is scored and logged (trainers.tune
    reports to its trial here; an exception it raises ends the run like any other)"""
    lock: ProcessLock | None = None
    """rank 0's lock on run_dir (trainers.run.lock), released by close"""
    world: World = field(default_factory=World)
    """this process among the data-parallel ones (a single process by default)"""

    @property
    def batch_size(self) -> int:
        """Account-steps per iteration over every process: T x N x world size."""
        return self.buffer.batch_size * self.world.size

    @property
    def num_iterations(self) -> int:
        """Iterations of the whole run (the last one may pass run.total_steps)."""
        return math.ceil(self.config.run.total_steps / self.batch_size)

    def iterate(self, sync_timing: bool = False) -> IterationResult:
        """One training iteration (ppo_core.ppo_iteration with this run's pieces); advances obs,
        global_step and iteration. Raises NonFiniteLossError from the update."""
        self.stats.reset()
        parts = PPOParts(self.env, self.policy, self.learner, self.buffer, self.entropy,
                         num_groups=len(self.config.run.symbols), generator=self.generator,
                         on_step=self.stats.on_step, reward_scale=self.reward_normalizer)
        result = ppo_iteration(parts, self.obs, global_step=self.global_step,
                               total_steps=self.num_iterations * self.batch_size, world_size=self.world.size,
                               sync_timing=sync_timing)
        self._sum_rollout_stats()
        self.obs = result.next_obs
        self.global_step += self.batch_size
        self.iteration += 1
        return result

    def _sum_rollout_stats(self) -> None:
        """Under torchrun: sum the rollout's tallies over the ranks (one all-reduce) and count every
        rank's steps, so the logged rates and the collapse alerts cover all accounts alike."""
        if not self.world.active:
            return
        stats = self.stats
        self.world.sum_([stats.policy_actions, stats.executed_actions, stats.events,
                         *stats.reward_sums.values(), *stats.weighted_abs_sums.values(),
                         stats.episode_sums, stats.episode_counts])
        stats.steps *= self.world.size

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs (this rank's part of it)."""
        return {
            "global_step": self.global_step, "iteration": self.iteration,
            "learner": self.learner.state_dict(), "entropy": self.entropy.state_dict(),
            "env": self.env.state_dict(), "obs": {k: v.cpu() for k, v in self.obs.items()},
            "rng": checkpoints.rng_state(self.device if self.world.active else None),
            "generator": self.generator.get_state(),
            "alerts": self.alerts.state_dict(),
            "episode_returns": self.buffer.episode_returns.cpu(),
            "episode_lengths": self.buffer.episode_lengths.cpu(),
            "reward_normalizer": self.reward_normalizer.state_dict() if self.reward_normalizer else None,
            "scoreboard": self.best_k.state_dict(), "early_stop": self.early_stop,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Load a trainer state. A data-parallel checkpoint holds every rank's part (RANK_KEYS):
        each rank takes its own, and a rank the checkpoint lacks keeps its fresh episodes."""
        self.global_step, self.iteration = state["global_step"], state["iteration"]
        self.learner.load_state_dict(state["learner"])
        self.entropy.load_state_dict(state["entropy"])
        if "alerts" in state:  # checkpoints written before the alerts existed lack it
            self.alerts.load_state_dict(state["alerts"])
        own = rank_part(state, self.world.rank)
        if own is not None:
            self.env.load_state_dict(own["env"])
            self.obs = {k: v.to(self.device) for k, v in own["obs"].items()}
            checkpoints.set_rng_state(own["rng"], self.device)
            self.generator.set_state(own["generator"])
            self.buffer.episode_returns.copy_(own["episode_returns"])
            self.buffer.episode_lengths.copy_(own["episode_lengths"])
            if self.reward_normalizer is not None:
                self.reward_normalizer.load_state_dict(own["reward_normalizer"])
        saved_world = state.get("world_size", 1)
        if saved_world != self.world.size:
            # an iteration now covers another number of account-steps; the budget stays global_step's
            self.iteration = self.global_step // self.batch_size
            self.log.message(world_change_note(saved_world, self.world.size), style="bold yellow")
        # checkpoints written before validation existed hold neither
        if state.get("scoreboard") is not None:
            self.best_k.load_state_dict(state["scoreboard"])
        self.early_stop = state.get("early_stop")
        gone = {s.step for s in self.best_k.best
                if not checkpoints.at_step(self.run_dir, s.step).weights.is_file()}
        if gone:  # e.g. resumed from an older checkpoint after a newer best had displaced them
            self.best_k.forget(gone)
            self.log.message(f"warning: best checkpoints of steps {sorted(gone)} no longer exist; dropped "
                             "from the best list", style="bold yellow")

    def save(self) -> checkpoints.Checkpoint | None:
        """Write a checkpoint; None on data-parallel ranks other than 0. Under torchrun a collective:
        rank 0's state holds its own part plus `world_size` and `ranks`, the other ranks' parts."""
        state = self.trainer_state()
        if self.world.active:
            parts = self.world.gather_objects(to_cpu({key: state[key] for key in RANK_KEYS}))
            state.update(world_size=self.world.size, ranks=parts[1:])
        checkpoint = None
        if self.world.is_main and not self.run_dir.is_dir():
            # removed while the run went on (say, deleted during a Ctrl-C shutdown): not recreated
            self.log.message(f"{self.run_dir} no longer exists; no checkpoint written at step {self.global_step:,}",
                             style="bold yellow")
        elif self.world.is_main:
            checkpoint = checkpoints.save(self.run_dir, self.policy, as_dict(self.config),
                                            list(self.config.run.symbols), self.global_step, state,
                                            best=self.best_k.best)
        self.world.barrier()  # the other ranks go on once the checkpoint exists
        return checkpoint

    def validation_due(self) -> bool:
        """Whether the iteration just run passed a multiple of run.eval_every or ended the run."""
        if self.validator is None:  # run.eval_every = 0, or no symbol to validate
            return False
        every = self.config.run.eval_every
        passed = self.global_step // every > (self.global_step - self.batch_size) // every
        return passed or self.iteration == self.num_iterations

    def validate(self) -> Verdict:
        """Backtest the greedy policy on the val split, log `val/*` and score the mean Sharpe. Under
        torchrun rank 0 validates and every rank gets its verdict, so all keep or stop together."""
        assert self.validator is not None, "validate() needs a validator (validation_due() says when)"
        verdict = None
        if self.world.is_main:
            result = self.validator.run(self.policy)
            verdict = self.best_k.record(self.global_step, result.mean["sharpe"])
            # every validation is a trial of the selection, kept or not (trainers.backtest.trials)
            trials.record(self.run_dir, self.global_step, result.mean["sharpe"], result.returns)
            self.log.validation(self.global_step, result.scalars(), summary(result, self.best_k.top))
            self.log.message(describe(self.global_step, result, verdict.kept))
            if self.on_validation is not None:
                self.on_validation(self.global_step, result)
        return self.world.broadcast_object(verdict)

    def stop_early(self, reason: str) -> None:
        """End the run for early stopping: the final checkpoint (whose state records the stop), the
        reason in TensorBoard, on the console and in RUN_DIR/stopped.json."""
        budget = self.config.run.total_steps
        self.early_stop = {"reason": reason, "step": self.global_step, "total_steps": budget}
        checkpoint = self.save()
        if checkpoint is None:  # a data-parallel rank other than 0, which writes and reports
            return
        top = self.best_k.top
        resume = f"python -m trainers.ppo --resume {self.run_dir} --total-steps N (N > {budget})"
        record = {**self.early_stop, "best_step": top.step if top else None,
                  "best_val_sharpe": top.score if top else None,
                  "validations_since_improvement": self.best_k.since_improvement,
                  "checkpoint": checkpoint.weights.name, "train_on": resume}
        atomic_write_bytes(self.run_dir / STOPPED_FILE, json.dumps(record, indent=2).encode())
        self.log.text(self.global_step, "early_stop", reason)
        self.log.message(f"early stop at step {self.global_step:,}: {reason}. Final checkpoint "
                         f"{checkpoint.weights.name}, {STOPPED_FILE} written; train on with {resume}",
                         style="bold yellow")

    def fail(self, message: str) -> None:
        """Report a fatal training problem and where the last good checkpoint is."""
        try:
            kept = f"last good checkpoint: {checkpoints.latest(self.run_dir).weights}"
        except checkpoints.ResumeError:
            kept = "no checkpoint had been written yet"
        self.log.message(f"error: {message}; {kept}", style="bold red")

    def close(self) -> None:
        self.log.close()
        if self.lock is not None:
            self.lock.release()
