"""The default generated market (envs.synthetic_bars) carries a learnable edge, and its long-only
oracle (trainers.backtest.oracle) is known, beats buy-and-hold, and is printed by trainers.evaluate
beside the agent for generated symbols only."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from helpers import ROOT, TINY

from envs import EnvConfig, VecTradingEnv, load_market, synthetic_bars, validate_bars
from envs.bars import implausible_moves
from envs.synthetic import MOMENTUM, synthetic_market
from trainers.backtest.evaluation import oracle_results
from trainers.backtest.report import ORACLE
from envs.bars import periods_per_year
from trainers.backtest.metrics import equity_metrics
from trainers.backtest.oracle import known_expected_return, oracle_sharpe
from trainers.backtest.simulate import hold
from trainers.evaluate import main as evaluate_main
from trainers.ppo import main as train_main

LONG = 40_000  # bars: the lag-1 autocorrelation's standard error is about 1 / sqrt(LONG) = 0.005


def log_returns(close: np.ndarray) -> np.ndarray:
    return np.diff(np.log(close))


def test_default_market_has_the_planted_momentum() -> None:
    """Over a long sample the lag-1 autocorrelation of close-to-close returns is the planted AR(1)
    coefficient (a regime-only market has ~0), in every regime."""
    bars, process = synthetic_market("EDGE", LONG)
    r = log_returns(bars.close)  # r[i] = log return of bar i + 1
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1] - MOMENTUM) < 0.03
    regime = process.regime[1:-1]  # the regime of the first bar of each pair
    assert len(set(regime.tolist())) == len(process.regimes)
    for k in range(len(process.regimes)):
        pairs = regime == k
        assert pairs.sum() > 2000
        assert abs(np.corrcoef(r[:-1][pairs], r[1:][pairs])[0, 1] - MOMENTUM) < 0.08


def test_expected_return_predicts_the_next_return_without_bias() -> None:
    """The process's E[r[t + 1] | past] is a conditional expectation: regressing the realised next
    return on it gives slope ~1 and intercept ~0, and the next return's sign agrees with it more
    often than chance."""
    bars, process = synthetic_market("EDGE", LONG)
    expected = process.expected_return()[1:-1]  # at bars 1 .. T-2 (bar 0 has no previous close)
    realised = log_returns(bars.close)[1:]  # r[t + 1] for the same t
    slope, intercept = np.polyfit(expected, realised, 1)
    assert abs(slope - 1.0) < 0.15
    assert abs(intercept) < 2e-4
    assert np.mean(np.sign(expected) == np.sign(realised)) > 0.54


def test_other_regime_markets_follow_their_parameters() -> None:
    """synthetic_market's family beyond the default (the learning bench's slow trend): with phi 0
    the only lag-1 autocorrelation is the regimes' persistence, each regime's mean return is its
    drift, regimes last 1 / (1 - stay) bars on average, and the default parameters give the
    default market."""
    drift, vol, stay = 0.003, 0.01, 0.99
    regimes = np.array([[drift, vol], [-drift, vol]])
    bars, process = synthetic_market("TREND", LONG, regimes=regimes, stay=stay, phi=0.0)
    r = log_returns(bars.close)
    # two symmetric regimes: cov(r[t], r[t + 1]) = drift^2 (stay - (1 - stay)), var = vol^2 + drift^2
    persistence = drift ** 2 * (2 * stay - 1) / (vol ** 2 + drift ** 2)
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1] - persistence) < 0.03
    for k, (drift, vol) in enumerate(regimes):
        in_k = process.regime[1:] == k
        assert abs(r[in_k].mean() - drift) < 4 * vol / np.sqrt(in_k.sum())
        assert abs(r[in_k].std() / vol - 1) < 0.1
    switches = np.count_nonzero(np.diff(process.regime))
    assert 0.7 / (1 - stay) < LONG / switches < 1.3 / (1 - stay)
    default_bars, _ = synthetic_market("TREND", 3000)
    np.testing.assert_array_equal(default_bars.close, synthetic_bars("TREND", 3000).close)


def test_generated_bars_are_plausible() -> None:
    """Over many names: no move the loader would warn about (fat tails alone gave some), prices
    that validate, OHLC consistent, stock-like daily volatility."""
    for symbol in ["SPY", "AAPL", *(f"N{i}" for i in range(150))]:
        bars = synthetic_bars(symbol, 3000)
        validate_bars(bars, min_bars=3000)
        assert implausible_moves(bars) == [], symbol
        assert (bars.high >= np.maximum(bars.open, bars.close)).all()
        assert (bars.low <= np.minimum(bars.open, bars.close)).all()
        assert 0.005 < log_returns(bars.close).std() < 0.03, symbol


def test_the_oracle_is_known_only_for_the_default_market_it_regenerates() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the SYNTHETIC MARKET warning
        markets = load_market(["SPY", "SPX"], ROOT / "data")
    spy = markets["SPY"]  # dated to end on SPX's last day: the prices are the same
    expected = known_expected_return(spy)
    assert expected is not None and expected.shape == (len(spy),)
    np.testing.assert_array_equal(expected, synthetic_market("SPY", len(spy))[1].expected_return())
    assert known_expected_return(markets["SPX"]) is None  # a real file
    assert known_expected_return(synthetic_bars("SPY", len(spy), seed=7)) is None  # another seed
    assert known_expected_return(spy.scaled(2.0)) is None  # not the generated prices


def test_oracle_beats_buy_and_hold_on_the_default_market() -> None:
    """On SPY's and AAPL's generated bars (train split of 1500 bars: ~900 decisions) the long-only
    oracle, trading with the env's costs, has a higher Sharpe than buy-and-hold priced the same way."""
    markets = {s: synthetic_bars(s, 1500) for s in ("SPY", "AAPL")}
    config = EnvConfig(episode_length=0, random_start=False, obs_noise=0.0)
    env = VecTradingEnv(list(markets), 1, config, markets=markets, split="train", seed=0)
    oracle = oracle_sharpe(env, {s: known_expected_return(b) for s, b in markets.items()})
    for symbol in markets:
        first, last = env.decision_range[symbol]
        per_year = periods_per_year(markets[symbol].timestamps[first:last + 1])
        held = equity_metrics(hold(env, symbol, 0.09, rebalance=True).equity, per_year)["sharpe_annualised"]
        assert oracle[symbol] > max(held, 0.0) + 0.5, (symbol, oracle[symbol], held)


