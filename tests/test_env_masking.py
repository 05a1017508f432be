"""Mask rules (docs/design.md, "Mask rules") on generated states, forbidden actions in the env, masked sampling,
and the action table driving masks and fills."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import (DEFAULT_ACTIONS, DEFAULT_SPEC, Action, EnvConfig, TradingSpec, VecTradingEnv, action_mask,
                  synthetic_bars)
from ppo_core import masked_logits

SPEC = DEFAULT_SPEC
HOLD, BUY_LARGE = (SPEC.action_id(name) for name in ("HOLD", "BUY_LARGE"))
NUM_ACTIONS = SPEC.num_actions

MAX_EXPOSURE, COMMISSION = 0.9, 2e-4
SELL_QUARTER = Action("SELL_QUARTER", "sell", sell_fraction=0.25)
EXTENDED = TradingSpec.from_config(EnvConfig(actions=DEFAULT_ACTIONS + (SELL_QUARTER,)))

accounts = st.lists(
    st.tuples(st.floats(0.0, 1e6), st.one_of(st.just(0.0), st.floats(1e-3, 1e4)), st.floats(0.01, 1e4)),
    min_size=1, max_size=32,
).filter(lambda rows: all(cash + shares * price > 0 for cash, shares, price in rows))


def expected_row(cash: float, shares: float, price: float, spec: TradingSpec = SPEC) -> list[bool]:
    """The rules written out per account and action kind, independently of the tensor implementation."""
    equity = cash + shares * price
    exposure = shares * price / equity
    valid = [False] * spec.num_actions
    valid[spec.hold_id] = True
    for action, row in enumerate(spec.actions):
        affordable = cash >= row.buy_fraction * equity * (1 + COMMISSION)
        if row.kind == "hold":
            valid[action] = True
        if shares == 0 and row.kind == "buy":
            valid[action] = exposure < MAX_EXPOSURE and affordable
        if shares > 0 and row.kind == "sell":
            valid[action] = True
        if shares > 0 and row.kind == "add":
            valid[action] = exposure < MAX_EXPOSURE and affordable
    return valid


@settings(max_examples=200, deadline=None)
@given(accounts)
def test_mask_rules_hold_for_any_state(rows: list[tuple[float, float, float]]) -> None:
    cash, shares, price = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows))
    for spec in (SPEC, EXTENDED):
        table = spec.tensors(torch.device("cpu"), torch.float64)
        mask = action_mask(table, table.buy_fraction, cash, shares, cash + shares * price, price, max_exposure=MAX_EXPOSURE,
                           commission_rate=COMMISSION)
        assert mask.shape == (len(rows), spec.num_actions) and mask.dtype == torch.bool
        assert mask[:, spec.hold_id].all()
        assert mask.any(1).all()
        assert mask.tolist() == [expected_row(*row, spec=spec) for row in rows]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 64), st.integers(0, 2**31 - 1))
def test_sampling_from_masked_logits_never_picks_a_masked_action(rows: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = 10 * torch.randn(rows, NUM_ACTIONS, generator=generator)
    mask = torch.rand(rows, NUM_ACTIONS, generator=generator) < 0.5
    mask[:, HOLD] = True
    masked = masked_logits(logits, mask)
    assert masked.dtype == torch.float32
    dist = torch.distributions.Categorical(logits=masked)
    assert (dist.probs[~mask] == 0).all()
    samples = dist.sample((200,))  # (200, rows)
    assert mask.gather(1, samples.T).all()


ENV = VecTradingEnv(["A"], 16, EnvConfig(episode_length=40, obs_noise=0.0),
                    markets={"A": synthetic_bars("A", 400)}, seed=0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.lists(st.integers(0, NUM_ACTIONS - 1), min_size=16, max_size=16),
                min_size=1, max_size=30),
       st.integers(0, 1000))
def test_forbidden_action_executes_as_hold_and_is_counted(actions: list[list[int]], seed: int) -> None:
    ENV.reset(seed=seed)
    for row in actions:
        before = {name: getattr(ENV.accounts, name).clone() for name in ("cash", "shares", "entry")}
        mask = ENV.action_masks().clone()
        policy = torch.tensor(row)
        _, _, terminated, truncated, info = ENV.step(policy)
        forbidden = ~mask.gather(1, policy[:, None]).squeeze(1)
        assert torch.equal(info["mask_violation"], forbidden)
        assert torch.equal(info["policy_action"], policy)
        assert (info["executed_action"][forbidden] == HOLD).all()
        assert not info["filled"][forbidden].any() and (info["cost"][forbidden] == 0).all()
        kept = forbidden & ~(terminated | truncated)  # ended rows were reset to a fresh account
        for name, value in before.items():
            assert torch.equal(getattr(ENV.accounts, name)[kept], value[kept]), name


def test_action_table_drives_spaces_masks_and_fills() -> None:
    """An eighth action (sell a quarter) is one table row: spaces, masks and fills follow it."""
    config = EnvConfig(episode_length=40, random_start=False, actions=DEFAULT_ACTIONS + (SELL_QUARTER,),
                       obs_noise=0.0)
    env = VecTradingEnv(["SYN"], 2, config, markets={"SYN": synthetic_bars("SYN", num_bars=400)}, seed=0)
    spec = env.trading_spec
    assert spec == EXTENDED and spec.num_actions == 8 and spec.action_names[-1] == "SELL_QUARTER"
    assert env.single_action_space.n == 8 and env.action_space.nvec.tolist() == [8, 8]
    quarter, buy_large, hold = spec.action_id("SELL_QUARTER"), spec.action_id("BUY_LARGE"), spec.hold_id
    assert buy_large == BUY_LARGE and hold == HOLD  # the default rows keep their ids
    env.reset(seed=0)
    mask = env.action_masks()
    assert mask.shape == (2, 8) and not mask[:, quarter].any()  # flat: nothing to sell
    # flat SELL_QUARTER is forbidden and executes as HOLD
    _, _, _, _, info = env.step(torch.tensor([quarter, hold]))
    assert info["mask_violation"].tolist() == [True, False]
    assert info["executed_action"].tolist() == [hold, hold] and not info["filled"].any()

    _, _, _, _, info = env.step(torch.tensor([buy_large, hold]))
    assert info["filled"].tolist() == [True, False]
    mask = env.action_masks()
    assert mask[:, quarter].tolist() == [True, False]  # holding: valid; still flat: masked
    shares = env.accounts.shares.clone()
    assert shares.dtype == torch.float64 and shares[0] > 0 and shares[1] == 0

    _, _, _, _, info = env.step(torch.tensor([quarter, hold]))
    assert not info["mask_violation"].any() and info["executed_action"].tolist() == [quarter, hold]
    assert info["filled"].tolist() == [True, False]
    after = env.accounts.shares
    assert after[0] == shares[0] - 0.25 * shares[0] and after[0] == 0.75 * shares[0]
    assert after[1] == 0
    assert env.action_masks()[0, quarter]  # still holding three quarters: selling again stays valid
