"""The backtest engine: every symbol's accounts trade a whole split side by side in one
VecTradingEnv. Within each symbol, account 0 follows the greedy policy, accounts 1..K a uniformly
random valid policy each (K seeded paths, one distribution), the rest the sampled policy; the
buy-and-hold baselines are priced with the env's own cost model (envs.accounts.buy_fill and
sell_fill)."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from envs import VecTradingEnv
from envs.accounts import buy_fill, sell_fill
from models import MultiSymbolPolicy, PolicyEnsemble
from trainers.backtest.metrics import equity_metrics

GREEDY = 0
"""the greedy account's role within each symbol; 1..K are random-valid paths, K+1.. sampled-policy accounts"""


def random_roles(num_random: int) -> range:
    """The roles of the random-valid accounts within each symbol."""
    return range(GREEDY + 1, GREEDY + 1 + num_random)


def sampled_roles(num_random: int, num_sampled: int) -> range:
    """The roles of the sampled-policy accounts within each symbol."""
    return range(GREEDY + 1 + num_random, GREEDY + 1 + num_random + num_sampled)


def simulate(env: VecTradingEnv, policy: MultiSymbolPolicy | PolicyEnsemble, num_random: int, num_sampled: int,
             generator: torch.Generator) -> dict[str, np.ndarray]:
    """Run one full-split episode in every account (env.layout.per_symbol must be 1 + num_random
    + num_sampled); per-step (L, N) host arrays of equity, exposure and traded notional, plus (N,)
    episode statistics."""
    if env.layout.per_symbol != 1 + num_random + num_sampled:
        raise ValueError(f"simulate: {env.layout.per_symbol} accounts per symbol, but 1 greedy + {num_random} random "
                         f"+ {num_sampled} sampled asked for")
    role = env.layout.role(env.device)  # (N,)
    # the policy runs on its own accounts only (the same count per symbol, so they form a layout)
    acting = ((role == GREEDY) | (role > num_random)).nonzero().squeeze(1)  # (S x (1 + num_sampled),)
    acting_greedy = role[acting] == GREEDY

    def choose(obs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        own_obs, own_mask = {key: value[acting] for key, value in obs.items()}, mask[acting]
        greedy = policy.act(own_obs, own_mask, deterministic=True)[0]
        sampled = policy.act(own_obs, own_mask)[0] if num_sampled else greedy
        # validation runs greedy accounts only: no random draws to make then
        actions = (torch.multinomial(mask.float(), 1, generator=generator).squeeze(1) if num_random
                   else torch.zeros_like(role))
        return actions.index_copy(0, acting, torch.where(acting_greedy, greedy, sampled))

    return run_episode(env, choose)


def run_episode(env: VecTradingEnv, choose: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]
                ) -> dict[str, np.ndarray]:
    """One full-split episode in every account, `choose(obs, mask)` giving the (N,) actions of each
    step; what `simulate` returns."""
    steps = max(last - first for first, last in env.decision_range.values())
    n = env.num_envs
    equity = torch.zeros(steps, n, dtype=torch.float64, device=env.device)
    exposure = torch.zeros_like(equity)
    notional = torch.zeros_like(equity)
    alive = torch.ones(n, dtype=torch.bool, device=env.device)
    stats: dict[str, torch.Tensor] = {}
    obs, _ = env.reset()
    for t in range(steps):
        actions = choose(obs, env.action_masks())
        obs, _, terminated, truncated, info = env.step(actions)
        # Accounts that already finished (a shorter split, or the equity floor) keep their last value.
        previous = equity[t - 1] if t else torch.full_like(equity[0], env.config.initial_capital)
        equity[t] = torch.where(alive, info["equity"].double(), previous)
        exposure[t] = torch.where(alive, info["exposure"].double(), 0.0)
        notional[t] = torch.where(alive, info["notional"].double(), 0.0)
        ended = alive & info["_episode"]
        for key, value in info["episode"].items():
            stats[key] = torch.where(ended, value.double(), stats.get(key, torch.zeros_like(value.double())))
        alive &= ~(terminated | truncated)
    return {"equity": equity.cpu().numpy(), "exposure": exposure.cpu().numpy(),
            "notional": notional.cpu().numpy(), **{k: v.cpu().numpy() for k, v in stats.items()}}


