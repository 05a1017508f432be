"""Reward components: each finite and within its documented range, monotone where promised."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import DEFAULT_SPEC, EnvConfig, RewardConfig, VecTradingEnv, synthetic_bars
from envs.rewards import StepOutcome, components, diversity_component, drawdown_component, repeat_component

SPEC = DEFAULT_SPEC
NUM_ACTIONS, BUY_LARGE = SPEC.num_actions, SPEC.action_id("BUY_LARGE")

RANGES = {
    "cost": (-1.0, 0.0), "time": (-1.0, 0.0), "sharpe": (-1.0, 1.0), "drawdown": (-1.0 / 0.15, 0.0),
    "sizing": (-1.0, 0.0), "hold": (-1.0, 0.0), "diversity": (0.0, 0.3), "action_repeat": (-0.5, 0.0),
    "intrinsic_action": (0.0, 0.1),
}


def check_ranges(values: dict[str, torch.Tensor]) -> None:
    for name, value in values.items():
        assert torch.isfinite(value).all(), name
        if name in RANGES:
            low, high = RANGES[name]
            assert ((value >= low) & (value <= high)).all(), (name, value)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_drawdown_penalty_is_non_positive_and_non_increasing(a: float, b: float) -> None:
    low, high = sorted((a, b))
    penalty = drawdown_component(torch.tensor([low, high], dtype=torch.float64))
    assert (penalty <= 0).all()
    assert penalty[1] <= penalty[0]


def test_drawdown_penalty_shape() -> None:
    dd = torch.tensor([0.0, 0.049, 0.05, 0.10, 0.15, 0.30, 1.0], dtype=torch.float64)
    expected = torch.tensor([0.0, 0.0, -0.05, -0.10, -0.15, -0.6, -1 / 0.15], dtype=torch.float64)
    torch.testing.assert_close(drawdown_component(dd), expected)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 1000), st.integers(1, 20), st.booleans())
def test_repeat_penalty(run_length: int, limit: int, counted: bool) -> None:
    value = float(repeat_component(torch.tensor([run_length]), limit, torch.tensor([counted]))[0])
    assert -0.5 <= value <= 0.0
    assert (value < 0) == (counted and run_length > limit)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, NUM_ACTIONS), st.integers(0, 100))
def test_diversity_bonus(unique: int, steps: int) -> None:
    value = diversity_component(torch.tensor([unique]), torch.tensor([steps]))
    assert value.dtype == torch.float32 and ((value >= 0.0) & (value <= 0.3)).all()  # 0.3 as float32
    expected = 0.0 if steps < 10 else {3: 0.1, 4: 0.2}.get(unique, 0.3 if unique >= 5 else 0.0)
    assert abs(float(value[0]) - expected) < 1e-6


finite = st.floats(-1e6, 1e6)


def outcome_of(prev: float, change: float, **values: float | int | bool) -> StepOutcome:
    """A one-account StepOutcome with equity = prev + change and every other field from `values`."""
    return StepOutcome(prev_equity=torch.tensor([prev]), equity=torch.tensor([prev + change]),
                       **{name: torch.tensor([value]) for name, value in values.items()})


outcomes = st.builds(
    outcome_of,
    prev=st.floats(1.0, 1e7), change=finite, cost=st.floats(0.0, 1e4), holding=st.booleans(),
    exposure=st.floats(0.0, 1.0), drawdown=st.floats(0.0, 1.0), hold_time=st.integers(0, 10_000),
    sharpe=st.floats(-100.0, 100.0), unique_actions=st.integers(0, NUM_ACTIONS),
    episode_steps=st.integers(1, 10_000), run_length=st.integers(1, 100), repeat_counted=st.booleans(),
    traded=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(outcomes)
def test_every_component_finite_and_in_range(outcome: StepOutcome) -> None:
    values = components(outcome, 1e5, 3, RewardConfig())
    check_ranges(values)
    assert set(values) == set(RewardConfig().weights())


def test_components_in_range_along_env_trajectories() -> None:
    env = VecTradingEnv(["A"], 32, EnvConfig(episode_length=60), markets={"A": synthetic_bars("A", 500)},
                        seed=1)
    env.reset(seed=1)
    generator = torch.Generator().manual_seed(1)
    for _ in range(150):
        noise = torch.rand(env.num_envs, NUM_ACTIONS, generator=generator)
        actions = torch.where(torch.rand(env.num_envs, generator=generator) < 0.3, BUY_LARGE,
                              noise.argmax(1))
        _, reward, _, _, info = env.step(actions)
        check_ranges(info["reward_components"])
        weighted = torch.stack(list(info["weighted_reward_components"].values())).sum(0)
        torch.testing.assert_close(reward, weighted)
