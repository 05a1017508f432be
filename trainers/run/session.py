"""Everything a training run holds besides the loop: construction of env, policy and learner from
a resolved config and a run directory, the training iteration, validation and early stopping,
resume from a checkpoint, checkpoint writes, and Ctrl-C / SIGTERM handling.

Under torchrun (trainers.run.distributed) every rank holds a Session over its own accounts; the
methods that write or validate are collectives that every rank calls at the same point, and rank
0 alone writes, validates and logs."""
from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from configs.loader import ConfigError, dumps_toml
from configs.train import TrainConfig, as_dict
from envs import VecTradingEnv
from models import MultiSymbolPolicy, weight_stats
from ppo_core.files import atomic_write_bytes
from ppo_core import (EntropyController, IterationResult, PPOLearner, RewardNormalizer, RolloutBuffer,
                      ppo_iteration, resolve_device)
from trainers.run import checkpoints
from trainers.monitoring.alerts import CollapseAlerts
from trainers.run.distributed import QuietLog, World, rank_part, to_cpu, world_change_note
from trainers.monitoring.console import RunLogger
from trainers.monitoring.rollout_stats import RolloutStats
from trainers.backtest.best_k import Scoreboard, Verdict
from trainers.run.transfer import (TransferRequest, differs, init_encoder_from, init_from, resume_transferred,
                                    transfer_from)
