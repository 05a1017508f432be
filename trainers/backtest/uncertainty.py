"""Uncertainty of backtest figures over time, seeds and folds: how far a Sharpe ratio or an
aggregate score could move by chance. Host numpy, float64; no scipy.

- `sharpe_standard_error`: the IID standard error of the Sharpe ratio (Lo 2002, "The statistics of
  Sharpe ratios", Financial Analysts Journal 58(4)).
- `stationary_bootstrap_indices` / `sharpe_interval`: a percentile interval of the Sharpe ratio by
  the stationary bootstrap (Politis and Romano 1994, "The stationary bootstrap", JASA 89(428)),
  which resamples blocks of random (geometric) length so that serial dependence within a block
  survives the resampling.
- `sharpe_difference_test`: the Sharpe ratio of one return series minus another's on the same
  periods, with a paired stationary-bootstrap interval and a one-sided p-value (the same resampled
  periods for both, so what they share cancels; the bootstrap analogue of Ledoit and Wolf 2008,
  "Robust performance hypothesis testing with the Sharpe ratio", J. Empirical Finance 15(5)).
- `iqm`, `stratified_bootstrap_iqm`, `probability_of_improvement` (and its interval): the
  aggregates of scores over runs (seeds) x tasks (symbols, folds) recommended by Agarwal,
  Schwarzer, Castro, Courville and Bellemare 2021, "Deep reinforcement learning at the edge of
  the statistical precipice" (NeurIPS), with the semantics of their `rliable` library: IQM as
  scipy.stats.trim_mean(x, 0.25) over all scores, intervals by the stratified bootstrap (runs
  resampled within each task), percentile method.

Sharpe ratios are those of trainers.backtest.metrics (`sharpe`, `sharpe_from_sums`): per period
with periods_per_year = 1, annualised with the bars' frequency.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from trainers.backtest.metrics import sharpe, sharpe_from_sums

_CHUNK_ELEMENTS = 1 << 22
"""resampled values held at once: bootstraps run in chunks of resamples so a long series (hourly
bars over years) x thousands of resamples does not need gigabytes"""


class Interval(NamedTuple):
    point: float
    """the statistic on the data as observed"""
    low: float
    high: float
    """percentile bootstrap bounds: the (1 - c) / 2 and (1 + c) / 2 quantiles of the resampled statistic"""
    confidence: float
    """c, e.g. 0.95"""
    method: str
    """how the data were resampled, e.g. 'stationary bootstrap (mean block 10), percentile'"""
    num_resamples: int


def sharpe_standard_error(returns: np.ndarray, periods_per_year: float = 1.0) -> float:
    """Standard error of the Sharpe ratio of (T,) per-period returns under IID returns (Lo 2002):
    SE = sqrt((1 + SR^2 / 2) / T) x sqrt(periods_per_year), SR the per-period Sharpe
    (metrics.sharpe). Serially correlated returns (most strategies with holding periods) make the
    true error larger; `sharpe_interval` does not assume independence."""
    returns = _check_series(returns)
    ratio = float(sharpe(returns))
    return math.sqrt((1.0 + 0.5 * ratio * ratio) / len(returns)) * math.sqrt(periods_per_year)


def default_mean_block(num_periods: int) -> int:
    """max(1, round(T^(1/3))): the T^(1/3) growth of the block length that is rate-optimal for
    variance and distribution estimates (Hall, Horowitz and Jing 1995, Biometrika 82(3); Politis
    and White 2004), with constant 1 since the data-driven constant needs spectral estimates."""
    return max(1, round(num_periods ** (1.0 / 3.0)))


def stationary_bootstrap_indices(num_periods: int, mean_block: float, num_resamples: int,
                                 rng: np.random.Generator | int | None) -> np.ndarray:
    """(R, T) int64 indices into a (T,) series, one stationary-bootstrap resample per row: each
    resample is a chain of blocks, each starting at a uniform random period and running forward,
    wrapping from T - 1 to 0, for a geometric length with mean `mean_block` (a new block starts at
    each step with probability 1 / mean_block). mean_block = 1 is the IID bootstrap."""
    if num_periods < 1:
        raise ValueError(f"num_periods must be >= 1, got {num_periods}")
    if not mean_block >= 1:
        raise ValueError(f"mean_block must be >= 1 period, got {mean_block}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    rng = np.random.default_rng(rng)
    starts = rng.integers(0, num_periods, size=(num_resamples, num_periods))
    new_block = rng.random((num_resamples, num_periods)) < 1.0 / mean_block
    new_block[:, 0] = True
    steps = np.arange(num_periods)
    # the step at which each step's block began: a running max of the new-block steps
    began = np.maximum.accumulate(np.where(new_block, steps, 0), axis=1)
    first = np.take_along_axis(starts, began, axis=1)
    return (first + (steps - began)) % num_periods


def sharpe_interval(returns: np.ndarray, periods_per_year: float = 1.0, confidence: float = 0.95,
                    mean_block: float | None = None, num_resamples: int = 2000, seed: int = 0) -> Interval:
    """The Sharpe ratio (metrics.sharpe) of (T,) per-period returns with a percentile interval by
    the stationary bootstrap; `mean_block` defaults to `default_mean_block(T)` = max(1, round(T^(1/3)))
    periods. Resamples whose returns are all equal have Sharpe 0 (the metrics convention)."""
    returns = _check_series(returns)
    _check_confidence(confidence)
    num_periods = len(returns)
    block = default_mean_block(num_periods) if mean_block is None else mean_block
    rng = np.random.default_rng(seed)
    stats = []
    for size in _chunks(num_resamples, num_periods):
        resampled = returns[stationary_bootstrap_indices(num_periods, block, size, rng)]  # (r, T)
        stats.append(sharpe_from_sums(resampled.sum(1), (resampled * resampled).sum(1), num_periods,
                                      periods_per_year))
    low, high = _percentiles(np.concatenate(stats), confidence)
    return Interval(point=float(sharpe(returns, periods_per_year)), low=low, high=high, confidence=confidence,
                    method=f"stationary bootstrap (mean block {block:g}), percentile",
                    num_resamples=num_resamples)


class SharpeDifference(NamedTuple):
    difference: float
    """Sharpe of x minus Sharpe of y, on the data as observed"""
    low: float
    high: float
    """percentile bootstrap bounds of the difference"""
    p_value: float
    """one-sided p-value of "x's Sharpe is no higher than y's": the share of centred resampled
    differences at or beyond the observed one, (count + 1) / (resamples + 1)"""
    confidence: float
    method: str
    num_resamples: int


def sharpe_difference_test(x: np.ndarray, y: np.ndarray, periods_per_year: float = 1.0, confidence: float = 0.95,
                           mean_block: float | None = None, num_resamples: int = 2000, seed: int = 0
                           ) -> SharpeDifference:
    """Is (T,) return series x's Sharpe higher than (T,) y's over the same periods? Both are
    resampled with the same stationary-bootstrap indices (mean block `default_mean_block(T)` by
    default), which keeps their correlation and each one's serial dependence; the p-value is that
    of the centred bootstrap (the resampled difference minus the observed one stands in for the
    estimate's error under the null of no difference)."""
    x, y = _check_series(x), _check_series(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must cover the same periods, got {len(x)} and {len(y)}")
    _check_confidence(confidence)
    num_periods = len(x)
    block = default_mean_block(num_periods) if mean_block is None else mean_block
    rng = np.random.default_rng(seed)
    stats = []
    for size in _chunks(num_resamples, 2 * num_periods):
        index = stationary_bootstrap_indices(num_periods, block, size, rng)
        a, b = x[index], y[index]                                        # (r, T) each
        stats.append(sharpe_from_sums(a.sum(1), (a * a).sum(1), num_periods, periods_per_year)
                     - sharpe_from_sums(b.sum(1), (b * b).sum(1), num_periods, periods_per_year))
    resampled = np.concatenate(stats)
    observed = float(sharpe(x, periods_per_year) - sharpe(y, periods_per_year))
    low, high = _percentiles(resampled, confidence)
    p_value = (np.sum(resampled - observed >= observed) + 1.0) / (num_resamples + 1.0)
    return SharpeDifference(difference=observed, low=low, high=high, p_value=float(p_value), confidence=confidence,
                            method=f"paired stationary bootstrap (mean block {block:g}), centred, percentile",
                            num_resamples=num_resamples)


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all scores of any shape (e.g. (R runs, K tasks)): the mean of the
    sorted flattened scores after cutting int(0.25 n) from each end, as scipy.stats.trim_mean(x,
    0.25, axis=None) and rliable's aggregate_iqm (n = 10 cuts 2 each side, keeping 6)."""
    flat = np.asarray(scores, dtype=np.float64).reshape(-1)
    _check_finite(flat, "scores")
    return float(_iqm_rows(flat[None])[0])


def stratified_resample(scores: np.ndarray, num_resamples: int,
                        rng: np.random.Generator | int | None) -> np.ndarray:
    """(B, R, K) resamples of (R runs, K tasks) scores: in each resample every task (column) draws
    R of its own runs with replacement, independently of the other tasks (rliable's
    StratifiedBootstrap), so each task keeps its run count and tasks never mix."""
    scores = _check_scores(scores, "scores")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    num_runs, num_tasks = scores.shape
    runs = np.random.default_rng(rng).integers(0, num_runs, size=(num_resamples, num_runs, num_tasks))
    return scores[runs, np.arange(num_tasks)]


def stratified_bootstrap_iqm(scores: np.ndarray, confidence: float = 0.95, num_resamples: int = 2000,
                             seed: int = 0) -> Interval:
    """IQM of (R runs, K tasks) scores with a percentile interval by the stratified bootstrap
    (`stratified_resample`; the IQM of each resample is over all its R x K scores)."""
    scores = _check_scores(scores, "scores")
    _check_confidence(confidence)
    rng = np.random.default_rng(seed)
    stats = [_iqm_rows(stratified_resample(scores, size, rng).reshape(size, -1))
             for size in _chunks(num_resamples, scores.size)]
    low, high = _percentiles(np.concatenate(stats), confidence)
    return Interval(point=iqm(scores), low=low, high=high, confidence=confidence,
                    method="stratified bootstrap over runs within tasks, percentile", num_resamples=num_resamples)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) of (R, K) scores `x` against (R2, K) scores `y` over the same K tasks (rliable): per
    task, the share of the R x R2 run pairs where x beats y, ties counting 1/2 (the Mann-Whitney U
    of x normalised by R x R2), averaged over tasks. 0.5 means neither is better."""
    x, y = _check_pair(x, y)
    return float(np.mean(_pairwise_wins(x, y).mean(axis=(0, 1))))


def probability_of_improvement_interval(x: np.ndarray, y: np.ndarray, confidence: float = 0.95,
                                        num_resamples: int = 2000, seed: int = 0) -> Interval:
    """`probability_of_improvement` with a percentile interval: x and y are each resampled by the
    stratified bootstrap, independently of each other (rliable's StratifiedIndependentBootstrap)."""
    x, y = _check_pair(x, y)
    _check_confidence(confidence)
    wins = _pairwise_wins(x, y)                                       # (R, R2, K)
    tasks = np.arange(x.shape[1])
    rng = np.random.default_rng(seed)
    stats = []
    # a resample's pairs are pairs of drawn runs: gather their win values instead of recomparing
    for size in _chunks(num_resamples, wins.size):
        runs_x = rng.integers(0, x.shape[0], size=(size, x.shape[0], 1, x.shape[1]))
        runs_y = rng.integers(0, y.shape[0], size=(size, 1, y.shape[0], y.shape[1]))
        stats.append(wins[runs_x, runs_y, tasks].mean(axis=(1, 2, 3)))
    low, high = _percentiles(np.concatenate(stats), confidence)
    return Interval(point=probability_of_improvement(x, y), low=low, high=high, confidence=confidence,
                    method="stratified independent bootstrap of x and y over runs within tasks, percentile",
                    num_resamples=num_resamples)


def _iqm_rows(rows: np.ndarray) -> np.ndarray:
    """(B,) IQM of each row of (B, n)."""
    count = rows.shape[1]
    cut = int(0.25 * count)
    return np.sort(rows, axis=1)[:, cut:count - cut].mean(axis=1)


def _pairwise_wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(R, R2, K): 1 where x[i, k] > y[j, k], 1/2 where equal, else 0."""
    a, b = x[:, None, :], y[None, :, :]
    return (a > b) + 0.5 * (a == b)


def _chunks(num_resamples: int, per_resample: int) -> list[int]:
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    size = max(1, _CHUNK_ELEMENTS // max(1, per_resample))
    return [min(size, num_resamples - done) for done in range(0, num_resamples, size)]


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")


def _check_finite(values: np.ndarray, name: str) -> None:
    if values.size == 0:
        raise ValueError(f"{name} is empty (shape {values.shape})")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or Inf")


def _check_series(returns: np.ndarray) -> np.ndarray:
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 1:
        raise ValueError(f"returns must be one (T,) series of per-period returns, got shape {returns.shape}")
    if len(returns) < 2:
        raise ValueError(f"a Sharpe ratio needs at least 2 periods, got {len(returns)}")
    _check_finite(returns, "returns")
    return returns


def _check_scores(scores: np.ndarray, name: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"{name} must be (R runs, K tasks), got shape {scores.shape}; "
                         "reshape a single task's runs to (R, 1)")
    _check_finite(scores, name)
    return scores


def _check_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _check_scores(x, "x"), _check_scores(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must score the same tasks: x is {x.shape} (runs, tasks), y is {y.shape}")
    return x, y
