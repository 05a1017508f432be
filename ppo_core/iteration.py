"""One PPO iteration: collect -> GAE -> update -> statistics. The trainer, the throughput bench
and the CartPole bench all run this function, so what they time is what trains."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from ppo_core.buffer import RolloutBuffer
from ppo_core.device import synchronize
from ppo_core.entropy import EntropyCollapseError, EntropyController, EntropyState
from ppo_core.gae import compute_gae
from ppo_core.learner import ActorCritic, PPOLearner, UpdateStats
from ppo_core.rollout import RolloutResult, StepData, TensorVecEnv, collect_rollout


@dataclass
class PPOParts:
    """What a PPO iteration runs on; built once per run."""

    env: TensorVecEnv
    policy: ActorCritic
    learner: PPOLearner
    buffer: RolloutBuffer
    """T x N steps; T = buffer.num_steps"""
    entropy: EntropyController
    num_groups: int | None = None
    """keep minibatches in equal shares of this many consecutive env groups (None: shuffle all)"""
    generator: torch.Generator | None = None
    """the minibatch shuffles' random stream"""
    on_step: Callable[[int, dict[str, Any], StepData], None] | None = None
    """called after every env step (e.g. rollout statistics)"""
    reward_scale: Callable[[Tensor, Tensor], Tensor] | None = None
    """(rewards, dones) -> the rewards the buffer stores (e.g. RewardNormalizer)"""


class IterationResult(NamedTuple):
    next_obs: dict[str, Tensor]
    """observations the next iteration starts from"""
    rollout: RolloutResult
    update: UpdateStats
    """the update's statistics, read to the host (the iteration's one read of the update)"""
    entropy: EntropyState
    """the entropy stack after observing this update"""
    collapse: EntropyCollapseError | None
    """set when the entropy guard gave up after this update; the caller decides what to keep"""
    rollout_seconds: float
    update_seconds: float
    """GAE + update; both wall-clock, device-synchronised only with sync_timing"""

    def scalars(self) -> dict[str, float]:
        """`losses/*` and `entropy/*` floats for TensorBoard."""
        return {**self.update.scalars(), **self.entropy.scalars()}


def ppo_iteration(parts: PPOParts, obs: dict[str, Tensor], *, global_step: int, total_steps: int,
                  world_size: int = 1, sync_timing: bool = False) -> IterationResult:
    """Fill `parts.buffer` from `obs` (T steps of all N envs), compute GAE, run one PPO update, and
    read its statistics once.

    `global_step` counts env steps before this iteration and `total_steps` the whole run's (they
    drive the lr / clip schedules); the entropy coefficient is taken at global_step + T x N x
    world_size (data parallelism: `world_size` processes each run this iteration on their own
    envs, and the step counters count them all) and the entropy stack observes the update's mean
    entropy. The policy runs in eval mode for the rollout and the update alike: both see the same
    network (no dropout), so the PPO ratio is 1 before the first step (exactly under AMP, where the
    learner recomputes the old log-probabilities at its precision).
    """
    policy, learner, buffer, entropy = parts.policy, parts.learner, parts.buffer, parts.entropy
    cfg = learner.config
    policy.eval()
    start = time.perf_counter()
    with torch.no_grad():
        rollout = collect_rollout(parts.env, policy, buffer, obs, cfg.gamma, on_step=parts.on_step,
                                  reward_scale=parts.reward_scale)
    if sync_timing:
        synchronize(buffer.device)
    collected = time.perf_counter()
    advantages, returns = compute_gae(buffer.rewards, buffer.values, buffer.dones, rollout.last_values,
                                      cfg.gamma, cfg.gae_lambda)
    step_after = global_step + buffer.batch_size * world_size
    anchor_coef = learner.anchor.coefficient(global_step) if learner.anchor is not None else 0.0
    update = learner.update(buffer, advantages, returns, ent_coef=entropy.coefficient(step_after),
                            progress=global_step / max(total_steps, 1), num_groups=parts.num_groups,
                            generator=parts.generator, anchor_coef=anchor_coef).read()  # host sync point
    updated = time.perf_counter()
    collapse = None
    try:
        entropy.observe(step_after, update.steps.entropy)
    except EntropyCollapseError as err:
        collapse = err
    return IterationResult(next_obs=rollout.next_obs, rollout=rollout, update=update, entropy=entropy.state(),
                           collapse=collapse, rollout_seconds=collected - start,
                           update_seconds=updated - collected)
