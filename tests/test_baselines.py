"""The passive baselines the agent is judged against (trainers.backtest.simulate.hold): a buy once
and held position lets its exposure drift with the price, the matched baseline rebalanced every
bar keeps it, both pay the env's costs, and the accounting adds up."""
from __future__ import annotations

import numpy as np
import pytest

from envs import Bars, EnvConfig, VecTradingEnv
from trainers.backtest.simulate import hold

BARS = 400


def trending_bars(total_move: float, seed: int = 0) -> Bars:
    """Daily bars whose close moves by the factor `total_move` over BARS bars, with noise."""
    rng = np.random.default_rng(seed)
    log_returns = np.full(BARS, np.log(total_move) / BARS) + rng.normal(0.0, 0.004, BARS)
    log_returns -= log_returns.mean() - np.log(total_move) / BARS  # exactly the asked-for move
    close = 100.0 * np.exp(np.cumsum(log_returns))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.001, BARS))
    stamps = np.busday_offset("2010-01-04", np.arange(BARS)).astype("datetime64[ns]").astype(np.int64)
    return Bars(symbol="TRD", timestamps=stamps, open=open_, high=np.maximum(open_, close) * 1.002,
                low=np.minimum(open_, close) * 0.998, close=close, volume=np.full(BARS, 1e6))


def env_of(bars: Bars, **costs: float) -> VecTradingEnv:
    config = EnvConfig(episode_length=0, random_start=False, obs_noise=0.0, split_fractions=(0.98, 0.01, 0.01),
                       **costs)
    return VecTradingEnv(["TRD"], 1, config, markets={"TRD": bars}, split="train", seed=0)


@pytest.mark.parametrize("move", [2.0, 0.5])
def test_rebalanced_exposure_stays_at_the_fraction_and_buy_once_drifts(move):
    """f = 0.30 on a path that doubles and one that halves: rebalanced, the mean exposure is within
    a point of 0.30; bought once, it drifts (up on the doubling path, down on the halving one), which
    is why a buy-once partial position is no exposure-matched baseline."""
    env = env_of(trending_bars(move))
    rebalanced = hold(env, "TRD", 0.30, rebalance=True)
    once = hold(env, "TRD", 0.30, rebalance=False)
    assert abs(rebalanced.exposure.mean() - 0.30) < 0.01
    assert np.all(np.abs(rebalanced.exposure - 0.30) < 0.03)
    drift = once.exposure.mean() - 0.30
    assert (drift > 0.03) if move > 1 else (drift < -0.03), once.exposure.mean()
    assert np.count_nonzero(once.notional) == 1 and np.count_nonzero(rebalanced.notional) > BARS // 2


def test_accounting_without_costs_is_the_constant_mix_return():
    """With no commission or slippage, each bar's order brings the position to f of the equity at
    the decision (the last close), as the env sizes its buys, filled at the open and marked at the
    close; checked bar by bar from the prices with the cash and shares carried along."""
    bars = trending_bars(1.3, seed=3)
    env = env_of(bars, commission_bps=0.0, slippage_bps=0.0)
    first, last = env.decision_range["TRD"]
    held = hold(env, "TRD", 0.6, rebalance=True)
    equity, cash, shares = [env.config.initial_capital], env.config.initial_capital, 0.0
    for t in range(last - first):
        bar = first + 1 + t
        order = 0.6 * equity[-1] - shares * bars.open[bar]
        shares, cash = shares + order / bars.open[bar], cash - order
        equity.append(cash + shares * bars.close[bar])
        assert shares * bars.open[bar] == pytest.approx(0.6 * equity[-2], rel=1e-12)
    np.testing.assert_allclose(held.equity, equity, rtol=1e-12)


def test_costs_are_paid_on_every_rebalance():
    """The same path with commission and slippage: the rebalanced account ends lower than without
    costs by at least the commission on what it traded, and buy once with fraction 1 ends where the
    by-hand fill says (open plus slippage, commission on top)."""
    bars = trending_bars(1.3, seed=4)
    free = hold(env_of(bars, commission_bps=0.0, slippage_bps=0.0), "TRD", 0.5, rebalance=True)
    env = env_of(bars, commission_bps=5.0, slippage_bps=2.0)
    paid = hold(env, "TRD", 0.5, rebalance=True)
    assert paid.equity[-1] < free.equity[-1] - 5e-4 * paid.notional.sum() * 0.9
    first, last = env.decision_range["TRD"]
    full = hold(env, "TRD", 1.0, rebalance=False)
    by_hand = bars.close[last] / (bars.open[first + 1] * 1.0002 * 1.0005)
    assert full.equity[-1] / full.equity[0] == pytest.approx(by_hand, rel=1e-9)
    assert hold(env, "TRD", 0.0, rebalance=True).equity == pytest.approx(np.full(last - first + 1, 1e5))


def test_a_fraction_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="fraction must be in"):
        hold(env_of(trending_bars(1.0)), "TRD", 1.5, rebalance=True)
