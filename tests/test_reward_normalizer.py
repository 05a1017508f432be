"""RewardNormalizer: scale-free, sign-preserving, unit-scale returns, exact resume."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_core import RewardNormalizer


def run(normalizer: RewardNormalizer, rewards: torch.Tensor, dones: torch.Tensor) -> torch.Tensor:
    return torch.stack([normalizer(r, d) for r, d in zip(rewards, dones)])


def episode_data(seed: int, steps: int = 200, envs: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(steps, envs, generator=g, dtype=torch.float64) * 1e-4 + 2e-5
    dones = torch.rand(steps, envs, generator=g) < 0.02
    return rewards.float(), dones


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.floats(-3, 3))
def test_output_does_not_depend_on_the_reward_scale(seed, log_scale):
    rewards, dones = episode_data(seed)
    base = run(RewardNormalizer(8, 0.99, "cpu", epsilon=1e-20), rewards, dones)
    scaled = run(RewardNormalizer(8, 0.99, "cpu", epsilon=1e-20), rewards * 10**log_scale, dones)
    torch.testing.assert_close(scaled, base, rtol=1e-4, atol=1e-6)
    assert torch.equal(torch.sign(base), torch.sign(rewards))  # scaled, never shifted


def test_discounted_returns_come_out_near_unit_scale():
    rewards, dones = episode_data(0, steps=2000)
    scaled = run(RewardNormalizer(8, 0.99, "cpu"), rewards, dones)
    returns, discounted = torch.zeros(8), []
    for r, d in zip(scaled[1000:], dones[1000:]):
        returns = returns * 0.99 + r
        discounted.append(returns.clone())
        returns = torch.where(d, 0.0, returns)
    std = torch.stack(discounted).std()
    assert 0.5 < std < 2.0, std


def test_state_dict_resumes_exactly():
    rewards, dones = episode_data(1)
    straight = RewardNormalizer(8, 0.99, "cpu")
    expected = run(straight, rewards, dones)
    first = RewardNormalizer(8, 0.99, "cpu")
    head = run(first, rewards[:100], dones[:100])
    second = RewardNormalizer(8, 0.99, "cpu")
    second.load_state_dict(first.state_dict())
    tail = run(second, rewards[100:], dones[100:])
    assert torch.equal(torch.cat([head, tail]), expected)
