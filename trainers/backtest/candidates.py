"""Selection bias of picking one candidate (a run's checkpoint, a tuning trial) by its validation
returns: trainers.backtest.overfitting's PBO and deflated Sharpe over the candidates' per-bar val returns,
or the reason they cannot be measured.

Every candidate's series comes from the same backtest as validation during training
(trainers.backtest.validation.Validator: greedy policy, whole val split, mean over symbols of the per-bar
equity returns), so the statistics describe exactly the numbers the choice was made on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from configs.train import TrainConfig
from envs import VecTradingEnv
from models import MultiSymbolPolicy
from trainers.run import checkpoints
from trainers.backtest.overfitting import selection_report
from trainers.backtest.validation import Validator

NUM_BLOCKS = 16
"""CSCV blocks of the val period (C(16, 8) = 12,870 splits); needs at least 2 bars per block"""


def selection_stats(returns: dict[str, np.ndarray], chosen: str,
                    num_trials: int | None = None) -> dict[str, Any]:
    """selection_report of choosing `chosen` among name -> (T,) per-bar returns (`num_trials`
    defaults to the number of candidates), or {"skipped": why, "num_candidates": n} when there are
    fewer than 2 candidates, too few bars for NUM_BLOCKS blocks, or degenerate returns."""
    count = len(returns)
    if count < 2:
        return {"skipped": f"{count} candidate{'s' * (count != 1)}; selection bias needs at least 2",
                "num_candidates": count}
    bars = min(len(series) for series in returns.values())
    if bars < 2 * NUM_BLOCKS:
        return {"skipped": f"{bars} val bars are too few for {NUM_BLOCKS} CSCV blocks of at least 2 bars "
                           f"(need {2 * NUM_BLOCKS})", "num_candidates": count}
    try:
        return selection_report(returns, NUM_BLOCKS, chosen=chosen, num_trials=num_trials)
    except ValueError as err:  # e.g. NaN returns, or moments that give no Sharpe variance
        return {"skipped": str(err), "num_candidates": count}


def describe(stats: dict[str, Any], what: str) -> str:
    """One console line: PBO and the deflated Sharpe of the chosen candidate, or why skipped."""
    if "skipped" in stats:
        return f"selection bias over {what}: skipped ({stats['skipped']})"
    return (f"selection bias over {stats['num_candidates']} {what} (val split, per-bar returns, "
            f"{stats['num_blocks']} blocks): PBO {stats['pbo']:.2f}; deflated Sharpe of {stats['chosen']} "
            f"{stats['dsr']:.2f} (its per-bar Sharpe {stats['chosen_sharpe']:+.3f} against "
            f"{stats['expected_max_sharpe']:+.3f} expected from the best of {stats['num_trials']} "
            "skill-less trials)")


def checkpoint_selection(run_dir: Path, config: TrainConfig, env: VecTradingEnv, policy: MultiSymbolPolicy,
                         chosen: checkpoints.Checkpoint, device: torch.device, seed: int
                         ) -> dict[str, Any]:
    """Selection statistics of `chosen` among the run's kept checkpoints (best-k, latest and
    `chosen`), each backtested on the val split. `env` is any env of the run (for its markets),
    `policy` a policy over all its symbols, whose weights this overwrites."""
    candidates = {c.weights.resolve(): c for c in
                  [*checkpoints.best(run_dir), checkpoints.latest(run_dir), chosen]}
    untradable = env.untradable("val")
    symbols = [s for s in config.run.symbols if s not in untradable]
    if not symbols:
        return {"skipped": "no symbol can trade the val split", "num_candidates": len(candidates)}
    validator = Validator(symbols, env.markets, config.env, config.model, device, seed)
    returns = {}
    for checkpoint in candidates.values():
        checkpoints.load_weights(checkpoint, policy)
        returns[checkpoint.weights.stem] = validator.run(policy).returns
    return selection_stats(returns, chosen.weights.stem)
