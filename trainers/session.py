"""Everything a training run holds besides the loop: config resolution, construction of env,
policy and learner, resume from a checkpoint, checkpoint writes, and Ctrl-C / SIGTERM handling."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import torch

from configs.loader import ConfigError, dumps_toml, load_toml
from configs.train import DEFAULT_CONFIG, TrainConfig, as_dict, build, resolve, with_encoder_preset
from envs import ACTION_NAMES, NUM_ACTIONS, VecTradingEnv, observation_shapes
from models import MultiSymbolPolicy, weight_stats
from ppo_core import EntropyController, PPOLearner, RewardNormalizer, RolloutBuffer
from trainers import checkpointing
from trainers.logging import RunLogger
from trainers.rollout_stats import RolloutStats


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
    generator: torch.Generator
    log: RunLogger
    obs: dict[str, torch.Tensor]
    reward_normalizer: RewardNormalizer | None = None
    global_step: int = 0
    iteration: int = 0

    def trainer_state(self) -> dict[str, Any]:
        """Everything besides the weights that an exact resume needs."""
        return {
            "global_step": self.global_step, "iteration": self.iteration,
            "learner": self.learner.state_dict(), "entropy": self.entropy.state_dict(),
            "env": self.env.state_dict(), "obs": {k: v.cpu() for k, v in self.obs.items()},
            "rng": checkpointing.rng_state(), "generator": self.generator.get_state(),
            "episode_returns": self.buffer.episode_returns.cpu(),
            "episode_lengths": self.buffer.episode_lengths.cpu(),
            "reward_normalizer": self.reward_normalizer.state_dict() if self.reward_normalizer else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.global_step, self.iteration = state["global_step"], state["iteration"]
        self.learner.load_state_dict(state["learner"])
        self.entropy.load_state_dict(state["entropy"])
        self.env.load_state_dict(state["env"])
        self.obs = {k: v.to(self.device) for k, v in state["obs"].items()}
        checkpointing.set_rng_state(state["rng"])
        self.generator.set_state(state["generator"])
        self.buffer.episode_returns.copy_(state["episode_returns"])
        self.buffer.episode_lengths.copy_(state["episode_lengths"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.load_state_dict(state["reward_normalizer"])

    def save(self) -> checkpointing.Checkpoint:
        return checkpointing.save(self.run_dir, self.policy, as_dict(self.config),
                                  list(self.config.run.symbols), self.global_step, self.trainer_state())

    def fail(self, message: str) -> None:
        """Report a fatal training problem and where the last good checkpoint is."""
        try:
            kept = f"last good checkpoint: {checkpointing.latest(self.run_dir).weights}"
        except checkpointing.ResumeError:
            kept = "no checkpoint had been written yet"
        self.log.message(f"error: {message}; {kept}", style="bold red")

    def close(self) -> None:
        self.log.close()


class StopRequest:
    """First Ctrl-C or SIGTERM asks the loop to checkpoint and stop; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        print(f"\n{self.signal_name}: finishing this iteration, then saving a checkpoint "
              "(Ctrl-C again to abort without saving)", file=sys.stderr)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device: 'cuda' requested but torch sees no CUDA device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_config(args: argparse.Namespace, cli: dict[str, Any]) -> tuple[TrainConfig, Path, bool]:
    """(config, run_dir, resuming) from the CLI; a resumed run takes its own saved config."""
    if args.resume is None:
        config = resolve(args.config or DEFAULT_CONFIG, args.overrides, cli)
        run_dir = args.run_dir or Path("runs") / (time.strftime("%Y%m%d-%H%M%S") + "-"
                                                   + "-".join(config.run.symbols))
        if (run_dir / "checkpoints" / "latest.json").exists():
            raise ConfigError(f"{run_dir}: already holds a run; continue it with --resume {run_dir} "
                              "or choose another --run-dir")
        return config, run_dir, False
    extra = {k: v for k, v in cli.items() if k != "run.total_steps"}
    if extra or args.overrides or args.config or args.run_dir:
        raise ConfigError("--resume takes its settings from RUN_DIR/config.toml; only --total-steps "
                          f"may change (got {', '.join(list(extra) + args.overrides) or 'other flags'})")
    saved = load_toml(args.resume / "config.toml")
    if "run.total_steps" in cli:
        saved["run"]["total_steps"] = cli["run.total_steps"]
    return build(TrainConfig, saved), args.resume, True


