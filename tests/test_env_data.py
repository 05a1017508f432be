"""Parquet loading and validation, splits, synthetic markets, the planted signal and bundled data."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from envs import (DEFAULT_SPEC, DataError, EnvConfig, VecTradingEnv, load_bars, load_market,
                  parse_split_dates, planted_signal_bars, split_ranges, synthetic_bars)

SPEC = DEFAULT_SPEC
HOLD, BUY_LARGE, SELL_ALL = (SPEC.action_id(name) for name in ("HOLD", "BUY_LARGE", "SELL_ALL"))

DATA = Path(__file__).resolve().parents[1] / "data"


def good_columns(rows: int = 50) -> dict[str, object]:
    bars = synthetic_bars("T", rows)
    return {"timestamp": pa.array(bars.timestamps.astype("datetime64[ns]")), "open": bars.open,
            "high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume}


def write(tmp_path: Path, columns: dict[str, object], symbol: str = "BAD") -> Path:
    path = tmp_path / f"{symbol}.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def broken(name: str, row: int, value: float) -> dict[str, object]:
    columns = good_columns()
    values = np.array(columns[name], dtype=float)
    values[row] = value
    columns[name] = values
    return columns


def shuffled_time(kind: str) -> dict[str, object]:
    columns = good_columns()
    stamps = good_columns()["timestamp"].to_numpy(zero_copy_only=False).copy()
    if kind == "duplicate":
        stamps[7] = stamps[6]
    else:
        stamps[6], stamps[7] = stamps[7], stamps[6]
    columns["timestamp"] = pa.array(stamps)
    return columns


CASES = {
    "missing close": ({k: v for k, v in good_columns().items() if k != "close"}, ["missing column 'close'"]),
    "NaN open": (broken("open", 5, np.nan), ["row 5", "open", "NaN"]),
    "inf low": (broken("low", 9, np.inf), ["row 9", "low", "inf"]),
    "zero close": (broken("close", 3, 0.0), ["row 3", "close", "not a positive price"]),
    "negative high": (broken("high", 4, -1.0), ["row 4", "high", "not a positive price"]),
    "high below low": (broken("high", 8, 1e-3), ["row 8", "high < low"]),
    "NaN volume": (broken("volume", 2, np.nan), ["row 2", "volume", "NaN"]),
    "unsorted": (shuffled_time("unsorted"), ["row 7", "unsorted"]),
    "duplicate": (shuffled_time("duplicate"), ["row 7", "duplicate"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_file_fails_naming_file_row_and_problem(tmp_path: Path, case: str) -> None:
    columns, fragments = CASES[case]
    path = write(tmp_path, columns)
    with pytest.raises(DataError) as err:
        load_bars(tmp_path, "BAD")
    message = str(err.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_too_few_bars_fails(tmp_path: Path) -> None:
    path = write(tmp_path, good_columns(50))
    with pytest.raises(DataError, match="too few") as err:
        load_bars(tmp_path, "BAD", min_bars=200)
    assert str(path) in str(err.value)
    with pytest.raises(DataError, match="too few"):
        VecTradingEnv(["BAD"], 1, data_dir=str(tmp_path))


def test_missing_file_and_not_parquet(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_bars(tmp_path, "NOPE")
    (tmp_path / "JUNK.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="JUNK.parquet"):
        load_bars(tmp_path, "JUNK")


def test_column_variants_and_sl_probs(tmp_path: Path) -> None:
    columns = good_columns(60)
    renamed = {"Date": pa.array(columns["timestamp"].to_numpy(zero_copy_only=False).astype("datetime64[D]")),
               "OPEN": columns["open"], "High": columns["high"], "low": columns["low"],
               "Adj Close": columns["close"], "Volume": columns["volume"],
               "sl_prob_up": np.full(60, 0.8), "sl_prob_down": np.full(60, 0.1)}
    write(tmp_path, renamed, "VAR")
    bars = load_bars(tmp_path, "VAR")
    np.testing.assert_array_equal(bars.close, columns["close"])
    assert bars.timestamps.dtype == np.int64 and (np.diff(bars.timestamps) > 0).all()
    # sl_prob_* columns are taken in name order; missing ones stay 0.5
    np.testing.assert_array_equal(bars.sl_probs[0], [0.1, 0.8, 0.5])
    assert not bars.is_synthetic


def test_synthetic_market_is_deterministic_per_symbol_and_announced(tmp_path: Path) -> None:
    a, again, b = synthetic_bars("SPY", 500), synthetic_bars("SPY", 500), synthetic_bars("AAPL", 500)
    np.testing.assert_array_equal(a.close, again.close)
    assert not np.allclose(a.close[:100], b.close[:100])
    assert (a.high >= np.maximum(a.open, a.close)).all() and (a.low <= np.minimum(a.open, a.close)).all()
    with pytest.warns(UserWarning, match="SYNTHETIC MARKET for SPY"):
        markets = load_market(["SPY"], tmp_path)
    assert markets["SPY"].source == "synthetic" and markets["SPY"].is_synthetic


def test_missing_data_dir_fails_naming_it_and_empty_dir_gives_synthetic(tmp_path: Path) -> None:
    """A data_dir that is not a folder (a typo) is an error, never a silent switch to synthetic bars."""
    missing = tmp_path / "no_such_data"
    with pytest.raises(DataError, match="no such folder") as err:
        load_market(["SPY"], missing)
    assert str(missing) in str(err.value)
    with pytest.raises(DataError) as err:
        VecTradingEnv(["SPY"], 1, data_dir=str(missing))
    assert str(missing) in str(err.value)
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.warns(UserWarning, match="SYNTHETIC MARKET for SPY"):
        markets = load_market(["SPY"], empty)
    assert markets["SPY"].is_synthetic
    np.testing.assert_array_equal(markets["SPY"].close, synthetic_bars("SPY", 3000).close)


@pytest.mark.slow
def test_planted_signal_oracle_beats_buy_and_hold() -> None:
    """Hold 9 % of equity exactly when sl_probs[t, 0] > 0.5 (fill at open t + 1) over the whole split."""
    bars = planted_signal_bars(2000, seed=0)
    config = EnvConfig(episode_length=0, random_start=False, obs_noise=0.0)
    env = VecTradingEnv(["P"], 1, config, markets={"P": bars}, seed=0)
    obs, _ = env.reset(seed=0)
    done = torch.zeros(1, dtype=torch.bool)
    while not done.all():
        signal, holding = obs["sl_probs"][:, 0] > 0.5, obs["position"][:, 4] > 0
        actions = torch.where(signal & ~holding, BUY_LARGE, torch.where(~signal & holding, SELL_ALL, HOLD))
        obs, _, terminated, truncated, info = env.step(actions)
        assert not info["mask_violation"].any()
        done = terminated | truncated
    first, last = env.decision_range["P"]
    buy_and_hold = bars.close[last] / bars.open[first + 1] - 1
    oracle = float(info["episode"]["return"][0])
    assert buy_and_hold < 0 < oracle
    assert oracle > 0.1  # the edge pays for costs at a 9 % position


def test_bundled_real_data_loads_and_steps() -> None:
    markets = load_market(["SPX", "GOOGL", "EURUSD"], DATA)
    assert {b.symbol: len(b) for b in markets.values()} == {"SPX": 5031, "GOOGL": 2335, "EURUSD": 6225}
    assert all(not b.is_synthetic for b in markets.values())
    for split in ("train", "test"):
        # hourly EURUSD (2017) pulls the common split dates into 2017: GOOGL's test split holds 225 bars
        env = VecTradingEnv(["SPX", "GOOGL", "EURUSD"], 2, EnvConfig(episode_length=128, obs_noise=0.0),
                            data_dir=str(DATA),
                            split=split, seed=0)
        obs, _ = env.reset(seed=0)
        generator = torch.Generator().manual_seed(0)
        for _ in range(20):
            noise = torch.rand(env.num_envs, SPEC.num_actions, generator=generator)
            obs, reward, _, _, _ = env.step((noise * env.action_masks()).argmax(1))
            assert all(torch.isfinite(v).all() for v in obs.values()) and torch.isfinite(reward).all()
        bounds = parse_split_dates(env.config.split_dates)
        start, end = split_ranges(env.markets["SPX"].timestamps, bounds)[split]
        first, last = env.decision_range["SPX"]
        assert start <= first < last == end - 1


def test_an_unadjusted_split_is_named_and_strict_data_refuses_it(tmp_path: Path) -> None:
    columns = good_columns(300)
    for name in ("open", "high", "low", "close"):
        columns[name] = np.where(np.arange(300) >= 200, columns[name] / 10.0, columns[name])  # a 10:1 split at row 200
    write(tmp_path, columns, "SPLIT")
    with pytest.warns(UserWarning, match=r"SPLIT\.parquet: row 200 .* closes -9\d\.\d% .*--strict-data"):
        load_market(["SPLIT"], tmp_path)
    with pytest.raises(DataError, match=r"SPLIT\.parquet: row 200 "):
        load_market(["SPLIT"], tmp_path, strict=True)
    with pytest.raises(DataError, match="row 200"):
        VecTradingEnv(["SPLIT"], 1, EnvConfig(strict_data=True, episode_length=20), data_dir=str(tmp_path))


def test_bundled_real_bars_have_no_implausible_move(recwarn) -> None:
    load_market(["SPX", "GOOGL", "EURUSD"], DATA, strict=True)  # hourly EURUSD news moves stay below 20 %
    assert not [w for w in recwarn if "robust standard deviations" in str(w.message)]


def test_a_symbol_that_moves_less_than_a_round_trip_is_warned_of_and_the_fx_preset_lifts_it():
    """Hourly EUR/USD moves a median ~4 bp a bar, below the equity defaults' 6 bp round trip: the
    training env warns, naming it; SPX (~55 bp) is not named; under configs/costs_fx_hourly.toml
    (0.9 bp) nothing is."""
    from configs.train import DEFAULT_CONFIG, resolve

    def warned(config: EnvConfig) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            VecTradingEnv(["EURUSD", "SPX"], 1, config, data_dir=str(DATA), split="train")
        return [str(w.message) for w in caught if "round trip" in str(w.message)]

    default = EnvConfig()
    assert default.round_trip_cost == pytest.approx(2 * (2.0 + 1.0) * 1e-4)
    [message] = warned(default)
    assert message.startswith("EURUSD: its typical bar moves") and "6.0 bp" in message
    fx = resolve(DEFAULT_CONFIG.with_name("costs_fx_hourly.toml")).env
    assert fx.round_trip_cost < 1e-4 and warned(fx) == []
