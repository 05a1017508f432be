"""Validation during training: the greedy policy trades the whole validation split of every
symbol, all symbols side by side in one VecTradingEnv built once per run.

It is trainers.evaluate's backtest (`simulate`, `account_metrics`) with one greedy account per
symbol, so training and evaluation cannot disagree on what a Sharpe is. Validation leaves
training exactly as it would have run without it: the trained weights are copied into a policy
of its own (eval mode, no grad), the env and the random-policy draws of `simulate` use their own
generators, and greedy actions draw no random numbers.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from envs import Bars, EnvConfig, VecTradingEnv
from models import MultiSymbolPolicy, PolicyConfig, PolicyEnsemble
from trainers.backtest.simulate import GREEDY, account_metrics, simulate
from envs.bars import periods_per_year
from trainers.checkpoints.best_k import Scored

METRICS = {"return": "total_return", "sharpe": "sharpe_annualised", "max_drawdown": "max_drawdown",
           "trades": "trades", "exposure": "exposure"}
"""validation metric -> its key in account_metrics"""


class ValidationResult(NamedTuple):
    per_symbol: dict[str, dict[str, float]]
    """symbol -> METRICS of its greedy account over the whole val split"""
    mean: dict[str, float]
    """each metric's mean over the validated symbols; mean["sharpe"] is the selection score"""
    returns: np.ndarray
    """(L,) per-bar greedy equity returns, mean over the validated symbols (0 past a shorter split's
    end): the series trainers.backtest.overfitting measures selection bias on"""

    def scalars(self) -> dict[str, float]:
        """TensorBoard values: `val/<SYMBOL>/<metric>` and `val/mean_<metric>`."""
        values = {f"val/{symbol}/{name}": value for symbol, metrics in self.per_symbol.items()
                  for name, value in metrics.items()}
        return values | {f"val/mean_{name}": value for name, value in self.mean.items()}


class Validator:
    """The val split of `symbols` (the tradable ones of a run's `markets`) and a policy to trade it.

    `run(policy)` copies `policy`'s weights (encoder, and the heads of the validated symbols) and
    backtests them; the training policy itself is only read.
    """

    def __init__(self, symbols: list[str], markets: dict[str, Bars], env_config: EnvConfig,
                 model_config: PolicyConfig, device: torch.device, seed: int) -> None:
        if not symbols:
            raise ValueError("Validator: no symbol to validate")
        self.symbols = symbols
        self.env = VecTradingEnv(symbols, 1, env_config.backtest(), device,
                                 markets={s: markets[s] for s in symbols}, split="val", seed=seed,
                                 final_obs="auto")
        self.policy = MultiSymbolPolicy(symbols, model_config, self.env.trading_spec).to(device).eval()
        self.policy.requires_grad_(False)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        ranges = self.env.decision_range
        self.steps = {s: last - first for s, (first, last) in ranges.items()}
        self.per_year = {s: periods_per_year(self.env.markets[s].timestamps[first:last + 1])
                         for s, (first, last) in ranges.items()}

    def run(self, policy: MultiSymbolPolicy) -> ValidationResult:
        """Backtest `policy`'s greedy actions on the val split; metrics per symbol and their mean."""
        self.policy.load_state_dict(policy.state_dict_for(self.symbols))
        return self.backtest(self.policy)

    def backtest(self, actor: MultiSymbolPolicy | PolicyEnsemble) -> ValidationResult:
        """`run` for an actor over exactly these symbols, traded as it is (no copy): the weight
        average, an ensemble or a weights file judged as one more trial (trainers.backtest.overfitting)."""
        with torch.no_grad():
            sim = simulate(self.env, actor, 0, 0, self.generator)  # host copies once, at the end
        capital, layout = self.env.config.initial_capital, self.env.layout
        per_symbol = {}
        for s, symbol in enumerate(self.symbols):
            metrics, _ = account_metrics(sim, layout.account(s, GREEDY), self.steps[symbol], capital,
                                         self.per_year[symbol])
            per_symbol[symbol] = {name: float(metrics[key]) for name, key in METRICS.items()}
        mean = {name: float(np.mean([m[name] for m in per_symbol.values()])) for name in METRICS}
        equity = sim["equity"][:, [layout.account(s, GREEDY) for s in range(len(self.symbols))]]  # (L, S)
        curves = np.concatenate([np.full((1, len(self.symbols)), capital), equity])  # (L + 1, S)
        returns = (curves[1:] / curves[:-1] - 1.0).mean(axis=1)  # (L,)
        return ValidationResult(per_symbol, mean, returns)


def summary(result: ValidationResult, top: Scored | None) -> str:
    """The live table's / log line's cell: `val sharpe +1.23 (best +1.50 @ 49k)`."""
    best = f" (best {top.score:+.2f} @ {short_step(top.step)})" if top is not None else ""
    return f"val sharpe {result.mean['sharpe']:+.2f}{best}"


def describe(step: int, result: ValidationResult, kept: bool) -> str:
    """One console line per validation: the means, and whether its checkpoint joins the best."""
    m = result.mean
    return (f"validation at step {step:,} ({len(result.per_symbol)} symbols, greedy, whole val split): "
            f"mean Sharpe {m['sharpe']:+.3f}, return {m['return']:+.2%}, max drawdown "
            f"{m['max_drawdown']:.2%}, trades {m['trades']:.1f}, exposure {m['exposure']:.0%}"
            + ("; kept as a best checkpoint" if kept else ""))


def short_step(step: int) -> str:
    """49152 -> 49k, 1_250_000 -> 1.25M: account-steps in a table cell."""
    if step >= 1_000_000:
        return f"{step / 1e6:.3g}M"
    return f"{step / 1000:.0f}k" if step >= 1000 else str(step)