def account_metrics(sim: dict[str, np.ndarray], n: int, steps: int, capital: float, per_year: float
                    ) -> tuple[dict[str, float | None], np.ndarray]:
    """(metrics, (steps + 1,) equity curve) of account `n` of a `simulate` result. Win rate and
    profit factor are None (shown as "-") when the account closed no trade."""
    curve = np.concatenate([[capital], sim["equity"][:steps, n]])
    metrics: dict[str, float | None] = dict(equity_metrics(curve, per_year))
    closed = sim["closed_trades"][n] > 0
    metrics.update(win_rate=float(sim["win_rate"][n]) if closed else None,
                   profit_factor=float(sim["profit_factor"][n]) if closed else None,
                   trades=float(sim["trades"][n]), closed_trades=float(sim["closed_trades"][n]),
                   turnover=float(sim["notional"][:steps, n].sum() / curve.mean()),
                   exposure=float(sim["exposure"][:steps, n].mean()))
    return metrics, curve


class Held(NamedTuple):
    """A passive position over a split, per step like `simulate`'s arrays."""

    equity: np.ndarray
    """(L + 1,) equity at each close, the initial capital first"""
    exposure: np.ndarray
    """(L,) position value / equity at each close"""
    notional: np.ndarray
    """(L,) currency traded at each open"""


def hold(env: VecTradingEnv, symbol: str, fraction: float, rebalance: bool) -> Held:
    """`fraction` of equity in the symbol from the split's first fill, with the env's costs.

    At each decision the env would act on (the close of bar t) the order that brings the position
    to `fraction` of that close's equity (its commission included) fills at bar t + 1's open with
    buy_fill / sell_fill, slippage and commission as the agent pays them; the account is marked at
    bar t + 1's close. `rebalance` False orders only at the first decision (buy once and hold: its
    exposure drifts with the price); True orders at every one, so the exposure stays at `fraction`
    bar after bar: the passive strategy with the agent's exposure."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"hold: fraction must be in [0, 1], got {fraction}")
    bars, (first, last) = env.markets[symbol], env.decision_range[symbol]
    cfg = env.config
    commission_rate, slippage_rate = cfg.commission_bps * 1e-4, cfg.slippage_bps * 1e-4
    steps = last - first
    equity = np.empty(steps + 1)
    exposure, notional = np.zeros(steps), np.zeros(steps)
    equity[0] = cash = cfg.initial_capital
    shares = 0.0
    for t in range(steps):
        bar = first + 1 + t
        open_price = torch.tensor(bars.open[bar], dtype=torch.float64)
        order = fraction * equity[t] / (1.0 + commission_rate) - shares * float(open_price)
        if t == 0 or rebalance:
            if order > 0.0:
                bought, commission, _ = buy_fill(torch.tensor(order, dtype=torch.float64), open_price,
                                                 commission_rate, slippage_rate)
                shares += float(bought)
                cash -= order + float(commission)
                notional[t] = order
            elif order < 0.0:
                sold = min(shares, -order / float(open_price))
                proceeds, commission, _ = sell_fill(torch.tensor(sold, dtype=torch.float64), open_price,
                                                    commission_rate, slippage_rate)
                shares -= sold
                cash += float(proceeds) - float(commission)
                notional[t] = float(proceeds)
        value = shares * float(bars.close[bar])
        equity[t + 1] = cash + value
        exposure[t] = value / equity[t + 1] if equity[t + 1] > 0 else 0.0
    return Held(equity, exposure, notional)


def mean_defined(values: list[float | None]) -> float | None:
    """Mean of the defined values; None when none is defined (e.g. no account closed a trade)."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
