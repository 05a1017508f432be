"""Invariances: price scale, batch composition, and no look-ahead in the features."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import DEFAULT_SPEC, Bars, EnvConfig, VecTradingEnv, autocorrelated_bars, compute_features, synthetic_bars
from envs.features import FEATURE_NORMS, REGIME_NAMES, SIGNED_NAMES, TECHNICAL_NAMES, raw_features

NUM_ACTIONS = DEFAULT_SPEC.num_actions

BARS = synthetic_bars("A", 360)
CONFIG = EnvConfig(episode_length=30, random_start=False, obs_noise=0.0)


def run(env: VecTradingEnv, actions: list[list[int]]) -> list[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """(obs, reward) after each step, cloned (the env reuses its observation memory)."""
    obs, _ = env.reset(seed=0)
    out = [({k: v.clone() for k, v in obs.items()}, torch.zeros(env.num_envs))]
    for row in actions:
        obs, reward, _, _, _ = env.step(torch.tensor(row))
        out.append(({k: v.clone() for k, v in obs.items()}, reward.clone()))
    return out


@settings(max_examples=12, deadline=None)
@given(st.floats(1e-3, 1e3), st.lists(st.lists(st.integers(0, NUM_ACTIONS - 1), min_size=4, max_size=4),
                                      min_size=1, max_size=45), st.sampled_from(FEATURE_NORMS))
def test_multiplying_prices_changes_no_observation_or_reward(factor: float, actions: list[list[int]],
                                                             norm: str) -> None:
    config = replace(CONFIG, feature_norm=norm)
    base = run(VecTradingEnv(["A"], 4, config, markets={"A": BARS}, seed=0), actions)
    scaled = run(VecTradingEnv(["A"], 4, config, markets={"A": BARS.scaled(factor)}, seed=0), actions)
    for (obs_a, reward_a), (obs_b, reward_b) in zip(base, scaled):
        for key in obs_a:
            torch.testing.assert_close(obs_a[key], obs_b[key], rtol=1e-4, atol=2e-4, msg=key)
        torch.testing.assert_close(reward_a, reward_b, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 7), st.integers(5, 70))
def test_account_trajectory_is_the_same_alone_or_in_a_batch(seed: int, row: int, steps: int) -> None:
    markets = {"A": BARS, "B": synthetic_bars("B", 300)}
    batch = VecTradingEnv(["B", "A"], 8, CONFIG, markets=markets, seed=seed)
    alone = VecTradingEnv(["A"], 1, CONFIG, markets={"A": BARS}, seed=seed + 1)
    generator = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, NUM_ACTIONS, (steps, 16), generator=generator).tolist()
    account = 8 + row  # symbol-major: accounts 8..15 trade "A"
    in_batch = run(batch, actions)
    by_itself = run(alone, [[a[account]] for a in actions])
    for (obs_a, reward_a), (obs_b, reward_b) in zip(in_batch, by_itself):
        for key in obs_a:
            torch.testing.assert_close(obs_a[key][account], obs_b[key][0], msg=key)
        torch.testing.assert_close(reward_a[account], reward_b[0])


def perturbed_after(bars: Bars, t: int, seed: int) -> Bars:
    """The same bars up to t; afterwards random (valid) prices and volumes."""
    rng = np.random.default_rng(seed)
    out = bars.scaled(1.0)
    tail = slice(t + 1, None)
    factor = np.exp(rng.normal(0, 0.2, len(bars) - t - 1))
    for name in ("open", "high", "low", "close"):
        getattr(out, name)[tail] *= factor
    out.high[tail] *= 1.05
    out.volume[tail] = rng.uniform(1, 1e7, len(bars) - t - 1)
    out.sl_probs[tail] = rng.uniform(0, 1, (len(bars) - t - 1, 3))
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 358), st.integers(0, 1000), st.sampled_from(FEATURE_NORMS), st.sampled_from((5, 20, 250)))
def test_changing_bars_after_t_leaves_features_at_t_unchanged(t: int, seed: int, norm: str, window: int) -> None:
    technical, regime = compute_features(BARS, norm=norm, scale_window=window)
    technical_b, regime_b = compute_features(perturbed_after(BARS, t, seed), norm=norm, scale_window=window)
    torch.testing.assert_close(technical[: t + 1], technical_b[: t + 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(regime[: t + 1], regime_b[: t + 1], rtol=0, atol=1e-5)
    assert not torch.allclose(technical[t + 1:], technical_b[t + 1:]) or t == len(BARS) - 1


@pytest.mark.parametrize("norm", FEATURE_NORMS)
def test_features_have_no_nan_and_trailing_scale(norm: str) -> None:
    technical, regime = compute_features(synthetic_bars("Z", 3000), norm=norm)
    assert torch.isfinite(technical).all() and torch.isfinite(regime).all()
    assert technical.abs().max() <= 5.0 and regime.abs().max() <= 5.0
    # normalised with trailing statistics: roughly unit scale after the warm-up, not constant
    spread = technical[100:].std(0)
    assert (spread > 0.3).all() and (spread < 3.0).all()


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-0.004, 0.004), st.sampled_from((5, 20, 250)))
def test_scale_keeps_each_signed_features_sign_and_zscores_the_rest(seed: int, drift: float, window: int) -> None:
    bars = synthetic_bars(f"S{seed}", 400)
    factor = np.exp(drift * np.arange(len(bars)))  # a steady trend on top: the signed features lean one way
    for name in ("open", "high", "low", "close"):
        getattr(bars, name)[:] *= factor
    raw = torch.cat(raw_features(bars)).T  # (T, 33)
    zscored = torch.cat(compute_features(bars, norm="zscore"), dim=1)
    scaled = torch.cat(compute_features(bars, norm="scale", scale_window=window), dim=1)
    names = (*TECHNICAL_NAMES, *REGIME_NAMES)
    for f, name in enumerate(names):
        if name in SIGNED_NAMES:
            clear = raw[:, f].abs() > 1e-6  # exact zeros (a flat start) may land either side of 0
            assert (torch.sign(scaled[clear, f]) == torch.sign(raw[clear, f]).float()).all(), name
        else:
            torch.testing.assert_close(scaled[:, f], zscored[:, f], msg=name)


def test_a_short_scale_window_puts_calm_and_volatile_returns_on_one_scale() -> None:
    """After a volatile stretch, calm bars' returns over a 250-bar root mean square stay tiny for
    months (beside observation noise of std 1); over a 20-bar one they are back to unit scale
    within a month (env.scale_window)."""
    bars = autocorrelated_bars("V", 800, phi=0.0, vol=0.02, drift=0.0, seed=3)
    calm = autocorrelated_bars("V", 800, phi=0.0, vol=0.005, drift=0.0, seed=4)
    ratio = bars.close[399] / calm.close[399]
    for name in ("open", "high", "low", "close"):
        getattr(bars, name)[400:] = getattr(calm, name)[400:] * ratio
    ret_1 = TECHNICAL_NAMES.index("ret_1")

    def rms(window: int, part: slice) -> float:
        scaled = compute_features(bars, norm="scale", scale_window=window)[0][part, ret_1]
        return float(scaled.pow(2).mean().sqrt())

    volatile, calm_part = slice(300, 400), slice(450, 550)
    assert 0.7 < rms(20, calm_part) / rms(20, volatile) < 1.4
    assert rms(250, calm_part) / rms(250, volatile) < 0.5
