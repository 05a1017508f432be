"""Accounting invariants of VecTradingEnv under arbitrary action sequences."""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import DEFAULT_SPEC, EnvConfig, RewardConfig, VecTradingEnv, synthetic_bars

SPEC = DEFAULT_SPEC
HOLD, BUY_LARGE, SELL_ALL = (SPEC.action_id(name) for name in ("HOLD", "BUY_LARGE", "SELL_ALL"))
NUM_ACTIONS = SPEC.num_actions

E = 8
MARKET = {"A": synthetic_bars("A", 400), "B": synthetic_bars("B", 300)}
ENV = VecTradingEnv(["A", "B"], E, EnvConfig(episode_length=24, obs_noise=0.0), markets=MARKET, seed=0)
LARGE = tuple(replace(a, buy_fraction=min(10 * a.buy_fraction, 0.95)) for a in SPEC.actions)
"""the default table with buys of 25 / 60 / 90 % and adds of 30 %"""
VOL_TARGETED = VecTradingEnv(["A", "B"], E, EnvConfig(episode_length=24, obs_noise=0.0, actions=LARGE, vol_target=0.4,
                                                      vol_scale_max=5.0), markets=MARKET, seed=0)
"""buys scaled up to 5x by volatility targeting: the mask must still keep cash >= 0"""

action_rows = st.lists(st.lists(st.integers(0, NUM_ACTIONS - 1), min_size=2 * E, max_size=2 * E),
                       min_size=1, max_size=40)


def close_now(env: VecTradingEnv) -> torch.Tensor:
    """(N,) close of each account's current bar, read from the Bars (not the env's tables)."""
    closes = [torch.as_tensor(env.markets[s].close) for s in env.symbols]
    return torch.stack([closes[n // env.envs_per_symbol][int(t)] for n, t in enumerate(env.accounts.t)])


@settings(max_examples=25, deadline=None)
@given(action_rows, st.integers(0, 1000))
@pytest.mark.parametrize("env", [ENV, VOL_TARGETED], ids=["default", "vol_targeted"])
def test_equity_cash_shares_and_cost(env: VecTradingEnv, actions: list[list[int]], seed: int) -> None:
    env.reset(seed=seed)
    for row in actions:
        _, reward, terminated, truncated, info = env.step(torch.tensor(row))
        acc = env.accounts
        torch.testing.assert_close(acc.equity, acc.cash + acc.shares * close_now(env), rtol=1e-12, atol=1e-6)
        assert (acc.cash >= 0).all() and (acc.shares >= 0).all()
        cost = info["reward_components"]["cost"]
        assert (cost <= 0).all() and (info["cost"] >= 0).all()
        assert torch.equal(cost == 0, ~info["filled"])
        assert torch.equal(info["cost"] == 0, ~info["filled"])
        assert torch.isfinite(reward).all()
        # equity reported for this step is marked at the close of the bar the step filled on
        assert (info["equity"] > 0).all() and torch.equal(info["bar"] >= 0, torch.ones_like(terminated))


def test_hold_without_position_earns_no_pnl() -> None:
    ENV.reset(seed=3)
    for _ in range(30):
        _, _, _, _, info = ENV.step(torch.full((2 * E,), HOLD))
        assert (info["reward_components"]["pnl"] == 0).all()
        assert (info["equity"] == ENV.config.initial_capital).all()


def pnl_only_config(episode_length: int) -> EnvConfig:
    weights = {name: 0.0 for name in RewardConfig().weights()}
    return EnvConfig(episode_length=episode_length, reward=RewardConfig(**{**weights, "pnl": 1.0},
                                                                        roi_scaling=False), obs_noise=0.0)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(5, 60))
def test_summed_pnl_reward_is_the_episode_return(seed: int, length: int) -> None:
    env = VecTradingEnv(["A", "B"], 4, pnl_only_config(length), markets=MARKET, seed=seed)
    env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros(env.num_envs, dtype=torch.float64)
    for _ in range(length):
        noise = torch.rand(env.num_envs, NUM_ACTIONS, generator=generator)
        _, reward, terminated, truncated, info = env.step((noise * env.action_masks()).argmax(1))
        total += reward.double()
    assert (terminated | truncated).all()
    final_return = (info["equity"] - env.config.initial_capital) / env.config.initial_capital
    # pnl is in units of initial capital x money_scale (basis points by default)
    torch.testing.assert_close(total / env.config.reward.money_scale, final_return, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(info["episode"]["return"].double(), final_return, rtol=1e-4, atol=1e-6)


def test_round_trip_pays_commission_and_slippage_on_both_legs() -> None:
    """A BUY_LARGE then SELL_ALL moves cash by exactly the price change minus the documented costs."""
    env = VecTradingEnv(["A"], 1, EnvConfig(episode_length=24, random_start=False, obs_noise=0.0),
                        markets=MARKET, seed=0)
    env.reset(seed=0)
    bars, t = MARKET["A"], int(env.accounts.t[0])
    env.step(torch.tensor([BUY_LARGE]))
    _, _, _, _, info = env.step(torch.tensor([SELL_ALL]))
    slip, comm, initial = 1e-4, 2e-4, env.config.initial_capital
    notional = SPEC.actions[BUY_LARGE].buy_fraction * initial
    assert SPEC.actions[SELL_ALL].sell_fraction == 1.0  # `proceeds` below sells every share
    shares = notional / (bars.open[t + 1] * (1 + slip))
    proceeds = shares * bars.open[t + 2] * (1 - slip)
    expected = initial - notional * (1 + comm) + proceeds * (1 - comm)
    assert math.isclose(float(info["equity"][0]), expected, rel_tol=1e-12)
    assert float(env.accounts.shares[0]) == 0.0
