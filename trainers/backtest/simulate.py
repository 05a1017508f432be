"""The backtest engine: every symbol's accounts trade a whole split side by side in one
VecTradingEnv. Within each symbol, account 0 follows the greedy policy, account 1 a uniformly random
valid policy, accounts 2.. the sampled policy; buy-and-hold curves are priced with the env's own
cost model (envs.accounts.buy_fill)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from envs import VecTradingEnv
from envs.accounts import buy_fill
from models import MultiSymbolPolicy
from trainers.backtest.metrics import equity_metrics

GREEDY, RANDOM = 0, 1  # account roles within each symbol; 2.. are sampled-policy accounts


def simulate(env: VecTradingEnv, policy: MultiSymbolPolicy, num_sampled: int,
             generator: torch.Generator) -> dict[str, np.ndarray]:
    """Run one full-split episode in every account; per-step (L, N) host arrays of equity,
    exposure and traded notional, plus (N,) episode statistics."""
    e = env.layout.per_symbol
    role = env.layout.role(env.device)  # (N,)

    def choose(obs: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        greedy = policy.act(obs, mask, deterministic=True)[0]
        sampled = policy.act(obs, mask)[0] if num_sampled else greedy
        # validation runs greedy accounts only (E = 1): no random draws to make then
        random = (torch.multinomial(mask.float(), 1, generator=generator).squeeze(1) if e > RANDOM
                  else greedy)
        return torch.where(role == GREEDY, greedy, torch.where(role == RANDOM, random, sampled))

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


def buy_and_hold(env: VecTradingEnv, symbol: str, fraction: float) -> np.ndarray:
    """(L + 1,) equity of putting `fraction` of capital (commission included) into the symbol at
    the first fill and holding it, priced with the env's buy_fill cost model."""
    bars, (first, last) = env.markets[symbol], env.decision_range[symbol]
    cfg = env.config
    capital, commission_rate = cfg.initial_capital, cfg.commission_bps * 1e-4
    notional = torch.tensor(fraction * capital / (1.0 + commission_rate), dtype=torch.float64)
    shares, commission, _ = buy_fill(notional, torch.tensor(bars.open[first + 1], dtype=torch.float64),
                                     commission_rate, cfg.slippage_bps * 1e-4)
    cash = capital - float(notional) - float(commission)
    return np.concatenate([[capital], cash + float(shares) * bars.close[first + 1:last + 1]])


def mean_defined(values: list[float | None]) -> float | None:
    """Mean of the defined values; None when none is defined (e.g. no account closed a trade)."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None
