"""Reward components: each finite and within its documented range, monotone where promised."""
from __future__ import annotations

from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import DEFAULT_SPEC, REWARD_COMPONENTS, EnvConfig, RewardConfig, VecTradingEnv, synthetic_bars
from envs.rewards import (TERMS, StepOutcome, components, diversity_component, drawdown_component,
                          repeat_component)
from trainers.monitoring.rollout_stats import RolloutStats

SPEC = DEFAULT_SPEC
NUM_ACTIONS, BUY_LARGE = SPEC.num_actions, SPEC.action_id("BUY_LARGE")

RANGES = {  # cost is at most the initial capital, in units of initial capital x money_scale
    "cost": (-RewardConfig().money_scale, 0.0), "time": (-1.0, 0.0), "sharpe": (-1.0, 1.0),
    "drawdown": (-1.0 / 0.15, 0.0),
    "sizing": (-1.0, 0.0), "hold": (-1.0, 0.0), "diversity": (0.0, 0.3), "action_repeat": (-0.5, 0.0),
    "intrinsic_action": (0.0, 0.1), "failed_action_penalty": (-1.0, 0.0),
}


HELD = dict(cost=0.0, holding=True, exposure=0.1, drawdown=0.0, hold_time=3, sharpe=0.0,
            unique_actions=1, episode_steps=5, run_length=1, repeat_counted=False, traded=False,
            failed=False)
"""one step of a held position, no cost, trade or penalty: outcome_of's values for the pnl tests"""


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
                       initial_capital=1e5, repeat_limit=3,
                       **{name: torch.tensor([value]) for name, value in values.items()})