from trainers.backtest.validation import ValidationResult, Validator, describe, summary

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
    log: RunLogger | QuietLog
    """QuietLog on data-parallel ranks other than 0"""
    obs: dict[str, torch.Tensor]
    scoreboard: Scoreboard
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
        result = ppo_iteration(
            self.env, self.policy, self.learner, self.buffer, self.entropy, self.obs,
            global_step=self.global_step, total_steps=self.num_iterations * self.batch_size,
            num_groups=len(self.config.run.symbols), generator=self.generator,
            on_step=self.stats.on_step, reward_scale=self.reward_normalizer, sync_timing=sync_timing,
            world_size=self.world.size)
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
            "scoreboard": self.scoreboard.state_dict(), "early_stop": self.early_stop,
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
            self.scoreboard.load_state_dict(state["scoreboard"])
        self.early_stop = state.get("early_stop")
        gone = {s.step for s in self.scoreboard.best
                if not checkpoints.at_step(self.run_dir, s.step).weights.is_file()}
        if gone:  # e.g. resumed from an older checkpoint after a newer best had displaced them
            self.scoreboard.forget(gone)
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
        if self.world.is_main:
            checkpoint = checkpoints.save(self.run_dir, self.policy, as_dict(self.config),
                                            list(self.config.run.symbols), self.global_step, state,
                                            best=self.scoreboard.best)
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
            verdict = self.scoreboard.record(self.global_step, result.mean["sharpe"])
            self.log.validation(self.global_step, result.scalars(), summary(result, self.scoreboard.top))
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
        top = self.scoreboard.top
        resume = f"python -m trainers.ppo --resume {self.run_dir} --total-steps N (N > {budget})"
        record = {**self.early_stop, "best_step": top.step if top else None,
                  "best_val_sharpe": top.score if top else None,
                  "validations_since_improvement": self.scoreboard.since_improvement,
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


class StopRequest:
    """First Ctrl-C or SIGTERM asks the loop to checkpoint and stop; a second Ctrl-C aborts, unless
    `repeat_aborts` is False: under torchrun the launcher passes a Ctrl-C on to workers that the
    terminal has already signalled (and kills those still running 30 s later)."""

    def __init__(self, repeat_aborts: bool = True, announce: bool = True) -> None:
        self.requested = False
        self.signal_name = ""
        self.repeat_aborts = repeat_aborts
        self.announce = announce
        """say so on stderr (rank 0 alone under torchrun)"""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and self.repeat_aborts and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        if self.announce:
            abort = " (Ctrl-C again to abort without saving)" if self.repeat_aborts else ""
            print(f"\n{self.signal_name}: finishing this iteration, then saving a checkpoint{abort}",
                  file=sys.stderr)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def open_session(config: TrainConfig, run_dir: Path, *, resume: bool = False,
                 transfer: TransferRequest | None = None, world: World | None = None) -> Session:
    """Build env, policy, learner and buffer for a resolved `config` in `run_dir`; with `resume`,
    restore the newest intact checkpoint there (saying which, and why when it is not the latest),
    transferring its weights when the architecture or symbols changed; `transfer.source` starts a
    new run from another run's weights. A new run refuses a directory that already holds one.

    `world` (trainers.run.distributed.start) makes this one rank of a data-parallel run: it trains on
    world.device, steps its own accounts from world.seed(run.seed), starts from rank 0's weights
    and averages gradients with the other ranks; rank 0 alone writes to `run_dir`."""
    transfer = transfer or TransferRequest()
    world = world or World()
    run_dir = Path(run_dir)
    if not resume and (checkpoints.checkpoint_dir(run_dir) / "latest.json").exists():
        raise ConfigError(f"{run_dir}: already holds a run; continue it with --resume {run_dir} "
                          "or choose another --run-dir")
    # rank 0 first: it may rename a damaged checkpoint and repoint latest.json
    resume_point = world.main_first(lambda: checkpoints.resume_point(run_dir)) if resume else None
    try:
        device = world.device if world.active else resolve_device(config.run.device)
    except ValueError as err:
        raise ConfigError(f"run.{err}") from err
    if config.run.torch_threads:
        torch.set_num_threads(config.run.torch_threads)
    torch.manual_seed(config.run.seed)  # the same initial weights on every rank
    seed = world.seed(config.run.seed)

    # the data first: a bad file or folder fails before the run directory is touched
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = VecTradingEnv(config.run.symbols, config.run.envs_per_symbol, config.env, device,
                            data_dir=config.run.data_dir, split="train", seed=seed, final_obs="auto")
    # the env's split dates (given, or derived from every symbol's timestamps) are the run's from
    # here on: config.toml and the checkpoints record them, so resume, validation and evaluation
    # cut exactly where training did, whatever the data folder holds later
    config = replace(config, env=replace(config.env, split_dates=env.config.split_dates))
    log: RunLogger | QuietLog = QuietLog()
    if world.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.toml").write_text(dumps_toml(as_dict(config)))
        log = RunLogger(run_dir, config.run.total_steps,
                        start_step=resume_point[0].step if resume_point else 0)
    for warning in caught:
        log.message(f"warning: {warning.message}", style="bold yellow")
    val_start, test_start = config.env.split_dates
    log.message(f"splits, common to every symbol: train before {val_start}, val from {val_start}, "
                f"test from {test_start} (env.split_dates)")
    spec = env.trading_spec
    policy = MultiSymbolPolicy(config.run.symbols, config.model, spec).to(device)
    if config.run.compile:
        policy.compile_evaluate()
    if world.rank:
        torch.manual_seed(seed)  # rank 0 samples from the single-process stream, the others their own
    session = Session(
        config=config, run_dir=run_dir, device=device, env=env, policy=policy,
        learner=PPOLearner(policy, config.ppo, device, sync=world.mean_ if world.active else None),
        entropy=EntropyController(config.entropy),
        buffer=RolloutBuffer(config.run.num_steps, env.num_envs, spec.obs_shapes, device, spec.num_actions,
                             compact=env.compact_observations() if config.run.rollout_storage == "index"
                             else None),
        stats=RolloutStats(config.run.symbols, config.run.envs_per_symbol, spec.action_names, device),
        alerts=CollapseAlerts(config.alerts, config.run.symbols, spec.action_names, spec.ids("hold")),
        generator=torch.Generator().manual_seed(seed),
        log=log, obs=env.reset(seed=seed)[0],
        scoreboard=Scoreboard(config.run.keep_best, config.run.early_stop_patience,
                              config.run.early_stop_min_delta, config.run.early_stop_target_sharpe),
        validator=open_validator(config, env, device, log),
        reward_normalizer=(RewardNormalizer(env.num_envs, config.ppo.gamma, device)
                           if config.ppo.normalize_rewards else None),
        world=world,
    )
    enc = config.model.encoder
    precision = str(session.learner.amp_dtype or torch.float32).removeprefix("torch.")
    log.message(f"device {device}, amp {config.ppo.amp} ({precision}); encoder '{config.run.encoder_preset}' "
                f"({enc.n_layers} layers x {enc.d_model}, {enc.n_heads} heads); the seed's full size is "
                "--set run.encoder_preset=full (default on CUDA)")
    if enc.dropout > 0:
        log.message(f"note: model.encoder.dropout = {enc.dropout} has no effect in PPO training: rollouts "
                    "and updates both run in eval mode, so the ratio starts at exactly 1")
    counts = policy.count_parameters()
    log.message("parameters: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.1%}"
                                           for k, v in counts.items()))
    if resume_point is not None:
        checkpoint, state, notes = resume_point
        for note in notes:
            log.message(f"warning: {note}", style="bold yellow")
        if differs(checkpoint.weights, policy):  # architecture or symbols changed since it was written
            resume_transferred(session, state, transfer_from(checkpoint.weights, policy, transfer,
                                                             config.run.seed))
        else:
            checkpoints.load_weights(checkpoint, policy)
            session.restore(state)
            log.message(f"resumed {run_dir} at step {session.global_step:,} "
                        f"(iteration {session.iteration}, {checkpoint.weights.name})", style="bold")
            continue_after_early_stop(session)
    elif transfer.source is not None:
        init_from(session, transfer)
    elif transfer.encoder_source is not None:
        init_encoder_from(session, transfer)
    else:
        log_initial_weights(log, policy)
    if world.active:
        world.broadcast_parameters(policy)  # built or loaded alike everywhere; this makes sure
        log.message(f"data-parallel: {world.size} processes ({'NCCL' if device.type == 'cuda' else 'gloo'}), "
                    f"each {env.num_envs} accounts; {session.batch_size:,} account-steps per iteration, "
                    "gradients averaged over all")
    return session


