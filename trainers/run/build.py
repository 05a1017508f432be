"""Opening a run: from a resolved config and a run directory to a ready Session, in named steps
(the data, the run directory and its log, the pieces, then the starting weights: a resume, a
transfer, or a fresh init).

Under torchrun (trainers.run.distributed) every rank opens its own Session over its own accounts;
rank 0 alone writes to the run directory."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from configs.loader import ConfigError, dumps_toml
from configs.train import TrainConfig, as_dict, device_profile
from envs import VecTradingEnv
from models import MultiSymbolPolicy, weight_stats
from models.transfer import TransferReport
from ppo_core import (EntropyController, PPOLearner, RewardNormalizer, RolloutBuffer, resolve_device,
                      set_cpu_threads)
from trainers.checkpoints.best_k import BestK
from trainers.backtest.validation import Validator
from trainers.monitoring.alerts import CollapseAlerts
from trainers.monitoring.console import QuietLog, RunLog, RunLogger
from trainers.monitoring.rollout_stats import RolloutStats
from trainers import checkpoints
from trainers.run.distributed import World
from trainers.run.lock import ProcessLock, run_lock
from trainers.run.session import STOPPED_FILE, Session
from trainers.run.transfer import (TransferRequest, check_label_dates, differs, init_encoder_from, init_from, record,
                                   transfer_from)

ResumePoint = tuple[checkpoints.Checkpoint, dict[str, Any], list[str]]
"""(checkpoint, trainer state, notes) from checkpoints.resume_point"""


def open_session(config: TrainConfig, run_dir: Path, *, resume: bool = False,
                 transfer: TransferRequest | None = None, world: World | None = None) -> Session:
    """Build env, policy, learner and buffer for a resolved `config` in `run_dir`; with `resume`,
    restore the newest intact checkpoint there (saying which, and why when it is not the latest),
    transferring its weights when the architecture or symbols changed; `transfer.source`
    starts a new run from another run's weights. A new run refuses a directory that already holds one.

    `world` (trainers.run.distributed.start) makes this one rank of a data-parallel run: it trains on
    world.device, steps its own accounts from world.seed(run.seed), starts from rank 0's weights
    and averages gradients with the other ranks; rank 0 alone writes to `run_dir`."""
    request = transfer or TransferRequest()
    world = world or World()
    run_dir = Path(run_dir)
    lock = run_lock(run_dir)  # one writer per run directory: rank 0 holds it until Session.close
    try:
        return _open(config, run_dir, resume, request, world, lock)
    except BaseException:
        lock.release()
        raise


def _open(config: TrainConfig, run_dir: Path, resume: bool, request: TransferRequest, world: World,
          lock: ProcessLock) -> Session:
    """open_session's steps, with `lock` taken as soon as the directory exists (or is made)."""
    if world.is_main and run_dir.exists():
        lock.acquire()
    resume_point = find_resume_point(run_dir, resume, world)
    device = set_up_process(config, world)
    env, config, warnings_seen = open_env(config, device, world.seed(config.run.seed))
    if resume_point is None:  # refused before a new directory is made; init_encoder_from reports it
        check_label_dates(request, config.env.split_dates)
    if world.is_main:  # a new directory is made (and locked) once the data has loaded
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    log = open_log(config, run_dir, resume_point, world)
    for warning in warnings_seen:
        log.message(f"warning: {warning}", style="bold yellow")
    session = assemble(config, run_dir, device, env, log, world)
    session.lock = lock
    describe_setup(session)
    start_weights(session, resume_point, request)
    if world.active:
        world.broadcast_parameters(session.policy)  # built or loaded alike everywhere; this makes sure
        log.message(f"data-parallel: {world.size} processes ({'NCCL' if device.type == 'cuda' else 'gloo'}), "
                    f"each {env.num_envs} accounts; {session.batch_size:,} account-steps per iteration, "
                    "gradients averaged over all")
    anchor_to_start(session)
    return session


def anchor_to_start(session: Session) -> None:
    """With ppo.kl_anchor > 0: freeze the starting policy as the KL anchor's reference (a resume has
    restored its own) and say so in the log."""
    anchor, ppo = session.learner.anchor, session.config.ppo
    if anchor is None:
        return
    if anchor.reference is None:
        anchor.capture(session.policy)
    left = max(ppo.kl_anchor_steps - session.global_step, 0)
    session.log.message(f"experimental KL anchor: {ppo.kl_anchor:g} x KL(initial policy || current) in the loss, "
                        f"decaying linearly to 0 at step {ppo.kl_anchor_steps:,} ({left:,} account-steps left; "
                        "ppo.kl_anchor, ppo.kl_anchor_steps)")


