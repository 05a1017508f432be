"""SingleAccountEnv's info["episode"] follows the gymnasium/SB3 convention ({r, l, t}), so SB3 runs on it."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from envs import EnvConfig, SingleAccountEnv, synthetic_bars

EPISODE_LENGTH = 20
MARKETS = {"SYN": synthetic_bars("SYN", num_bars=400)}


def make_env() -> SingleAccountEnv:
    return SingleAccountEnv("SYN", EnvConfig(episode_length=EPISODE_LENGTH, obs_noise=0.0), markets=MARKETS)


def test_episode_info_has_return_length_time_and_project_stats() -> None:
    env = make_env()
    hold, buy = env.vec.trading_spec.action_id("HOLD"), env.vec.trading_spec.action_id("BUY_SMALL")
    for episode in range(2):  # the second checks that reset() restarts the running counters
        _, info = env.reset(seed=episode)
        rewards: list[float] = []
        done = False
        while not done:
            mask = env.action_masks()
            assert np.array_equal(mask, info["action_mask"])
            action = buy if len(rewards) % 3 == 0 and mask[buy] else hold  # trade a little: nonzero rewards
            assert mask[action]
            _, reward, terminated, truncated, info = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
            if not done:
                assert "episode" not in info and "episode_stats" not in info
        stats = info["episode"]
        assert set(stats) == {"r", "l", "t"}
        assert isinstance(stats["r"], float) and math.isclose(stats["r"], sum(rewards), rel_tol=1e-9,
                                                             abs_tol=1e-12)
        assert isinstance(stats["l"], int) and stats["l"] == len(rewards) == EPISODE_LENGTH
        assert isinstance(stats["t"], float) and stats["t"] >= 0.0
        assert "return" in info["episode_stats"] and "length" in info["episode_stats"]
        assert info["episode_stats"]["length"] == EPISODE_LENGTH


def test_stable_baselines3_ppo_runs_past_episode_ends() -> None:
    if importlib.util.find_spec("stable_baselines3") is None:
        pytest.skip("stable-baselines3 not installed; it stays out of the project's dependencies")
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    # a VecEnv is not wrapped in SB3's Monitor, so ep_info_buffer (and the ep_rew_mean log, which read
    # "r": the old KeyError) takes the env's own info["episode"]
    env = DummyVecEnv([make_env])
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, verbose=0, device="cpu",
                seed=0)
    model.learn(total_timesteps=128)  # 128 steps with 20-step episodes: six episode ends
    assert len(model.ep_info_buffer) >= 5
    for entry in model.ep_info_buffer:
        assert {"r", "l", "t"} <= set(entry) and entry["l"] == EPISODE_LENGTH