def open_validator(config: TrainConfig, env: VecTradingEnv, device: torch.device,
                   log: RunLogger | QuietLog) -> Validator | None:
    """The run's Validator over every symbol that can trade its val split (saying which are skipped
    and what selection and early stopping will do), or None when validation is off."""
    run = config.run
    if not run.eval_every:
        log.message("validation off (run.eval_every = 0): no best checkpoints, no early stopping; "
                    "trainers.evaluate will use the latest checkpoint")
        return None
    skipped = env.untradable("val")
    symbols = [s for s in run.symbols if s not in skipped]
    if skipped:
        log.message(f"warning: validation skips {', '.join(skipped)} (no tradable bar in the val split); "
                    f"the mean is over the other {len(symbols)}", style="bold yellow")
    if not symbols:
        log.message("warning: validation off: no symbol can trade the val split", style="bold yellow")
        return None
    stopping = [f"after {run.early_stop_patience} validations without a gain of more than "
                f"{run.early_stop_min_delta:g}"] if run.early_stop_patience else []
    if run.early_stop_target_sharpe < math.inf:
        stopping.append(f"at mean val Sharpe {run.early_stop_target_sharpe:g}")
    log.message(f"validation every {run.eval_every:,} account-steps and at the end: greedy policy on the "
                f"whole val split of {len(symbols)} symbols; keeping the best {run.keep_best} checkpoints by "
                f"mean val Sharpe; early stopping {' or '.join(stopping) if stopping else 'off'}")
    # its weights are overwritten before every validation: fork_rng keeps their random init from
    # drawing on the global stream that the rollouts sample from
    with torch.random.fork_rng(devices=[]):
        return Validator(symbols, env.markets, config.env, config.model, device, run.seed)


def continue_after_early_stop(session: Session) -> None:
    """A run that early stopping ended trains on when resumed with a larger run.total_steps, with
    a fresh patience window and its best checkpoints; with the same budget it stays stopped."""
    stopped = session.early_stop
    if stopped is None or session.config.run.total_steps <= stopped["total_steps"]:
        return
    session.early_stop = None
    session.scoreboard.restart_patience()
    (session.run_dir / STOPPED_FILE).unlink(missing_ok=True)
    session.log.message(f"training on past the early stop at step {stopped['step']:,} ({stopped['reason']}): "
                        f"run.total_steps {stopped['total_steps']:,} -> {session.config.run.total_steps:,}; "
                        "patience starts again, the best checkpoints stay in the running", style="bold")


def log_initial_weights(log: RunLogger | QuietLog, policy: torch.nn.Module) -> None:
    """TensorBoard `init/<param>/<stat>` and one console line flagging NaN/Inf weights."""
    stats = weight_stats(policy)
    log.scalars(0, {f"init/{name}/{key}": float(row[key]) for name, row in stats.items()
                    for key in ("mean", "std", "max_abs", "nan", "inf")})
    bad = [name for name, row in stats.items() if row.get("nan", 0) or row.get("inf", 0)]
    largest = max(row["max_abs"] for row in stats.values())
    log.message(f"initial weights: {len(stats)} tensors, max |w| {largest:.3f}, "
                + (f"NaN/Inf in {bad}" if bad else "no NaN/Inf"),
                style="bold red" if bad else "")
