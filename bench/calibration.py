"""How often do the project's statistics call luck skill, and how often do they find a real edge?
Monte Carlo on generated return series whose truth is known; JSON on stdout.

    python bench/calibration.py [--draws 400] [--seed 0]

- selection: the deflated Sharpe of the best of 8 validations of 250 bars (trainers.backtest.
  overfitting.deflated_sharpe, as trainers.evaluate computes it over every recorded validation),
  skill-less and independent (tuning trials) or correlated 0.6 (checkpoints of one run): the share
  above 0.95; and with an edge of 0.2 per bar shared by every checkpoint: the share found.
- pbo: the mean PBO of skill-less candidates for N = 3, 4, 5 (one half whatever N).
- walk_forward: the probabilistic Sharpe of a stitched curve of 3 folds x `fold_bars` daily bars
  against 0 (trainers.folds.stitch.significance_of's no-skill test): the share above 0.95 at a true
  Sharpe of 0 and 1 a year, beside normal theory's power Phi(sqrt(T / 252) - 1.645).
- paired: the paired stationary-bootstrap test of the Sharpe difference over 1,500 bars
  (trainers.backtest.uncertainty.sharpe_difference_test, 500 resamples): the share of p <= 0.05
  at equal Sharpe (correlation 0.5) and at a difference of 1.0 a year.

tests/test_calibration.py asserts these rates within binomial bands; this prints them.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from statistics import NormalDist

import numpy as np

from common import emit
from trainers.backtest.metrics import sharpe
from trainers.backtest.overfitting import deflated_sharpe, pbo, probabilistic_sharpe
from trainers.backtest.uncertainty import sharpe_difference_test

DAYS, VOL = 252.0, 0.01


def correlated(rng: np.random.Generator, bars: int, num: int, correlation: float) -> np.ndarray:
    """(T, N) returns with volatility VOL and pairwise `correlation`."""
    common, own = rng.normal(size=(bars, 1)), rng.normal(size=(bars, num))
    return VOL * (math.sqrt(correlation) * common + math.sqrt(1.0 - correlation) * own)


def selection(rng: np.random.Generator, draws: int) -> dict[str, float]:
    def rate(correlation: float, edge: float) -> float:
        hits = 0
        for _ in range(draws):
            returns = correlated(rng, 250, 8, correlation) + VOL * edge
            hits += deflated_sharpe(returns, int(np.argmax(sharpe(returns)))).dsr > 0.95
        return hits / draws
    return {"null_independent": rate(0.0, 0.0), "null_correlated_0.6": rate(0.6, 0.0),
            "found_edge_0.2_per_bar_shared": rate(0.6, 0.2)}


def pbo_means(rng: np.random.Generator, draws: int) -> dict[str, float]:
    return {f"N={n}": float(np.mean([pbo(rng.normal(0.0, VOL, size=(250, n))).pbo for _ in range(draws // 2)]))
            for n in (3, 4, 5)}


def walk_forward(rng: np.random.Generator, draws: int) -> dict[str, dict[str, float]]:
    out = {}
    for fold_bars in (166, 500):
        bars = 3 * fold_bars
        row = {"theory_power_at_1": NormalDist().cdf(math.sqrt(bars / DAYS) - NormalDist().inv_cdf(0.95))}
        for sharpe_year in (0.0, 1.0):
            mean = sharpe_year / math.sqrt(DAYS) * VOL
            row[f"above_0.95_at_{sharpe_year:g}"] = float(np.mean(
                [probabilistic_sharpe(rng.normal(mean, VOL, bars)).probability > 0.95 for _ in range(draws)]))
        out[f"3_folds_x_{fold_bars}_bars"] = row
    return out


def paired(rng: np.random.Generator, draws: int) -> dict[str, float]:
    def rate(difference_year: float) -> float:
        hits = 0
        for k in range(draws // 2):
            both = correlated(rng, 1500, 2, 0.5) + VOL * 0.5 / math.sqrt(DAYS)
            both[:, 0] += VOL * difference_year / math.sqrt(DAYS)
            hits += sharpe_difference_test(both[:, 0], both[:, 1], DAYS, num_resamples=500, seed=k).p_value <= 0.05
        return hits / (draws // 2)
    return {"p_le_0.05_at_equal_sharpe": rate(0.0), "p_le_0.05_at_difference_1.0": rate(1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=400, help="Monte Carlo repetitions per rate (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    emit({"bench": "calibration", "draws": args.draws, "selection_dsr_above_0.95": selection(rng, args.draws),
          "pbo_mean": pbo_means(rng, args.draws), "walk_forward_probabilistic_sharpe": walk_forward(rng, args.draws),
          "paired_test": paired(rng, args.draws)}, args.json)


if __name__ == "__main__":
    main()