def test_oracle_rows_are_for_generated_symbols_only() -> None:
    """The evaluation's oracle row: SPY (generated) gets one over the backtest's own decision
    range, GOOGL (a real file) none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        markets = load_market(["SPY", "GOOGL"], ROOT / "data")
    env = VecTradingEnv(["SPY", "GOOGL"], 2, EnvConfig(episode_length=0, random_start=False, obs_noise=0.0),
                        markets=markets, split="test", seed=0)
    rows = oracle_results(env, torch.device("cpu"), seed=0)
    assert set(rows) == {"SPY"}
    metrics, curve = rows["SPY"]
    first, last = env.decision_range["SPY"]
    assert len(curve) == last - first + 1
    assert metrics["trades"] > 0 and 0 < metrics["exposure"] < 0.09


@pytest.mark.slow
def test_evaluate_prints_the_oracle_for_a_generated_symbol_and_not_a_real_file(tmp_path, capsys) -> None:
    args = list(TINY)
    args[args.index("--symbols") + 1] = "SPY,GOOGL"  # no SPY.parquet in data/: SPY is generated
    run_dir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train_main([*args, "--run-dir", str(run_dir), "--total-steps", "128",
                           "--set", "run.eval_every=0"]) == 0
    capsys.readouterr()
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert ORACLE in report["results"]["SPY"] and ORACLE not in report["results"]["GOOGL"]
    assert ORACLE in report["equity_curves"]["SPY"]
    spy_table, rest = out.split("GOOGL - test split")
    googl_table = rest.split("SPY: agent Sharpe")[0]  # the lines after the tables
    assert "SPY - test split" in spy_table and ORACLE in spy_table
    assert "oracle" not in googl_table
