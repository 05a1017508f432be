"""Train CartPole-v1 with ppo_core and a small MLP; print one JSON line.

    python bench/cartpole.py --seed 1 --total-steps 150000

Proves the generic PPO core on a problem with published answers before a trading agent depends
on it. Two published hyperparameter sets:
  zoo (default): RL Baselines3 Zoo's tuned PPO for CartPole-v1 (8 envs x 32 steps, 1 minibatch,
      20 epochs, lr 1e-3 and clip 0.2 both annealed, gamma 0.98, lambda 0.8, no entropy bonus,
      no value clipping); reaches 500 in ~100k steps.
  cleanrl: CleanRL ppo.py's defaults (4 x 128 steps, 4 minibatches, 4 epochs, lr 2.5e-4 annealed,
      gamma 0.99, lambda 0.95, clip 0.2, ent 0.01); reaches ~500 at its default 500k steps but
      only ~250-400 at 150k, where the annealed lr has stopped learning.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections import deque
from dataclasses import dataclass, replace

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode

from configs.cli import add_device, device_or_auto
from ppo_core import (EntropyController, EntropyScheduleConfig, GymVecAdapter, MLPActorCritic,
                      PPOConfig, PPOLearner, PPOParts, RolloutBuffer, ppo_iteration, resolve_device)

RETURN_WINDOW = 20
"""mean_return averages the last this many finished episodes"""


@dataclass(frozen=True)
class Preset:
    num_envs: int
    """parallel CartPole envs"""
    num_steps: int
    """rollout length per env"""
    ent_coef: float
    """constant entropy coefficient (the adaptive bonus and collapse guard are off)"""
    ppo: PPOConfig
    """update settings, every field given (PPOConfig's defaults are the trading trainer's); KL
    early stopping off in both (neither source uses it)"""


ZOO_CARTPOLE = PPOConfig(
    learning_rate=1e-3, lr_schedule="linear", num_minibatches=1, minibatch_size=0, update_epochs=20,
    clip_coef=0.2, clip_schedule="linear", clip_vloss=False, vf_coef=0.5, max_grad_norm=0.5, target_kl=0.0,
    norm_adv=True, norm_adv_per_group=False, gamma=0.98, gae_lambda=0.8, adam_eps=1e-5, weight_decay=0.0, amp="off",
    normalize_rewards=True)
"""RL Baselines3 Zoo's tuned PPO for CartPole-v1"""
CLEANRL_CARTPOLE = PPOConfig(
    learning_rate=2.5e-4, lr_schedule="linear", num_minibatches=4, minibatch_size=0, update_epochs=4,
    clip_coef=0.2, clip_schedule="constant", clip_vloss=True, vf_coef=0.5, max_grad_norm=0.5, target_kl=0.0,
    norm_adv=True, norm_adv_per_group=False, gamma=0.99, gae_lambda=0.95, adam_eps=1e-5, weight_decay=0.0, amp="off",
    normalize_rewards=True)
"""CleanRL ppo.py's defaults"""

PRESETS = {
    "zoo": Preset(8, 32, 0.0, ZOO_CARTPOLE),
    "cleanrl": Preset(4, 128, 0.01, CLEANRL_CARTPOLE),
}


def train(seed: int, total_steps: int, preset: Preset, device: torch.device) -> dict[str, float | int]:
    """Run PPO for at least `total_steps` env steps; returns the summary that main prints."""
    torch.manual_seed(seed)
    num_envs, num_steps, config = preset.num_envs, preset.num_steps, preset.ppo
    env = GymVecAdapter(gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync",
                                     vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}), device)
    env.single_action_space.seed(seed)
    obs_dim = env.single_observation_space.shape[0]
    policy = MLPActorCritic(obs_dim, int(env.single_action_space.n)).to(device)
    learner = PPOLearner(policy, config, device)
    entropy = EntropyController(EntropyScheduleConfig(kind="constant", initial=preset.ent_coef))
    buffer = RolloutBuffer(num_steps, num_envs, {"obs": (obs_dim,)}, device)
    parts = PPOParts(env, policy, learner, buffer, entropy, generator=torch.Generator().manual_seed(seed))

    batch_size = num_steps * num_envs
    num_iterations = math.ceil(total_steps / batch_size)
    recent: deque[float] = deque(maxlen=RETURN_WINDOW)
    episodes, global_step = 0, 0
    obs, _ = env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(num_iterations):
        result = ppo_iteration(parts, obs, global_step=global_step, total_steps=num_iterations * batch_size)
        obs = result.next_obs
        global_step += batch_size
        finished = result.rollout.episode_returns.tolist()
        recent.extend(finished)
        episodes += len(finished)
    elapsed = time.perf_counter() - start
    env.close()
    return {"seed": seed, "env_steps": global_step,
            "mean_return": sum(recent) / len(recent) if recent else float("nan"),
            "episodes": episodes, "steps_per_sec": round(global_step / elapsed, 1),
            "seconds": round(elapsed, 1), "num_envs": num_envs, "num_steps": num_steps,
            "device": str(device),
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--total-steps", type=int, default=150_000, help="env steps (all envs count)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="zoo",
                        help="published hyperparameter set (see the module docstring)")
    parser.add_argument("--num-envs", type=int, help="override the preset's number of envs")
    add_device(parser)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for this tiny MLP)")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(device_or_auto(args.device))
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    preset = PRESETS[args.preset]
    if args.num_envs is not None:
        preset = replace(preset, num_envs=args.num_envs)
    result = {"preset": args.preset, **train(args.seed, args.total_steps, preset, device)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