outcomes = st.builds(
    outcome_of,
    prev=st.floats(1.0, 1e7), change=finite, cost=st.floats(0.0, 1e5), holding=st.booleans(),
    cost_basis=st.floats(0.0, 1e7), failed=st.booleans(),
    exposure=st.floats(0.0, 1.0), drawdown=st.floats(0.0, 1.0), hold_time=st.integers(0, 10_000),
    sharpe=st.floats(-100.0, 100.0), unique_actions=st.integers(0, NUM_ACTIONS),
    episode_steps=st.integers(1, 10_000), run_length=st.integers(1, 100), repeat_counted=st.booleans(),
    traded=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(outcomes)
def test_every_component_finite_and_in_range(outcome: StepOutcome) -> None:
    values = components(outcome, RewardConfig())
    check_ranges(values)
    assert set(values) == set(RewardConfig().weights())


def test_components_in_range_along_env_trajectories() -> None:
    env = VecTradingEnv(["A"], 32, EnvConfig(episode_length=60, obs_noise=0.0),
                        markets={"A": synthetic_bars("A", 500)},
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


def test_roi_multiplier_on_a_hand_computed_trade() -> None:
    """A position bought for 10,000 that gains 300 (ROI 3 %) in a step: pnl = 300 / 100,000 in
    basis points (30) times clamp(1 + 2 x 0.03, 0.5, 3) = 1.06; flat, the multiplier is 1."""
    cfg = RewardConfig(roi_scaling=True)
    won = components(outcome_of(100_000.0, 300.0, cost_basis=10_000.0, **HELD), cfg)
    assert abs(float(won["pnl"][0]) - 30.0 * 1.06) < 1e-4
    lost = components(outcome_of(100_000.0, -2_000.0, cost_basis=10_000.0, **HELD), cfg)
    assert abs(float(lost["pnl"][0]) - (-200.0 * 0.6)) < 1e-3  # ROI -20 %: 1 - 0.4
    crash = components(outcome_of(100_000.0, -5_000.0, cost_basis=10_000.0, **HELD), cfg)
    assert abs(float(crash["pnl"][0]) - (-500.0 * 0.5)) < 1e-3  # clamped at roi_clamp_min
    flat = components(outcome_of(100_000.0, 50.0, cost_basis=0.0, **HELD), cfg)
    assert abs(float(flat["pnl"][0]) - 5.0) < 1e-5


@settings(max_examples=200, deadline=None)
@given(st.floats(1.0, 5_000.0), st.floats(1_000.0, 90_000.0))
def test_default_pnl_reward_is_risk_neutral_and_the_roi_multiplier_pays_for_variance(
        move: float, cost_basis: float) -> None:
    """A held position's gain and an equal loss: by default their pnl rewards cancel, so a bet
    with zero expected return earns zero expected reward whatever its variance. With the ROI
    multiplier on, the pair sums to more than zero: the reward pays for variance itself."""
    def pnl_pair(cfg: RewardConfig) -> tuple[float, float]:
        up, down = (components(outcome_of(100_000.0, sign * move, cost_basis=cost_basis, **HELD), cfg)["pnl"][0]
                    for sign in (1.0, -1.0))
        return float(up), float(down)

    up, down = pnl_pair(RewardConfig())
    assert up > 0 and abs(up + down) <= 1e-6 * abs(up)
    up, down = pnl_pair(RewardConfig(roi_scaling=True))
    assert up + down > 0


def test_no_sharpe_payment_before_its_window() -> None:
    cfg = RewardConfig(sharpe_min_steps=20, sharpe_target=0.1)
    step = dict(cost=0.0, holding=True, exposure=0.1, drawdown=0.0, hold_time=3, sharpe=0.5,
                unique_actions=1, run_length=1, repeat_counted=False, traded=False, failed=False,
                cost_basis=1.0)
    for steps, expected in ((1, 0.0), (19, 0.0), (20, 0.4), (500, 0.4)):
        value = components(outcome_of(1e5, 0.0, episode_steps=steps, **step), cfg)["sharpe"]
        assert abs(float(value[0]) - expected) < 1e-6, steps
    # along a real trajectory: nothing in the first sharpe_min_steps steps of any episode
    env = VecTradingEnv(["A"], 8, EnvConfig(episode_length=40, reward=cfg, obs_noise=0.0),
                        markets={"A": synthetic_bars("A", 500)}, seed=2)
    env.reset(seed=2)
    for t in range(19):
        _, _, _, _, info = env.step(torch.full((8,), BUY_LARGE if t == 0 else SPEC.hold_id))
        assert (info["reward_components"]["sharpe"] == 0).all()


def test_failed_action_penalty_only_for_masked_actions() -> None:
    env = VecTradingEnv(["A"], 2, EnvConfig(episode_length=40, obs_noise=0.0),
                        markets={"A": synthetic_bars("A", 500)},
                        seed=0)
    env.reset(seed=0)
    sell = SPEC.action_id("SELL_ALL")  # forbidden while flat
    _, _, _, _, info = env.step(torch.tensor([sell, SPEC.hold_id]))
    assert info["mask_violation"].tolist() == [True, False]
    assert info["reward_components"]["failed_action_penalty"].tolist() == [-1.0, 0.0]


def test_reward_shares_on_a_scripted_trajectory() -> None:
    """Two steps of two accounts with hand-set weighted components: |pnl| sums to 6, |cost| to 2,
    |sharpe| to 0 -> shares 0.75, 0.25, 0."""
    env = VecTradingEnv(["A"], 2, EnvConfig(episode_length=40, obs_noise=0.0),
                        markets={"A": synthetic_bars("A", 500)},
                        seed=0)
    env.reset(seed=0)
    stats = RolloutStats(["A"], 2, SPEC.action_names, torch.device("cpu"))
    scripted = [{"pnl": [1.0, -3.0], "cost": [-1.0, 0.0]}, {"pnl": [2.0, 0.0], "cost": [0.0, -1.0]}]
    for step, values in enumerate(scripted):
        _, _, _, _, info = env.step(torch.full((2,), SPEC.hold_id))
        weighted = {name: torch.zeros(2) for name in info["weighted_reward_components"]}
        weighted.update({name: torch.tensor(v) for name, v in values.items()})
        stats.on_step(step, {**info, "weighted_reward_components": weighted})
    shares = stats.summary().reward_shares
    assert abs(shares["pnl"] - 0.75) < 1e-6
    assert abs(shares["cost"] - 0.25) < 1e-6
    assert shares["sharpe"] == 0.0
    assert abs(sum(shares.values()) - 1.0) < 1e-6


def test_pnl_carries_most_of_the_default_reward_on_real_bars() -> None:
    """Default config, bundled SPX bars, uniformly random valid actions: PnL's share of the
    absolute weighted reward is >= 70 % and every shaping term is smaller than PnL."""
    root = Path(__file__).resolve().parents[1]
    env = VecTradingEnv(["SPX"], 64, EnvConfig(obs_noise=0.0), data_dir=str(root / "data"), seed=0)
    env.reset(seed=0)
    stats = RolloutStats(["SPX"], 64, SPEC.action_names, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    for step in range(300):
        noise = torch.rand(env.num_envs, NUM_ACTIONS, generator=generator)
        _, _, _, _, info = env.step((noise * env.action_masks()).argmax(1))
        stats.on_step(step, info)
    shares = stats.summary().reward_shares
    assert shares["pnl"] >= 0.70, shares
    assert all(shares[name] < shares["pnl"] for name in shares if name != "pnl"), shares


def test_each_term_is_one_entry_that_the_config_logs_and_default_toml_follow() -> None:
    """TERMS is the one place a reward term is declared: its weight field (default and doc), the
    component list the env reports and sums, and its line in configs/default.toml all come from it."""
    import tomllib
    from pathlib import Path

    from configs.defaults import field_docs

    names = tuple(term.name for term in TERMS)
    assert tuple(RewardConfig().weights()) == names == REWARD_COMPONENTS
    assert all(getattr(RewardConfig(), t.name) == t.weight for t in TERMS)
    docs = field_docs(RewardConfig)
    assert all(docs[t.name] == " ".join(t.doc.split()) for t in TERMS)
    text = (Path(__file__).resolve().parents[1] / "configs" / "default.toml").read_text()
    written = tomllib.loads(text)["env"]["reward"]
    assert {name: written[name] for name in names} == {t.name: t.weight for t in TERMS}
    env = VecTradingEnv(["A"], 2, EnvConfig(episode_length=50, obs_noise=0.0), markets={"A": synthetic_bars("A", 400)},
                        seed=0)
    env.reset()
    _, reward, _, _, info = env.step(torch.zeros(2, dtype=torch.long))
    assert tuple(info["reward_components"]) == names
    torch.testing.assert_close(reward, sum(info["weighted_reward_components"].values()))
