"""Mask rules (DESIGN.md section 4) on generated states, forbidden actions in the env, masked sampling."""
from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import EnvConfig, VecTradingEnv, action_mask, masked_logits, synthetic_bars
from envs.masking import ADD_TO_POSITION, BUY_FRACTIONS, HOLD, NUM_ACTIONS, SELL_ALL, SELL_PARTIAL

MAX_EXPOSURE, COMMISSION = 0.9, 2e-4

accounts = st.lists(
    st.tuples(st.floats(0.0, 1e6), st.one_of(st.just(0.0), st.floats(1e-3, 1e4)), st.floats(0.01, 1e4)),
    min_size=1, max_size=32,
).filter(lambda rows: all(cash + shares * price > 0 for cash, shares, price in rows))


def expected_row(cash: float, shares: float, price: float) -> list[bool]:
    """The rules written out per account, independently of the tensor implementation."""
    equity = cash + shares * price
    exposure = shares * price / equity
    valid = [False] * NUM_ACTIONS
    valid[HOLD] = True
    for action in range(NUM_ACTIONS):
        affordable = cash >= BUY_FRACTIONS[action] * equity * (1 + COMMISSION)
        if shares == 0 and action in (1, 2, 3):
            valid[action] = exposure < MAX_EXPOSURE and affordable
        if shares > 0 and action in (SELL_PARTIAL, SELL_ALL):
            valid[action] = True
        if shares > 0 and action == ADD_TO_POSITION:
            valid[action] = exposure < MAX_EXPOSURE and affordable
    return valid


@settings(max_examples=200, deadline=None)
@given(accounts)
def test_mask_rules_hold_for_any_state(rows: list[tuple[float, float, float]]) -> None:
    cash, shares, price = (torch.tensor(col, dtype=torch.float64) for col in zip(*rows))
    mask = action_mask(cash, shares, cash + shares * price, price, max_exposure=MAX_EXPOSURE,
                       commission_rate=COMMISSION)
    assert mask.shape == (len(rows), NUM_ACTIONS) and mask.dtype == torch.bool
    assert mask[:, HOLD].all()
    assert mask.any(1).all()
    assert mask.tolist() == [expected_row(*row) for row in rows]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 64), st.integers(0, 2**31 - 1))
def test_sampling_from_masked_logits_never_picks_a_masked_action(rows: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = 10 * torch.randn(rows, NUM_ACTIONS, generator=generator)
    mask = torch.rand(rows, NUM_ACTIONS, generator=generator) < 0.5
    mask[:, HOLD] = True
    dist = torch.distributions.Categorical(logits=masked_logits(logits, mask))
    assert (dist.probs[~mask] == 0).all()
    samples = dist.sample((200,))  # (200, rows)
    assert mask.gather(1, samples.T).all()


ENV = VecTradingEnv(["A"], 16, EnvConfig(episode_length=40), markets={"A": synthetic_bars("A", 400)}, seed=0)


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
