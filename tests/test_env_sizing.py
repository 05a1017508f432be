"""Volatility targeting (envs.sizing): the estimate against its definition, causality, and positions
that carry the targeted volatility whatever the symbol's."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import DEFAULT_SPEC, EnvConfig, VecTradingEnv, autocorrelated_bars, synthetic_bars
from envs.bars import periods_per_year
from envs.sizing import position_scale, trailing_volatility

BARS = synthetic_bars("VOL", 600)


@pytest.mark.parametrize("window", [2, 5, 20])
def test_trailing_volatility_is_the_annualised_std_of_the_last_window(window: int) -> None:
    vol = trailing_volatility(BARS.close, BARS.timestamps, window)
    log_returns = np.diff(np.log(BARS.close))
    assert np.isnan(vol[:2]).all()
    for t in (2, 3, window, window + 1, 137, 599):
        recent = log_returns[max(t - window, 0):t]  # returns into bars t - window + 1 .. t
        expected = np.std(recent, ddof=1) * math.sqrt(periods_per_year(BARS.timestamps[:t + 1]))
        assert vol[t] == pytest.approx(expected, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(130, 590), st.floats(0.5, 2.0), st.integers(0, 2**31 - 1))
def test_scale_at_a_bar_ignores_every_later_bar(t: int, factor: float, seed: int) -> None:
    config = EnvConfig(vol_target=0.15, vol_window=20)
    later = BARS.scaled(1.0)
    noise = np.random.default_rng(seed).lognormal(0.0, 0.05, len(BARS) - t - 1)
    later.close[t + 1:] = later.close[t + 1:] * factor * noise
    later.timestamps[t + 1:] = later.timestamps[t + 1:] + np.int64(86_400 * 10**9) * 3
    assert np.array_equal(position_scale(BARS, config)[:t + 1], position_scale(later, config)[:t + 1])


def test_scale_is_one_when_off_and_capped_when_on() -> None:
    assert (position_scale(BARS, EnvConfig()) == 1.0).all()
    scale = position_scale(BARS, EnvConfig(vol_target=10.0, vol_scale_max=3.0))
    assert scale[0] == 1.0 and (scale[2:] == 3.0).all()  # far above any volatility: the cap


@pytest.mark.parametrize("vol_target", [0.0, 0.1])
def test_a_buy_carries_the_targeted_volatility_in_calm_and_wild_markets(vol_target: float) -> None:
    """Two markets at 10 % and 40 % a year: with targeting on, a buy of 50 % of equity holds about
    the same volatility in both (0.5 x 0.1 = 5 % of equity a year), four times the capital in the
    calm one; off, the same 50 % in both."""
    daily = {"CALM": 0.10, "WILD": 0.40}
    markets = {s: autocorrelated_bars(s, 800, phi=0.0, vol=v / math.sqrt(261), seed=i)
               for i, (s, v) in enumerate(daily.items())}
    actions = tuple(replace(a, buy_fraction=0.5) if a.kind == "buy" else a for a in DEFAULT_SPEC.actions)
    config = EnvConfig(episode_length=0, random_start=False, obs_noise=0.0, actions=actions, max_exposure=0.9,
                       commission_bps=0.0, slippage_bps=0.0, vol_target=vol_target, vol_window=60,
                       vol_scale_max=10.0)
    env = VecTradingEnv(list(markets), 1, config, markets=markets, split="test", seed=0)
    env.reset()
    buy = DEFAULT_SPEC.action_id("BUY_LARGE")
    _, _, _, _, info = env.step(torch.full((2,), buy))
    assert info["filled"].all()
    spent = (info["notional"] / env.config.initial_capital).numpy()  # fraction of equity bought
    for n, symbol in enumerate(markets):
        per_year = periods_per_year(markets[symbol].timestamps)
        carried = spent[n] * daily[symbol] / math.sqrt(261) * math.sqrt(per_year)
        if vol_target == 0:
            assert spent[n] == pytest.approx(0.5)
        else:  # the 60-bar estimate has a ~9 % standard error
            assert carried == pytest.approx(0.5 * vol_target, rel=0.3)
    if vol_target > 0:
        assert spent[0] / spent[1] == pytest.approx(4.0, rel=0.4)
