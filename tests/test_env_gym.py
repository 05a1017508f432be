"""The gymnasium surfaces: vector API shapes, auto-reset, determinism, resume, and check_env."""
from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils.env_checker import check_env

from envs import DEFAULT_SPEC, EnvConfig, SingleAccountEnv, VecTradingEnv, synthetic_bars

SPEC = DEFAULT_SPEC
HOLD, BUY_LARGE, ADD_TO_POSITION = (SPEC.action_id(n) for n in ("HOLD", "BUY_LARGE", "ADD_TO_POSITION"))

MARKETS = {"A": synthetic_bars("A", 400), "B": synthetic_bars("B", 300)}


def random_valid(env: VecTradingEnv, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(env.num_envs, SPEC.num_actions, generator=generator) * env.action_masks()).argmax(1)


def test_vector_api_shapes_and_info() -> None:
    env = VecTradingEnv(["A", "B"], 3, EnvConfig(episode_length=8, obs_noise=0.0), markets=MARKETS, seed=0)
    assert env.trading_spec == SPEC
    assert env.num_envs == 6 and env.single_action_space == gym.spaces.Discrete(SPEC.num_actions)
    assert {k: s.shape for k, s in env.single_observation_space.items()} == SPEC.obs_shapes
    obs, _ = env.reset(seed=0)
    for key, shape in SPEC.obs_shapes.items():
        assert obs[key].shape == (6, *shape) and obs[key].dtype == torch.float32
        assert env.single_observation_space[key].contains(obs[key][0].numpy())
    assert env.action_masks().shape == (6, SPEC.num_actions) and env.action_masks().dtype == torch.bool
    generator = torch.Generator().manual_seed(0)
    for step in range(8):
        obs, reward, terminated, truncated, info = env.step(random_valid(env, generator))
        assert reward.shape == (6,) and reward.dtype == torch.float32
        for key in ("policy_action", "executed_action", "mask_violation", "repeat_limited", "equity",
                    "exposure", "filled", "cost", "_episode"):
            assert info[key].shape == (6,), key
    # every account started together and ran episode_length steps: all truncate now
    assert truncated.all() and not terminated.any() and info["_episode"].all()
    assert (info["episode"]["length"] == 8).all()
    assert set(info["episode"]) >= {"return", "sharpe_per_step", "max_drawdown", "trades", "closed_trades",
                                    "win_rate", "profit_factor", "voluntary_trade_rate", "unique_actions",
                                    "length"}
    # auto-reset: the returned obs starts a new episode, final_obs holds the last one
    assert (obs["portfolio"][:, 0] == 1.0).all()
    assert not torch.equal(obs["technical"], info["final_obs"]["technical"])


def test_symbol_major_layout() -> None:
    env = VecTradingEnv(["A", "B"], 4, EnvConfig(episode_length=8, obs_noise=0.0), markets=MARKETS, seed=0)
    obs, _ = env.reset(seed=0)
    table = {s: torch.as_tensor(MARKETS[s].close) for s in ("A", "B")}
    for n in range(env.num_envs):
        symbol = env.symbols[n // env.envs_per_symbol]
        assert env.accounts.t[n] < len(MARKETS[symbol])
        assert float(env._close[env._row[n] + env.accounts.t[n]]) == float(table[symbol][env.accounts.t[n]])


def test_same_seed_same_trajectory_and_state_dict_resume() -> None:
    def trajectory(env: VecTradingEnv, steps: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(5)
        return [env.step(random_valid(env, generator))[1].clone() for _ in range(steps)]

    config = EnvConfig(episode_length=16, obs_noise=0.0)
    first = VecTradingEnv(["A", "B"], 4, config, markets=MARKETS, seed=7)
    second = VecTradingEnv(["A", "B"], 4, config, markets=MARKETS, seed=7)
    first.reset(seed=11)
    second.reset(seed=11)
    assert all(torch.equal(a, b) for a, b in zip(trajectory(first, 40), trajectory(second, 40)))

    state = first.state_dict()
    expected = trajectory(first, 30)
    resumed = VecTradingEnv(["A", "B"], 4, config, markets=MARKETS, seed=0)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, trajectory(resumed, 30)))


def test_equity_floor_terminates() -> None:
    crash = MARKETS["A"].scaled(1.0)
    crash.close[124:] *= 0.1  # the first fill bar closes 90 % below its open
    crash.low[124:] = np.minimum(crash.low[124:], crash.close[124:])
    config = EnvConfig(episode_length=50, random_start=False, equity_floor=0.95, obs_noise=0.0)
    env = VecTradingEnv(["A"], 2, config, markets={"A": crash}, seed=0)
    env.reset(seed=0)
    assert int(env.accounts.t[0]) == 123
    _, _, terminated, truncated, info = env.step(torch.tensor([BUY_LARGE, HOLD]))
    assert terminated.tolist() == [True, False] and not truncated.any()
    assert info["_episode"].tolist() == [True, False]


def test_repeat_limit_forces_hold() -> None:
    env = VecTradingEnv(["A"], 1, EnvConfig(episode_length=50, obs_noise=0.0), markets=MARKETS, seed=0)
    env.reset(seed=0)
    limited = [bool(env.step(torch.tensor([ADD_TO_POSITION]))[4]["repeat_limited"][0]) for _ in range(6)]
    assert limited == [False, False, False, True, True, True]


def test_single_account_wrapper_passes_check_env() -> None:
    env = SingleAccountEnv("A", EnvConfig(episode_length=16, obs_noise=0.0), markets=MARKETS)
    check_env(env, skip_render_check=True)
    # the default config's training-split observation noise stays inside the declared bounds too
    noisy = SingleAccountEnv("A", EnvConfig(episode_length=16, obs_noise=0.5), markets=MARKETS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check_env only warns of observations outside the space
        check_env(noisy, skip_render_check=True)
    obs, _ = noisy.reset(seed=1)
    for _ in range(16):
        assert noisy.observation_space.contains(obs)
        obs, *_ = noisy.step(0)
    obs, info = env.reset(seed=3)
    assert info["action_mask"].dtype == np.bool_ and info["action_mask"][0]
    total_steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(int(np.flatnonzero(info["action_mask"])[-1]))
        assert env.observation_space.contains(obs) and isinstance(reward, float)
        done, total_steps = terminated or truncated, total_steps + 1
    assert total_steps == 16 and "episode" in info and "episode_stats" in info
    assert info["episode"]["l"] == 16
    assert info["episode_stats"]["length"] == 16.0
    assert set(info["episode_stats"]) >= {"return", "sharpe_per_step", "max_drawdown", "trades",
                                          "closed_trades", "win_rate", "profit_factor",
                                          "voluntary_trade_rate", "unique_actions", "length"}


def test_final_obs_on_end_only_when_an_episode_ended() -> None:
    env = VecTradingEnv(["A"], 2, EnvConfig(episode_length=4, obs_noise=0.0),
                        markets=MARKETS, seed=0, final_obs="on_end")
    env.reset(seed=0)
    present = ["final_obs" in env.step(torch.full((2,), HOLD))[4] for _ in range(8)]
    assert present == [False, False, False, True] * 2
