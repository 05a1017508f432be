"""Splits cut at calendar dates common to every symbol: derived from the union of timestamps or
given, honoured by the env, recorded in the run's config.toml and reused by resume and evaluation."""
from __future__ import annotations

import json
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import envs.trading_env
from configs.loader import ConfigError
from configs.train import DEFAULT_CONFIG, TrainConfig, build, resolve
from envs import (WARMUP_BARS, Bars, DataError, EnvConfig, VecTradingEnv, derive_split_dates, load_market,
                  parse_split_dates, split_ranges, synthetic_bars)
from envs.splits import DAY_NS
from trainers.evaluate import main as evaluate_main
from trainers.ppo import main as train_main
from trainers.run.build import open_session

ROOT = Path(__file__).resolve().parents[1]
HOUR_NS = DAY_NS // 24
FIRST = WARMUP_BARS + EnvConfig().lookback - 1  # the first bar with a warmed-up lookback window


def dated(symbol: str, start: str, num_bars: int, hourly: bool = False) -> Bars:
    """A synthetic market on weekday midnights from `start`, or on consecutive hours."""
    bars = synthetic_bars(symbol, num_bars)
    begin = int(np.datetime64(start, "ns").astype(np.int64))
    if hourly:
        bars.timestamps = begin + HOUR_NS * np.arange(num_bars, dtype=np.int64)
    else:
        days = np.busday_offset(np.datetime64(start, "D"), np.arange(num_bars), roll="forward")
        bars.timestamps = days.astype("datetime64[ns]").astype(np.int64)
    return bars


def stamp(bars: Bars, index: int) -> np.int64:
    return bars.timestamps[index]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4000), st.integers(300, 3000), st.booleans()),
                min_size=1, max_size=4),
       st.floats(0.3, 0.9), st.floats(0.0, 1.0))
def test_no_symbol_trains_on_another_symbols_validation_or_test_dates(specs, train, share):
    """Symbols with different date ranges, daily and hourly: every training bar of every symbol
    is earlier than every validation bar of every symbol, and likewise validation before test."""
    val = (1 - train) * share
    stamps = []
    for offset, num_bars, hourly in specs:
        start = int(np.datetime64("2005-01-03", "ns").astype(np.int64)) + offset * DAY_NS
        step = HOUR_NS if hourly else DAY_NS
        stamps.append(start + step * np.arange(num_bars, dtype=np.int64))
    dates = derive_split_dates(stamps, (train, val, 1 - train - val))
    bounds = parse_split_dates(dates)  # what config.toml records reads back exactly
    pieces = {name: [] for name in ("train", "val", "test")}
    for series in stamps:
        ranges = split_ranges(series, bounds)
        assert ranges["train"][0] == 0 and ranges["train"][1] == ranges["val"][0]
        assert ranges["val"][1] == ranges["test"][0] and ranges["test"][1] == len(series)
        for name, (start, end) in ranges.items():
            pieces[name].append(series[start:end])
    train_bars, val_bars, test_bars = (np.concatenate(pieces[n]) for n in ("train", "val", "test"))
    if len(train_bars) and len(val_bars):
        assert train_bars.max() < val_bars.min()
    if len(val_bars) and len(test_bars):
        assert val_bars.max() < test_bars.min()
    if len(train_bars) and len(test_bars):
        assert train_bars.max() < test_bars.min()
    assert len(train_bars) > 0  # a positive train fraction leaves the union's first day in train


@settings(max_examples=100, deadline=None)
@given(st.integers(300, 20_000), st.floats(0.3, 0.9), st.floats(0.0, 1.0))
def test_a_single_daily_symbol_splits_by_its_fractions(num_bars, train, share):
    """One symbol on midnight timestamps: the cuts land where the fractions of its bars say."""
    val = (1 - train) * share
    bars = dated("ONE", "2001-01-01", num_bars)
    fractions = (train, val, 1 - train - val)
    dates = derive_split_dates([bars.timestamps], fractions)
    ranges = split_ranges(bars.timestamps, parse_split_dates(dates))
    cuts = np.round(np.cumsum(fractions[:2]) * num_bars).astype(int)
    assert (ranges["val"][0], ranges["test"][0]) == tuple(cuts)


