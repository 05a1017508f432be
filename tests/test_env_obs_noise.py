"""env.obs_noise: Gaussian noise on the market features only, never on the account state, and
none in backtests (EnvConfig.backtest)."""
from __future__ import annotations

import torch

from envs import DEFAULT_SPEC, EnvConfig, VecTradingEnv, synthetic_bars

MARKETS = {"A": synthetic_bars("A", 800), "B": synthetic_bars("B", 800)}
MARKET_KEYS = ("technical", "regime")


def rollout(config: EnvConfig, steps: int = 40) -> list[tuple[dict[str, torch.Tensor], dict]]:
    """(obs, info) after reset and after each of `steps` scripted actions; 8 accounts per symbol."""
    env = VecTradingEnv(list(MARKETS), 8, config, markets=MARKETS, seed=3)
    obs, info = env.reset(seed=3)
    out = [({k: v.clone() for k, v in obs.items()}, info)]
    buy, sell = DEFAULT_SPEC.action_id("BUY_LARGE"), DEFAULT_SPEC.action_id("SELL_ALL")
    for t in range(steps):
        actions = torch.full((env.num_envs,), buy if t % 6 == 0 else sell if t % 6 == 3 else 0)
        obs, _, _, _, info = env.step(actions)
        out.append(({k: v.clone() for k, v in obs.items()}, info))
    return out


def test_noise_has_the_configured_std_on_market_features_and_leaves_the_rest_alone() -> None:
    base = EnvConfig(episode_length=0, random_start=False, obs_noise=0.0)
    clean = rollout(base)
    noisy = rollout(EnvConfig(episode_length=0, random_start=False, obs_noise=0.5))
    diffs = {k: torch.cat([(n[0][k] - c[0][k]).flatten() for c, n in zip(clean, noisy)]) for k in MARKET_KEYS}
    for key, diff in diffs.items():
        assert abs(float(diff.std()) - 0.5) < 0.02, key
        assert abs(float(diff.mean())) < 0.02, key
    for (c_obs, c_info), (n_obs, n_info) in zip(clean, noisy):
        for key in c_obs.keys() - set(MARKET_KEYS):
            torch.testing.assert_close(n_obs[key], c_obs[key], rtol=0, atol=0, msg=key)
        if "equity" in c_info:  # accounting never sees the noise
            torch.testing.assert_close(n_info["equity"], c_info["equity"], rtol=0, atol=0)


def test_backtest_config_observes_without_noise() -> None:
    noisy = EnvConfig(obs_noise=2.0)
    backtest = noisy.backtest()
    assert (backtest.obs_noise, backtest.episode_length, backtest.random_start) == (0.0, 0, False)
    clean = rollout(EnvConfig(episode_length=0, random_start=False, obs_noise=0.0), steps=5)
    for (c_obs, _), (b_obs, _) in zip(clean, rollout(backtest, steps=5)):
        for key in c_obs:
            torch.testing.assert_close(b_obs[key], c_obs[key], rtol=0, atol=0, msg=key)
