"""Index-based rollout storage (run.rollout_storage = "index"): the buffer keeps each lookback
window as its (flat start row, noise offset) and rebuilds it from the env's feature table. It must
give exactly the minibatches that storing the windows gives, and fit the seed's universe in 1 GB."""
from __future__ import annotations

import pytest
import torch

from envs import DEFAULT_SPEC, EnvConfig, VecTradingEnv, synthetic_bars
from envs.noise import NoisePool
from models.policy import MultiSymbolPolicy
from configs.train import DEFAULT_CONFIG, resolve
from ppo_core import RolloutBuffer, collect_rollout

MARKETS = {"A": synthetic_bars("A", 800), "B": synthetic_bars("B", 800)}
E, T = 6, 40


def collect(config: EnvConfig, compact: bool) -> tuple[RolloutBuffer, list[dict[str, torch.Tensor]]]:
    """One rollout of a freshly seeded policy; also the technical windows the hook was handed."""
    env = VecTradingEnv(list(MARKETS), E, config, markets=MARKETS, seed=5)
    spec = env.trading_spec
    buffer = RolloutBuffer(T, env.num_envs, spec.obs_shapes, "cpu", spec.num_actions,
                           compact=env.compact_observations() if compact else None)
    torch.manual_seed(0)
    model = resolve(DEFAULT_CONFIG, ["run.encoder_preset=small"]).model
    policy = MultiSymbolPolicy(list(MARKETS), model, spec).eval()
    seen: list[dict[str, torch.Tensor]] = []
    collect_rollout(env, policy, buffer, env.reset(seed=5)[0], gamma=0.9,
                    on_step=lambda t, info, data: seen.append({"technical": data.obs["technical"].clone(),
                                                               "regime": data.obs["regime"].clone()}))
    return buffer, seen


@pytest.mark.parametrize("obs_noise", [0.0, 1.0])
def test_index_storage_gives_bit_identical_minibatches(obs_noise: float) -> None:
    # short episodes: accounts end and restart inside the rollout (final_obs observed before the
    # next episode's first obs), where a reference to the wrong observation would show
    config = EnvConfig(episode_length=7, obs_noise=obs_noise)
    windows, seen_windows = collect(config, compact=False)
    indexed, seen_indexed = collect(config, compact=True)
    assert "technical" in windows.obs and "technical" not in indexed.obs
    advantages, returns = torch.randn(T, windows.num_envs), torch.randn(T, windows.num_envs)
    pairs = zip(windows.minibatches(advantages, returns, 4, 2, torch.Generator().manual_seed(1)),
                indexed.minibatches(advantages, returns, 4, 2, torch.Generator().manual_seed(1)))
    for expected, got in pairs:
        assert expected.obs.keys() == got.obs.keys()
        for key in expected.obs:
            assert torch.equal(expected.obs[key], got.obs[key]), key
        for name in ("actions", "logprobs", "values", "advantages", "returns", "masks"):
            assert torch.equal(getattr(expected, name), getattr(got, name)), name
    for step_windows, step_indexed in zip(seen_windows, seen_indexed, strict=True):
        for key in step_windows:
            assert torch.equal(step_windows[key], step_indexed[key]), key


def test_noise_is_rebuilt_exactly_and_differs_between_observations() -> None:
    env = VecTradingEnv(list(MARKETS), E, EnvConfig(obs_noise=1.0), markets=MARKETS, seed=2)
    refs_codec = env.compact_observations()["technical"]
    first = env.reset(seed=2)[0]["technical"].clone()
    first_refs = refs_codec.refs().clone()
    hold = torch.zeros(env.num_envs, dtype=torch.long)
    second = env.step(hold)[0]["technical"].clone()
    assert torch.equal(refs_codec.expand(first_refs), first)
    assert torch.equal(refs_codec.expand(refs_codec.refs()), second)
    # the bar that the first window ends on is one bar older in the second: same data, new noise
    assert not torch.equal(first[:, -1], second[:, -2])
    clean = VecTradingEnv(list(MARKETS), E, EnvConfig(obs_noise=0.0),
                          markets=MARKETS, seed=2).reset(seed=2)[0]["technical"]
    assert abs(float((first - clean).std()) - 1.0) < 0.05


def test_noise_pool_slices_are_standard_normal_and_rebuilt_from_their_offsets() -> None:
    pool = NoisePool(width=50, seed=0, device=torch.device("cpu"), size=1 << 16)
    offsets = pool.offsets(4000, torch.Generator().manual_seed(1))
    draws = pool.slices(offsets)
    assert draws.shape == (4000, 50) and torch.equal(draws, pool.slices(offsets.clone()))
    assert abs(float(draws.mean())) < 0.02 and abs(float(draws.std()) - 1.0) < 0.02
    assert abs(float((draws**4).mean()) - 3.0) < 0.15  # Gaussian tails, not uniform's 1.8
    # consecutive elements of a slice are distinct pool entries, so independent
    lag1 = torch.corrcoef(torch.stack([draws[:, :-1].flatten(), draws[:, 1:].flatten()]))[0, 1]
    assert abs(float(lag1)) < 0.02
    with pytest.raises(ValueError, match="width"):
        NoisePool(width=0, seed=0, device=torch.device("cpu"))


def test_the_seeds_universe_fits_in_one_gigabyte_with_index_storage() -> None:
    """143 symbols x 8 accounts x 2048 steps; bytes per account-step measured on a small buffer."""
    spec = DEFAULT_SPEC
    env = VecTradingEnv(list(MARKETS), 1, EnvConfig(obs_noise=0.0), markets=MARKETS, seed=0)
    per_step = {}
    for storage, compact in (("index", env.compact_observations()), ("window", None)):
        small = RolloutBuffer(4, 2, spec.obs_shapes, "cpu", spec.num_actions, compact=compact)
        per_step[storage] = small.nbytes() / (4 * 2)
    seed_steps = 143 * 8 * 2048
    # GAE's advantages and returns are allocated beside the buffer: 2 float32 per account-step
    assert (per_step["index"] + 8) * seed_steps < 1e9
    assert (per_step["window"] + 8) * seed_steps > 4e9  # what index storage saves