def find_resume_point(run_dir: Path, resume: bool, world: World) -> ResumePoint | None:
    """The checkpoint a resume continues from (None for a new run); a new run refuses a directory
    that already holds one."""
    if not resume and (checkpoints.checkpoint_dir(run_dir) / "latest.json").exists():
        raise ConfigError(f"{run_dir}: already holds a run; continue it with --resume {run_dir} "
                          "or choose another --run-dir")
    if not resume:
        return None
    # rank 0 first: it may rename a damaged checkpoint and repoint latest.json
    return world.main_first(lambda: checkpoints.resume_point(run_dir))


def set_up_process(config: TrainConfig, world: World) -> torch.device:
    """The run's device, CPU threads and the global seed (the same initial weights on every rank)."""
    try:
        device = world.device if world.active else resolve_device(config.run.device)
    except ValueError as err:
        raise ConfigError(f"run.{err}") from err
    set_cpu_threads(config.run.torch_threads)
    torch.manual_seed(config.run.seed)
    return device


def open_env(config: TrainConfig, device: torch.device, seed: int
             ) -> tuple[VecTradingEnv, TrainConfig, list[str]]:
    """(training env, config with the env's split dates, the data warnings it raised). The data
    comes first: a bad file or folder fails before the run directory is touched."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = VecTradingEnv(config.run.symbols, config.run.envs_per_symbol, config.env, device,
                            data_dir=config.run.data_dir, split="train", seed=seed, final_obs=config.run.final_obs)
    # the env's split dates (given, or derived from every symbol's timestamps) are the run's from
    # here on: config.toml and the checkpoints record them, so resume, validation and evaluation
    # cut exactly where training did, whatever the data folder holds later
    config = replace(config, env=replace(config.env, split_dates=env.config.split_dates))
    return env, config, [str(w.message) for w in caught]


def open_log(config: TrainConfig, run_dir: Path, resume_point: ResumePoint | None, world: World) -> RunLog:
    """Rank 0 writes RUN_DIR/config.toml and logs to the console and TensorBoard; other ranks are quiet."""
    if not world.is_main:
        return QuietLog()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dumps_toml(as_dict(config)))
    return RunLogger(run_dir, config.run.total_steps, start_step=resume_point[0].step if resume_point else 0)


def assemble(config: TrainConfig, run_dir: Path, device: torch.device, env: VecTradingEnv, log: RunLog,
             world: World) -> Session:
    """Policy, learner, buffer, statistics, alerts, best-k and validator around `env`."""
    run, spec, seed = config.run, env.trading_spec, world.seed(config.run.seed)
    val_start, test_start = config.env.split_dates
    log.message(f"splits, common to every symbol: train before {val_start}, val from {val_start}, "
                f"test from {test_start} (env.split_dates)")
    policy = MultiSymbolPolicy(run.symbols, config.model, spec).to(device)
    if run.compile:
        policy.compile_evaluate()
    if world.rank:
        torch.manual_seed(seed)  # rank 0 samples from the single-process stream, the others their own
    compact = env.compact_observations() if run.rollout_storage == "index" else None
    return Session(
        config=config, run_dir=run_dir, device=device, env=env, policy=policy,
        learner=PPOLearner(policy, config.ppo, device, sync=world.mean_ if world.active else None,
                           # a compiled forward rounds differently from the eager rollout's
                           recompute_old_logprobs=True if run.compile else None),
        entropy=EntropyController(config.entropy),
        buffer=RolloutBuffer(run.num_steps, env.num_envs, spec.obs_shapes, device, spec.num_actions,
                             compact=compact),
        stats=RolloutStats(run.symbols, run.envs_per_symbol, spec.action_names, device),
        alerts=CollapseAlerts(config.alerts, run.symbols, spec.action_names, spec.ids("hold")),
        generator=torch.Generator().manual_seed(seed),
        log=log, obs=env.reset(seed=seed)[0],
        best_k=BestK(run.keep_best, run.early_stop_patience, run.early_stop_min_delta,
                     run.early_stop_target_sharpe),
        validator=open_validator(config, env, device, log),
        reward_normalizer=(RewardNormalizer(env.num_envs, config.ppo.gamma, device)
                           if config.ppo.normalize_rewards else None),
        world=world,
    )


def describe_setup(session: Session) -> None:
    """The device profile (as config.toml records it), precision and parameter counts on the console."""
    config, log = session.config, session.log
    enc = config.model.encoder
    precision = str(session.learner.amp_dtype or torch.float32).removeprefix("torch.")
    log.message(f"{device_profile(config)} on {session.device} ({precision}); each was set or resolved from "
                "auto for this device and is recorded in config.toml (the seed's full encoder: --set "
                "run.encoder_preset=full, the default on CUDA)")
    if enc.dropout > 0:
        log.message(f"note: model.encoder.dropout = {enc.dropout} has no effect in PPO training: rollouts "
                    "and updates both run in eval mode, so the ratio starts at exactly 1")
    counts = session.policy.count_parameters()
    log.message("parameters: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.1%}"
                                           for k, v in counts.items()))


def start_weights(session: Session, resume_point: ResumePoint | None, request: TransferRequest) -> None:
    """The run's starting point: its own checkpoint (transferred when the architecture or symbols
    changed since it was written), another run's weights, a blended encoder, or the fresh init."""
    policy, log, run_dir, seed = session.policy, session.log, session.run_dir, session.config.run.seed
    if resume_point is not None:
        checkpoint, state, notes = resume_point
        for note in notes:
            log.message(f"warning: {note}", style="bold yellow")
        if differs(checkpoint.weights, policy):
            resume_transferred(session, state, transfer_from(checkpoint.weights, policy, request, seed))
        else:
            checkpoints.load_weights(checkpoint, policy)
            session.restore(state)
            log.message(f"resumed {run_dir} at step {session.global_step:,} "
                        f"(iteration {session.iteration}, {checkpoint.weights.name})", style="bold")
            continue_after_early_stop(session)
    elif request.source is not None:
        init_from(policy, request, seed, log, run_dir)
    elif request.encoder_source is not None:
        init_encoder_from(policy, request, seed, log, run_dir, session.config.env.split_dates)
    else:
        log_initial_weights(log, policy)


