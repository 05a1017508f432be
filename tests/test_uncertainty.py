"""Uncertainty statistics against their references: the analytic normal interval of a mean, Lo's
(2002) Sharpe standard error and its Monte Carlo spread, hand-computed trimmed means
(scipy.stats.trim_mean semantics), brute-force pairwise comparisons (rliable's probability of
improvement), and the structure of stationary and stratified resamples."""
import math
from statistics import NormalDist

import numpy as np
import pytest

from trainers.backtest.metrics import sharpe
from trainers.backtest.uncertainty import (
    default_mean_block,
    iqm,
    probability_of_improvement,
    probability_of_improvement_interval,
    sharpe_interval,
    sharpe_standard_error,
    stationary_bootstrap_indices,
    stratified_bootstrap_iqm,
    stratified_resample,
)

Z95 = NormalDist().inv_cdf(0.975)


def bootstrap_mean_interval(sample: np.ndarray, mean_block: float, num_resamples: int, seed: int,
                            confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of (T,) `sample` from the module's stationary resamples."""
    idx = stationary_bootstrap_indices(len(sample), mean_block, num_resamples, np.random.default_rng(seed))
    means = sample[idx].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def series_with_sharpe(ratio: float, num_periods: int, seed: int, scale: float = 0.01) -> np.ndarray:
    """(T,) returns whose sample mean / std (ddof 1) is exactly `ratio`."""
    z = np.random.default_rng(seed).normal(size=num_periods)
    z = (z - z.mean()) / z.std(ddof=1)
    return scale * (z + ratio)


def block_lengths(idx: np.ndarray) -> np.ndarray:
    """Lengths of the complete blocks in (R, T) indices: a block continues while the next index is
    the previous + 1 (mod T); each row's last block is cut by the end of the series, so left out."""
    num_periods = idx.shape[1]
    lengths = []
    for row in idx:
        continues = row[1:] == (row[:-1] + 1) % num_periods
        starts = np.flatnonzero(np.concatenate([[True], ~continues]))
        lengths.append(np.diff(starts))
    return np.concatenate(lengths)


# ---- stationary bootstrap ----
@pytest.mark.parametrize("mean_block", [1.0, 8.0, 25.0])
def test_stationary_blocks_have_the_stated_mean_length(mean_block):
    idx = stationary_bootstrap_indices(2000, mean_block, 200, np.random.default_rng(1))
    assert idx.shape == (200, 2000)
    assert idx.dtype.kind == "i"
    assert idx.min() >= 0 and idx.max() < 2000
    assert np.mean(block_lengths(idx)) == pytest.approx(mean_block, rel=0.10)


def test_stationary_blocks_wrap_around_the_end_of_the_series():
    # blocks far longer than the series: each row is one block from a uniform start, which must
    # wrap from T - 1 to 0 to fill T periods (all rows but those that start at 0)
    idx = stationary_bootstrap_indices(50, 1e9, 400, np.random.default_rng(2))
    rotations = (idx[:, :1] + np.arange(50)) % 50
    assert np.mean(np.all(idx == rotations, axis=1)) > 0.99
    wrapped = np.any((idx[:, :-1] == 49) & (idx[:, 1:] == 0), axis=1)
    assert 0.9 < wrapped.mean() < 1.0  # about 49 / 50
    assert np.array_equal(wrapped, idx[:, 0] != 0)


def test_stationary_indices_are_reproducible_and_refuse_bad_arguments():
    a = stationary_bootstrap_indices(30, 3, 5, 7)
    assert np.array_equal(a, stationary_bootstrap_indices(30, 3, 5, np.random.default_rng(7)))
    with pytest.raises(ValueError, match="mean_block"):
        stationary_bootstrap_indices(30, 0.5, 5, 0)
    with pytest.raises(ValueError, match="num_periods"):
        stationary_bootstrap_indices(0, 2, 5, 0)
    with pytest.raises(ValueError, match="num_resamples"):
        stationary_bootstrap_indices(30, 2, 0, 0)


@pytest.mark.parametrize("mean_block", [1.0, 5.0])
def test_bootstrap_interval_of_a_gaussian_mean_matches_the_normal_interval(mean_block):
    mu, sigma, n = 0.3, 2.0, 1000
    sample = np.random.default_rng(3).normal(mu, sigma, size=n)
    half = Z95 * sample.std(ddof=1) / math.sqrt(n)
    low, high = bootstrap_mean_interval(sample, mean_block, 4000, seed=4)
    assert low < mu < high
    assert low < sample.mean() < high
    assert (high - low) / (2 * half) == pytest.approx(1.0, abs=0.15)
    assert (low + high) / 2 == pytest.approx(sample.mean(), abs=0.15 * half)


# ---- Sharpe ----
def test_lo_standard_error_by_hand():
    returns = series_with_sharpe(0.5, 100, seed=0)
    assert float(sharpe(returns)) == pytest.approx(0.5)
    assert sharpe_standard_error(returns) == pytest.approx(math.sqrt((1 + 0.5 ** 2 / 2) / 100))
    assert sharpe_standard_error(returns, 252.0) == pytest.approx(math.sqrt((1 + 0.125) / 100) * math.sqrt(252))


def test_lo_standard_error_matches_the_monte_carlo_spread_of_iid_sharpe_ratios():
    ratio, num_periods = 0.2, 200
    draws = np.random.default_rng(5).normal(0.01 * ratio, 0.01, size=(num_periods, 4000))
    spread = float(np.std(sharpe(draws), ddof=1))
    assert spread == pytest.approx(math.sqrt((1 + ratio ** 2 / 2) / num_periods), rel=0.05)
    assert sharpe_standard_error(draws[:, 0]) == pytest.approx(spread, rel=0.05)


def test_sharpe_interval_on_iid_returns_matches_the_lo_interval():
    returns = np.random.default_rng(6).normal(0.001, 0.01, size=1000)
    interval = sharpe_interval(returns)
    assert interval.point == float(sharpe(returns))
    assert interval.low < interval.point < interval.high
    assert (interval.high - interval.low) / (2 * Z95 * sharpe_standard_error(returns)) == pytest.approx(1.0, abs=0.25)
    assert interval.confidence == 0.95 and interval.num_resamples == 2000
    assert f"mean block {default_mean_block(1000)}" in interval.method and default_mean_block(1000) == 10
    # annualising scales the point and (same resamples) both bounds by sqrt(periods per year)
    yearly = sharpe_interval(returns, periods_per_year=252.0)
    assert yearly.point == pytest.approx(float(sharpe(returns, 252.0)))
    assert yearly.low == pytest.approx(interval.low * math.sqrt(252))
    assert yearly.high == pytest.approx(interval.high * math.sqrt(252))


def test_sharpe_interval_covers_the_true_sharpe_about_as_often_as_stated():
    rng = np.random.default_rng(7)
    true_sharpe = 0.1
    covered = [(i.low <= true_sharpe <= i.high)
               for i in (sharpe_interval(rng.normal(0.001, 0.01, size=250), num_resamples=400, seed=s)
                         for s in range(200))]
    assert 0.87 <= np.mean(covered) <= 0.99


def test_block_bootstrap_widens_the_sharpe_interval_of_autocorrelated_returns():
    # AR(1) returns with phi = 0.5: the variance of the mean (which drives the Sharpe's) is
    # (1 + phi) / (1 - phi) = 3 times the IID one, so blocks should widen the interval ~sqrt(3)
    rng = np.random.default_rng(8)
    phi, noise = 0.5, rng.normal(0.0, 0.01, size=4000)
    returns = np.empty_like(noise)
    returns[0] = noise[0]
    for t in range(1, len(noise)):
        returns[t] = phi * returns[t - 1] + noise[t]
    returns += 0.0005
    iid = sharpe_interval(returns, mean_block=1)
    blocks = sharpe_interval(returns, mean_block=30)
    ratio = (blocks.high - blocks.low) / (iid.high - iid.low)
    assert ratio == pytest.approx(math.sqrt(3), rel=0.2)


def test_sharpe_statistics_refuse_degenerate_returns():
    for bad, match in [(np.array([]), "at least 2"), (np.array([0.01]), "at least 2"),
                       (np.array([0.01, np.nan, 0.02]), "NaN"), (np.zeros((5, 2)), r"\(T,\)")]:
        with pytest.raises(ValueError, match=match):
            sharpe_interval(bad)
        with pytest.raises(ValueError, match=match):
            sharpe_standard_error(bad)
    with pytest.raises(ValueError, match="confidence"):
        sharpe_interval(np.ones(10), confidence=1.0)
    with pytest.raises(ValueError, match="num_resamples"):
        sharpe_interval(np.ones(10), num_resamples=0)


# ---- IQM ----
def test_iqm_by_hand():
    assert iqm(np.arange(8)) == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert iqm(np.arange(8).reshape(2, 4)) == pytest.approx(3.5)  # over all scores, any shape
    # n = 10: trim_mean cuts int(2.5) = 2 from each end, keeping 6
    assert iqm(np.random.default_rng(0).permutation(10)) == pytest.approx((2 + 3 + 4 + 5 + 6 + 7) / 6)
    # n = 7: cuts int(1.75) = 1 each end; sorted -3 0 2 5 7 10 100 keeps 0 2 5 7 10
    assert iqm([10.0, -3.0, 7.0, 0.0, 100.0, 2.0, 5.0]) == pytest.approx(24 / 5)
    # n = 3: cuts int(0.75) = 0, the plain mean
    assert iqm([1.0, 2.0, 9.0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="empty"):
        iqm([])
    with pytest.raises(ValueError, match="NaN"):
        iqm([1.0, np.nan])


# ---- stratified bootstrap ----
def test_stratified_resamples_keep_each_tasks_runs_and_count():
    num_runs, num_tasks = 5, 4
    scores = 100.0 * np.arange(num_tasks)[None, :] + np.arange(num_runs)[:, None]  # task k: 100k + run
    resamples = stratified_resample(scores, 2000, np.random.default_rng(0))
    assert resamples.shape == (2000, num_runs, num_tasks)
    runs = resamples - 100.0 * np.arange(num_tasks)  # back to run numbers: must be 0..R-1 in every column
    assert np.all(np.isin(runs, np.arange(num_runs)))
    # runs are drawn with replacement, uniformly
    assert np.mean([len(np.unique(resamples[b, :, k])) < num_runs for b in range(50) for k in range(num_tasks)]) > 0.5
    shares = np.array([np.mean(runs == r) for r in range(num_runs)])
    np.testing.assert_allclose(shares, 1 / num_runs, atol=0.01)


def test_stratified_bootstrap_iqm_interval():
    scores = np.random.default_rng(1).normal(size=(10, 6))
    interval = stratified_bootstrap_iqm(scores)
    assert interval.point == iqm(scores)
    assert interval.low < interval.point < interval.high
    assert interval.num_resamples == 2000 and interval.confidence == 0.95
    # all-equal scores: nothing to resample
    flat = stratified_bootstrap_iqm(np.full((5, 3), 3.0), num_resamples=200)
    assert (flat.point, flat.low, flat.high) == (3.0, 3.0, 3.0)
    # tasks differ but each task's runs agree: resampling runs within tasks changes nothing (an
    # unstratified bootstrap over all scores would not be degenerate here)
    per_task = np.tile(np.array([[1.0, 4.0, 9.0, 16.0]]), (6, 1))
    within = stratified_bootstrap_iqm(per_task, num_resamples=200)
    assert within.low == within.high == within.point == iqm([1.0, 4.0, 9.0, 16.0])


def test_stratified_bootstrap_refuses_bad_scores():
    with pytest.raises(ValueError, match=r"\(R runs, K tasks\)"):
        stratified_bootstrap_iqm(np.ones(5))
    with pytest.raises(ValueError, match="empty"):
        stratified_bootstrap_iqm(np.ones((0, 3)))
    with pytest.raises(ValueError, match="NaN"):
        stratified_bootstrap_iqm(np.array([[1.0, np.inf]]))


# ---- probability of improvement ----
def brute_force_improvement(x: np.ndarray, y: np.ndarray) -> float:
    per_task = []
    for k in range(x.shape[1]):
        wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x[:, k] for b in y[:, k])
        per_task.append(wins / (x.shape[0] * y.shape[0]))
    return sum(per_task) / len(per_task)


def test_probability_of_improvement_against_references():
    rng = np.random.default_rng(2)
    y = rng.normal(size=(6, 4))
    assert probability_of_improvement(y + 10.0, y) == 1.0
    assert probability_of_improvement(y, y + 10.0) == 0.0
    assert probability_of_improvement(y, y) == 0.5
    # integer scores make ties; different run counts
    x, z = rng.integers(0, 5, size=(7, 3)), rng.integers(0, 5, size=(4, 3))
    assert probability_of_improvement(x, z) == pytest.approx(brute_force_improvement(x, z))
    a, b = rng.normal(size=(9, 5)), rng.normal(0.3, size=(5, 5))
    assert probability_of_improvement(a, b) == pytest.approx(brute_force_improvement(a, b))
    assert probability_of_improvement(a, b) + probability_of_improvement(b, a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(a, b[:, :3])


def test_probability_of_improvement_interval():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.5, size=(10, 5)), rng.normal(size=(8, 5))
    interval = probability_of_improvement_interval(x, y, num_resamples=1000)
    assert interval.point == pytest.approx(brute_force_improvement(x, y))
    assert 0.0 <= interval.low < interval.point < interval.high <= 1.0
    dominated = probability_of_improvement_interval(x + 100.0, x, num_resamples=200)
    assert (dominated.point, dominated.low, dominated.high) == (1.0, 1.0, 1.0)
    same = probability_of_improvement_interval(rng.normal(size=(10, 5)), rng.normal(size=(10, 5)), num_resamples=1000)
    assert same.low < 0.5 < same.high
