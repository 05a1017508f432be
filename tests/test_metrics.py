"""Evaluation metrics against hand computation on small equity series."""
import math

import numpy as np
import pytest

from envs.bars import periods_per_year
from trainers.backtest.metrics import equity_metrics, max_drawdown, sharpe


def test_equity_metrics_match_hand_computation():
    equity = np.array([100.0, 110.0, 99.0, 108.9])
    # returns +10 %, -10 %, +10 %
    mean = 0.1 / 3
    std = math.sqrt(((0.1 - mean) ** 2 * 2 + (-0.1 - mean) ** 2) / 2)
    downside = math.sqrt(0.01 / 3)
    bars_per_year = 3.0  # the three bars span exactly one year
    m = equity_metrics(equity, bars_per_year)
    assert m["total_return"] == pytest.approx(0.089)
    assert m["annualised_return"] == pytest.approx(0.089)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["sharpe_annualised"] == pytest.approx(mean / std * math.sqrt(3))
    assert m["sortino_annualised"] == pytest.approx(mean / downside * math.sqrt(3))
    assert m["calmar"] == pytest.approx(0.089 / 0.1)


def test_annualisation_compounds_over_years():
    equity = np.array([100.0, 121.0])  # +21 % over two years (one bar of two years)
    m = equity_metrics(equity, bars_per_year=0.5)
    assert m["annualised_return"] == pytest.approx(0.1)


def test_flat_equity_has_zero_ratios_and_no_drawdown():
    m = equity_metrics(np.full(10, 5.0), 252.0)
    assert m == {"total_return": 0.0, "annualised_return": 0.0, "sharpe_annualised": 0.0,
                 "sortino_annualised": 0.0, "max_drawdown": 0.0, "calmar": 0.0}


def test_max_drawdown_uses_running_peak():
    assert max_drawdown(np.array([1.0, 2.0, 1.0, 3.0, 2.4])) == pytest.approx(0.5)


def test_sharpe_is_mean_over_sample_std_per_column_and_scales_with_root_frequency():
    returns = np.random.default_rng(0).normal(0.001, 0.01, size=(50, 3))
    by_hand = returns.mean(0) / returns.std(0, ddof=1)
    assert sharpe(returns) == pytest.approx(by_hand, rel=1e-9)
    assert sharpe(returns, 252.0) == pytest.approx(by_hand * math.sqrt(252.0), rel=1e-9)
    assert sharpe(np.zeros(10)) == 0.0


def test_periods_per_year_from_timestamps():
    day = 86_400 * 10**9
    daily = np.arange(0, 366) * day  # 365 bars of one day
    assert periods_per_year(daily) == pytest.approx(365.25)
    with pytest.raises(ValueError, match="increase"):
        periods_per_year(np.array([5, 5]))
