"""One PPO iteration: collect -> GAE -> update -> statistics. The trainer, the throughput bench
and the CartPole bench all run this function, so what they time is what trains."""
from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import torch
from torch import Tensor

from ppo_core.buffer import RolloutBuffer
from ppo_core.device import synchronize
from ppo_core.entropy import EntropyCollapseError, EntropyController
from ppo_core.gae import compute_gae
from ppo_core.learner import ActorCritic, PPOLearner, UpdateStats
from ppo_core.rollout import RolloutResult, StepData, TensorVecEnv, collect_rollout


class IterationResult(NamedTuple):
    next_obs: dict[str, Tensor]
    """observations the next iteration starts from"""
    rollout: RolloutResult
    update: UpdateStats
    stats: dict[str, float]
    """`losses/*` and `entropy/*` host floats (the iteration's one read of the update)"""
    collapse: EntropyCollapseError | None
    """set when the entropy guard gave up after this update; the caller decides what to keep"""
    rollout_seconds: float
    update_seconds: float
    """GAE + update; both wall-clock, device-synchronised only with sync_timing"""


def ppo_iteration(env: TensorVecEnv, policy: ActorCritic, learner: PPOLearner, buffer: RolloutBuffer,
                  entropy: EntropyController, obs: dict[str, Tensor], *, global_step: int,
                  total_steps: int, num_groups: int | None = None,
                  generator: torch.Generator | None = None,
                  on_step: Callable[[int, dict[str, Any], StepData], None] | None = None,
                  reward_scale: Callable[[Tensor, Tensor], Tensor] | None = None,
                  sync_timing: bool = False, world_size: int = 1) -> IterationResult:
    """Fill `buffer` from `obs` (T = buffer.num_steps steps of all N envs), compute GAE, run one
    PPO update, and read its statistics once.

    `global_step` counts env steps before this iteration and `total_steps` the whole run's (they
    drive the lr / clip schedules); the entropy coefficient is taken at global_step + T x N x
    world_size (data parallelism: `world_size` processes each run this iteration on their own
    envs, and the step counters count them all) and the entropy stack observes the update's mean
    entropy. `num_groups` keeps minibatches in equal per-symbol shares. The policy runs in eval
    mode for the rollout and the update alike: both see the same network (no dropout), so the PPO
    ratio is exactly 1 before the first step.
    """
    cfg = learner.config
    device = buffer.device
    policy.eval()
    start = time.perf_counter()
    with torch.no_grad():
        rollout = collect_rollout(env, policy, buffer, obs, cfg.gamma, on_step=on_step,
                                  reward_scale=reward_scale)
    if sync_timing:
        synchronize(device)
    collected = time.perf_counter()
    advantages, returns = compute_gae(buffer.rewards, buffer.values, buffer.dones, rollout.last_values,
                                      cfg.gamma, cfg.gae_lambda)
    step_after = global_step + buffer.batch_size * world_size
    ent_coef = entropy.coefficient(step_after)
    update = learner.update(buffer, advantages, returns, ent_coef=ent_coef,
                            progress=global_step / max(total_steps, 1), num_groups=num_groups,
                            generator=generator)
    stats = {f"losses/{k}": v for k, v in update.to_dict().items()}  # host sync point
    updated = time.perf_counter()
    collapse = None
    try:
        entropy.observe(step_after, stats["losses/entropy"])
    except EntropyCollapseError as err:
        collapse = err
    stats.update({f"entropy/{k}": v for k, v in entropy.state().items()})
    return IterationResult(next_obs=rollout.next_obs, rollout=rollout, update=update, stats=stats,
                           collapse=collapse, rollout_seconds=collected - start,
                           update_seconds=updated - collected)