def resume_transferred(session: Session, state: dict[str, Any], report: TransferReport) -> None:
    """A resume whose weights were transferred: step counters and the entropy controller carry over;
    optimizer, accounts, reward normalizer, alerts and the best list start fresh (all shaped by the
    old weights or symbols, and the old best checkpoints no longer load into this policy)."""
    session.global_step = state["global_step"]
    session.iteration = session.global_step // session.batch_size  # batch size changes with the symbols
    session.entropy.load_state_dict(state["entropy"])
    record(session.log, session.run_dir, report)
    session.log.message(f"resumed {session.run_dir} at step {session.global_step:,} with a transferred policy "
                        f"(strategy {report.strategy}); note: optimizer state, accounts, reward normalizer, "
                        "alerts and the best-checkpoint list start fresh", style="bold yellow")


def open_validator(config: TrainConfig, env: VecTradingEnv, device: torch.device, log: RunLog) -> Validator | None:
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
    session.best_k.restart_patience()
    (session.run_dir / STOPPED_FILE).unlink(missing_ok=True)
    session.log.message(f"training on past the early stop at step {stopped['step']:,} ({stopped['reason']}): "
                        f"run.total_steps {stopped['total_steps']:,} -> {session.config.run.total_steps:,}; "
                        "patience starts again, the best checkpoints stay in the running", style="bold")


def log_initial_weights(log: RunLog, policy: torch.nn.Module) -> None:
    """TensorBoard `init/<param>/<stat>` and one console line flagging NaN/Inf weights."""
    stats = weight_stats(policy)
    log.scalars(0, {f"init/{name}/{key}": float(row[key]) for name, row in stats.items()
                    for key in ("mean", "std", "max_abs", "nan", "inf")})
    bad = [name for name, row in stats.items() if row.get("nan", 0) or row.get("inf", 0)]
    largest = max(row["max_abs"] for row in stats.values())
    log.message(f"initial weights: {len(stats)} tensors, max |w| {largest:.3f}, "
                + (f"NaN/Inf in {bad}" if bad else "no NaN/Inf"),
                style="bold red" if bad else "")
