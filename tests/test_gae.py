"""compute_gae against a plain Python loop over steps and envs."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ppo_core import compute_gae

finite = st.floats(-10.0, 10.0, allow_nan=False, width=64)


def reference_gae(rewards, values, dones, last_values, gamma, lam):
    """Textbook GAE on nested lists: episode ends after step t when dones[t][n]."""
    T, N = len(rewards), len(rewards[0])
    adv = [[0.0] * N for _ in range(T)]
    for n in range(N):
        next_adv = 0.0
        for t in reversed(range(T)):
            next_value = last_values[n] if t == T - 1 else values[t + 1][n]
            if dones[t][n]:
                next_value, next_adv = 0.0, 0.0
            delta = rewards[t][n] + gamma * next_value - values[t][n]
            next_adv = delta + gamma * lam * next_adv
            adv[t][n] = next_adv
    return adv


@st.composite
def rollouts(draw):
    T, N = draw(st.integers(1, 12)), draw(st.integers(1, 4))
    grid = lambda elems: draw(st.lists(st.lists(elems, min_size=N, max_size=N), min_size=T, max_size=T))
    return (grid(finite), grid(finite), grid(st.booleans()),
            draw(st.lists(finite, min_size=N, max_size=N)),
            draw(st.floats(0.0, 1.0)), draw(st.floats(0.0, 1.0)))


@settings(max_examples=150, deadline=None)
@given(rollouts())
def test_gae_matches_reference_loop(data):
    rewards, values, dones, last_values, gamma, lam = data
    f64 = lambda x: torch.tensor(x, dtype=torch.float64)
    adv, ret = compute_gae(f64(rewards), f64(values), f64(dones), f64(last_values), gamma, lam)
    expected = f64(reference_gae(rewards, values, dones, last_values, gamma, lam))
    torch.testing.assert_close(adv, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ret, expected + f64(values), rtol=1e-10, atol=1e-10)


def test_done_cuts_bootstrap_and_lambda_one_gives_discounted_return():
    # one env, episode ends after step 1; lambda = 1 -> advantage = discounted return - value
    rewards = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    values = torch.tensor([[0.5], [0.25], [0.125]], dtype=torch.float64)
    dones = torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64)
    last = torch.tensor([10.0], dtype=torch.float64)
    adv, ret = compute_gae(rewards, values, dones, last, gamma=0.5, gae_lambda=1.0)
    torch.testing.assert_close(ret.flatten(), torch.tensor([1 + 0.5 * 2, 2.0, 3 + 0.5 * 10],
                                                          dtype=torch.float64))


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="last_values"):
        compute_gae(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3), 0.99, 0.95)