def test_mixed_daily_and_hourly_envs_respect_the_common_dates():
    """The env itself: daily symbols over different years and an hourly one inside them."""
    markets = {"OLD": dated("OLD", "2004-01-01", 3000), "NEW": dated("NEW", "2009-06-01", 1500),
               "FX": dated("FX", "2012-01-02", 9000, hourly=True)}
    config = EnvConfig(episode_length=0, random_start=False, obs_noise=0.0)
    envs = {split: VecTradingEnv(list(markets), 1, config, markets=markets, split=split)
            for split in ("train", "val", "test")}
    dates = envs["train"].config.split_dates
    assert all(env.config.split_dates == dates for env in envs.values())
    val_start, test_start = parse_split_dates(dates)
    first = {split: {s: stamp(markets[s], env.decision_range[s][0]) for s in markets}
             for split, env in envs.items()}
    last = {split: {s: stamp(markets[s], env.decision_range[s][1]) for s in markets}
            for split, env in envs.items()}
    assert max(last["train"].values()) < val_start <= min(first["val"].values())
    assert max(last["val"].values()) < test_start <= min(first["test"].values())
    # a split's first decision is its first bar once the features are warm: history before the
    # split start feeds its lookback window, with no look-ahead
    for s, bars in markets.items():
        val_first_bar = split_ranges(bars.timestamps, (val_start, test_start))["val"][0]
        assert envs["val"].decision_range[s][0] == val_first_bar


def test_explicit_split_dates_are_honoured():
    dates = ("2012-01-03", "2015-06-01")
    config = EnvConfig(episode_length=0, random_start=False, split_dates=dates, obs_noise=0.0)
    data = str(ROOT / "data")
    for split, (low, high) in {"train": (None, dates[0]), "val": dates, "test": (dates[1], None)}.items():
        env = VecTradingEnv(["SPX", "GOOGL"], 1, config, data_dir=data, split=split)
        assert env.config.split_dates == dates
        for symbol, (first, last) in env.decision_range.items():
            stamps = env.markets[symbol].timestamps.astype("datetime64[ns]")
            if low is not None:  # the split's first decision is the first bar on or after its date
                assert stamps[first] >= np.datetime64(low) > stamps[first - 1]
            if high is not None:
                assert stamps[last] < np.datetime64(high) <= stamps[last + 1]
            else:
                assert last == len(stamps) - 1


@pytest.mark.parametrize("value, fragment", [
    (["2019-01-01"], "expected two dates"),
    (["2019-01-01", "2020-01-01", "2021-01-01"], "expected two dates"),
    (["01/02/2019", "2020-01-01"], "not an ISO date"),
    (["2019-02-30", "2020-01-01"], "not a calendar date"),
    (["2021-01-01", "2020-01-01"], "is after the first test date"),
    (["2019-01-01", "3000-01-01"], "outside"),
])
def test_bad_split_dates_name_the_field(value, fragment):
    with pytest.raises(ConfigError, match=r"^env\.split_dates") as err:
        build(TrainConfig, {"env": {"split_dates": value}})
    assert fragment in str(err.value)
    with pytest.raises(ConfigError, match=r"^env\.split_dates"):
        resolve(DEFAULT_CONFIG, [f"env.split_dates={json.dumps(value)}"])


def test_split_dates_that_are_not_strings_are_refused_by_the_loader():
    data = tomllib.loads("[env]\nsplit_dates = [2019-01-01, 2020-01-01]")  # TOML dates, not strings
    with pytest.raises(ConfigError, match=r"env\.split_dates\[0\]: expected a string"):
        build(TrainConfig, data)


def test_a_symbol_with_an_empty_training_split_is_named():
    markets = {"OLD": dated("OLD", "2000-01-03", 3000), "LATE": dated("LATE", "2014-01-01", 800)}
    with pytest.raises(DataError) as err:  # derived dates: LATE starts inside validation
        VecTradingEnv(list(markets), 1, EnvConfig(obs_noise=0.0), markets=markets)
    message = str(err.value)
    assert message.startswith("LATE") and "train split (before " in message
    assert "has none of its bars" in message
    assert "env.split_dates" in message and "split_fractions" in message
    with pytest.raises(DataError, match=r"^LATE .*none of its bars.*as given"):
        VecTradingEnv(list(markets), 1, EnvConfig(split_dates=("2010-01-01", "2012-01-01"), obs_noise=0.0),
                      markets=markets)


