"""Train CartPole-v1 with ppo_core and CleanRL's defaults; print one JSON line.

    python bench/cartpole.py --seed 1 --total-steps 150000

CleanRL's ppo.py reaches ~500 on CartPole-v1; this proves the generic PPO core on a problem with
a published answer before a trading agent depends on it.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from collections import deque

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode

from ppo_core import (EntropyController, EntropyScheduleConfig, GymVecAdapter, MLPActorCritic,
                      PPOConfig, PPOLearner, RolloutBuffer, collect_rollout, compute_gae)

NUM_STEPS = 128
"""rollout length per env (CleanRL default)"""
ENT_COEF = 0.01
"""constant entropy coefficient; the adaptive bonus and collapse guard are off"""
RETURN_WINDOW = 20
"""mean_return averages the last this many finished episodes"""


def train(seed: int, total_steps: int, num_envs: int, device: torch.device) -> dict[str, float | int]:
    """Run PPO for at least `total_steps` env steps; returns the summary that main prints."""
    torch.manual_seed(seed)
    env = GymVecAdapter(gym.make_vec("CartPole-v1", num_envs=num_envs, vectorization_mode="sync",
                                     vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}), device)
    env.single_action_space.seed(seed)
    obs_dim = env.single_observation_space.shape[0]
    policy = MLPActorCritic(obs_dim, int(env.single_action_space.n)).to(device)
    config = PPOConfig(lr_schedule="linear", target_kl=0.0, amp="off")
    learner = PPOLearner(policy, config, device)
    entropy = EntropyController(EntropyScheduleConfig(kind="constant", initial=ENT_COEF))
    buffer = RolloutBuffer(NUM_STEPS, num_envs, {"obs": (obs_dim,)}, device)
    generator = torch.Generator().manual_seed(seed)

    batch_size = NUM_STEPS * num_envs
    num_iterations = math.ceil(total_steps / batch_size)
    recent: deque[float] = deque(maxlen=RETURN_WINDOW)
    episodes, global_step = 0, 0
    obs, _ = env.reset(seed=seed)
    start = time.perf_counter()
    for iteration in range(num_iterations):
        progress = iteration / num_iterations
        rollout = collect_rollout(env, policy, buffer, obs, config.gamma)
        obs = rollout.next_obs
        global_step += batch_size
        advantages, returns = compute_gae(buffer.rewards, buffer.values, buffer.dones, rollout.last_values,
                                          config.gamma, config.gae_lambda)
        learner.update(buffer, advantages, returns, ent_coef=entropy.coefficient(global_step),
                       progress=progress, generator=generator)
        finished = rollout.episode_returns.tolist()
        recent.extend(finished)
        episodes += len(finished)
    elapsed = time.perf_counter() - start
    env.close()
    return {"seed": seed, "env_steps": global_step,
            "mean_return": sum(recent) / len(recent) if recent else float("nan"),
            "episodes": episodes, "steps_per_sec": round(global_step / elapsed, 1),
            "seconds": round(elapsed, 1), "num_envs": num_envs, "device": str(device),
            "torch_threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict[str, float | int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--total-steps", type=int, default=150_000, help="env steps (all envs count)")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 is fastest for this tiny MLP)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    torch.set_num_threads(args.threads)
    result = train(args.seed, args.total_steps, args.num_envs, device)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