def open_session(args: argparse.Namespace, cli: dict[str, Any]) -> Session:
    """Resolve the config, build every component, and restore the latest checkpoint if resuming."""
    config, run_dir, resuming = resolve_config(args, cli)
    checkpoint = checkpointing.latest(run_dir) if resuming else None
    device = resolve_device(config.run.device)
    preset = config.run.encoder_preset
    if preset == "auto":
        preset = "full" if device.type == "cuda" else "small"
    if preset != "custom":
        config = with_encoder_preset(config, preset)
        config = replace(config, run=replace(config.run, encoder_preset=preset))
    if config.model.encoder.lookback != config.env.lookback:
        raise ConfigError(f"model.encoder.lookback ({config.model.encoder.lookback}) must equal "
                          f"env.lookback ({config.env.lookback}): the encoder has one token per bar")
    if config.run.torch_threads:
        torch.set_num_threads(config.run.torch_threads)
    torch.manual_seed(config.run.seed)

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.toml").write_text(dumps_toml(as_dict(config)))
    log = RunLogger(run_dir, config.run.total_steps,
                    start_step=checkpoint.step if checkpoint else 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = VecTradingEnv(config.run.symbols, config.run.envs_per_symbol, config.env, device,
                            data_dir=config.run.data_dir, split="train", seed=config.run.seed,
                            final_obs="auto")
    for warning in caught:
        log.message(f"warning: {warning.message}", style="bold yellow")
    policy = MultiSymbolPolicy(config.run.symbols, config.model).to(device)
    session = Session(
        config=config, run_dir=run_dir, device=device, env=env, policy=policy,
        learner=PPOLearner(policy, config.ppo, device),
        entropy=EntropyController(config.entropy),
        buffer=RolloutBuffer(config.run.num_steps, env.num_envs, observation_shapes(config.env.lookback),
                             device, NUM_ACTIONS),
        stats=RolloutStats(config.run.symbols, config.run.envs_per_symbol, ACTION_NAMES, device),
        generator=torch.Generator().manual_seed(config.run.seed),
        log=log, obs=env.reset(seed=config.run.seed)[0],
        reward_normalizer=(RewardNormalizer(env.num_envs, config.ppo.gamma, device)
                           if config.ppo.normalize_rewards else None),
    )
    enc = config.model.encoder
    precision = str(session.learner.amp_dtype or torch.float32).removeprefix("torch.")
    log.message(f"device {device}, amp {config.ppo.amp} ({precision}); encoder '{preset}' "
                f"({enc.n_layers} layers x {enc.d_model}, {enc.n_heads} heads); the seed's full size is "
                "--set run.encoder_preset=full (default on CUDA)")
    counts = policy.count_parameters()
    log.message("parameters: " + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v:.1%}"
                                           for k, v in counts.items()))
    if checkpoint is not None:
        checkpointing.load_weights(checkpoint, policy)
        session.restore(checkpointing.load_state(checkpoint))
        log.message(f"resumed {run_dir} at step {session.global_step:,} "
                    f"(iteration {session.iteration})", style="bold")
    else:
        log_initial_weights(log, policy)
    return session


def log_initial_weights(log: RunLogger, policy: torch.nn.Module) -> None:
    """TensorBoard `init/<param>/<stat>` and one console line flagging NaN/Inf weights."""
    stats = weight_stats(policy)
    log.scalars(0, {f"init/{name}/{key}": float(row[key]) for name, row in stats.items()
                    for key in ("mean", "std", "max_abs", "nan", "inf")})
    bad = [name for name, row in stats.items() if row.get("nan", 0) or row.get("inf", 0)]
    largest = max(row["max_abs"] for row in stats.values())
    log.message(f"initial weights: {len(stats)} tensors, max |w| {largest:.3f}, "
                + (f"NaN/Inf in {bad}" if bad else "no NaN/Inf"),
                style="bold red" if bad else "")