def test_an_empty_validation_split_warns_in_training_and_fails_when_requested():
    markets = {"OLD": dated("OLD", "2000-01-03", 3000), "SHORT": dated("SHORT", "2004-01-01", 900)}
    config = EnvConfig(episode_length=50, split_dates=("2008-01-02", "2010-01-04"), obs_noise=0.0)
    period = r"the val split \[2008-01-02, 2010-01-04\)"
    with pytest.warns(UserWarning, match=rf"SHORT: no tradable bar in {period}"):
        VecTradingEnv(list(markets), 1, config, markets=markets)
    with pytest.raises(DataError, match=rf"^SHORT .*{period} has none of its bars"):
        VecTradingEnv(list(markets), 1, config, markets=markets, split="val")


def test_synthetic_symbols_end_on_the_real_files_last_day():
    with pytest.warns(UserWarning, match="SYNTHETIC MARKET for SPY.*dated to end on the real files' last"):
        markets = load_market(["SPX", "SPY"], ROOT / "data")
    spx, spy = markets["SPX"], markets["SPY"]
    assert spy.timestamps[-1] == spx.timestamps[-1]  # 2018-12-31, a Monday
    np.testing.assert_array_equal(spy.close, synthetic_bars("SPY", 3000).close)  # same prices
    env = VecTradingEnv(["SPX", "SPY"], 1, EnvConfig(obs_noise=0.0), markets=markets)
    for split in ("val", "test"):
        config = EnvConfig(episode_length=0, split_dates=env.config.split_dates, obs_noise=0.0)
        VecTradingEnv(["SPX", "SPY"], 1, config, markets=markets, split=split)  # both symbols trade
    with warnings.catch_warnings():  # only synthetic symbols: their calendar starts 2005-01-03
        warnings.simplefilter("ignore")
        alone = load_market(["SPY"], ROOT / "data")["SPY"]
    assert alone.timestamps[0] == np.datetime64("2005-01-03", "ns").astype(np.int64)


TINY = ["run.symbols=['SPX', 'GOOGL']", "run.envs_per_symbol=2", "run.num_steps=8", "run.device='cpu'",
        "run.torch_threads=1", "env.episode_length=20", "model.actor_hidden=[16]",
        "model.critic_hidden=[16]", "run.total_steps=32", "run.encoder_preset='custom'",
        "model.encoder.n_layers=1", "model.encoder.d_model=16", "model.encoder.n_heads=2",
        "model.encoder.d_ff=32", "model.encoder.out_dim=16", "model.encoder.dropout=0.0"]


@pytest.mark.slow
def test_the_run_records_its_dates_and_resume_and_evaluation_reuse_them(tmp_path, monkeypatch):
    """config.toml holds the dates derived at the start; resume and the evaluator read them from
    there and never derive their own (they would move if the data folder changed)."""
    run_dir = tmp_path / "run"
    session = open_session(resolve(DEFAULT_CONFIG, [*TINY, f"run.data_dir='{ROOT / 'data'}'"]), run_dir)
    try:
        session.save()
    finally:
        session.close()
    dates = session.config.env.split_dates
    assert dates == session.env.config.split_dates == derive_split_dates(
        [b.timestamps for b in session.env.markets.values()], (0.7, 0.15, 0.15))
    assert tuple(tomllib.loads((run_dir / "config.toml").read_text())["env"]["split_dates"]) == dates

    def derive(*args):
        raise AssertionError("split dates derived again instead of read from config.toml")

    monkeypatch.setattr(envs.trading_env, "derive_split_dates", derive)
    assert train_main(["--resume", str(run_dir), "--total-steps", "64"]) == 0
    resumed = build(TrainConfig, tomllib.loads((run_dir / "config.toml").read_text()))
    assert resumed.env.split_dates == dates

    assert evaluate_main(["--run-dir", str(run_dir), "--split", "test", "--device", "cpu"]) == 0
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert tuple(report["split_dates"]) == dates
    test_env = VecTradingEnv(["SPX", "GOOGL"], 1, EnvConfig(episode_length=0, split_dates=dates, obs_noise=0.0),
                             data_dir=str(ROOT / "data"), split="test")
    test_start = parse_split_dates(dates)[1]
    for symbol, (first, last) in test_env.decision_range.items():
        bars = test_env.markets[symbol]
        assert len(report["equity_curves"][symbol]["agent (greedy)"]) == last - first + 1
        assert stamp(bars, first) >= test_start > stamp(bars, first - 1)
