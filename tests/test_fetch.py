"""envs.fetch without a network or yfinance: a stand-in `yfinance` module answers with a frame recorded
in yfinance's shape (tests/fixtures/README.md), or fails the way yfinance fails."""
import importlib.machinery
import logging
import sys
import types
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from envs import EnvConfig, VecTradingEnv, load_market
from envs.fetch import main
from envs.yahoo import fetch_hint, make_request
from trainers import ppo

ROOT = Path(__file__).resolve().parents[1]
RECORDED = pd.read_parquet(ROOT / "tests" / "fixtures" / "yfinance_SPY_1d.parquet")
TINY_TRAIN = [
    "--envs-per-symbol", "4", "--total-steps", "320", "--seed", "0", "--device", "cpu",
    "--set", "run.encoder_preset=custom", "--set", "model.encoder.n_layers=1",
    "--set", "model.encoder.d_model=16", "--set", "model.encoder.n_heads=2",
    "--set", "model.encoder.d_ff=32", "--set", "model.encoder.out_dim=16",
    "--set", "model.actor_hidden=[32]", "--set", "model.critic_hidden=[32]",
    "--set", "run.num_steps=16", "--set", "env.episode_length=20", "--set", "run.torch_threads=1",
]


def as_ticker(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
    return frame.rename(columns={"SPY": ticker}, level="Ticker")


def fake_yfinance(monkeypatch: pytest.MonkeyPatch, answer) -> list[dict]:
    """Install a stand-in `yfinance` whose download(ticker, **kwargs) returns answer(ticker, kwargs)
    (or raises what it raises); returns the list of calls."""
    calls: list[dict] = []

    def download(tickers, **kwargs):
        calls.append({"tickers": tickers, **kwargs})
        return answer(tickers, kwargs)

    module = types.ModuleType("yfinance")
    module.__spec__ = importlib.machinery.ModuleSpec("yfinance", loader=None)  # find_spec reads it
    module.download = download
    monkeypatch.setitem(sys.modules, "yfinance", module)
    return calls


def test_recorded_frame_gives_a_file_in_the_bundled_schema_that_loads(tmp_path, monkeypatch) -> None:
    calls = fake_yfinance(monkeypatch, lambda ticker, kwargs: as_ticker(RECORDED, ticker))
    assert main(["SPY", "AAPL", "--data-dir", str(tmp_path)]) == 0
    assert [c["tickers"] for c in calls] == ["SPY", "AAPL"]
    assert calls[0]["start"] == "2005-01-01" and calls[0]["interval"] == "1d"
    assert calls[0]["auto_adjust"] is True and calls[0]["ignore_tz"] is False
    table = pq.read_table(tmp_path / "SPY.parquet")
    assert table.schema.remove_metadata() == pq.read_schema(ROOT / "data" / "SPX.parquet").remove_metadata()
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["symbol"] == "SPY" and meta["interval"] == "1d" and meta["adjusted"] == "true"
    assert meta["source"] == "Yahoo Finance via yfinance" and meta["requested"] == "2005-01-01 .. now"
    assert meta["fetched_at"].startswith(str(date.today().year))
    # daily bars at 00:00 UTC of the session's date, like the bundled files
    assert table["timestamp"][0].as_py().isoformat() == "2018-01-02T00:00:00+00:00"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL.parquet", "SPY.parquet"]

    markets = load_market(["SPY", "AAPL"], tmp_path)
    assert not markets["SPY"].is_synthetic and len(markets["SPY"]) == len(RECORDED) == 251
    np.testing.assert_array_equal(markets["SPY"].close, RECORDED[("Close", "SPY")].to_numpy())
    env = VecTradingEnv(["SPY", "AAPL"], 2, EnvConfig(episode_length=20, obs_noise=0.0),
                        data_dir=str(tmp_path), seed=0)
    env.reset(seed=0)


@pytest.mark.slow
def test_trainer_fetch_downloads_missing_symbols_then_trains_on_them(tmp_path, monkeypatch, capsys) -> None:
    fake_yfinance(monkeypatch, lambda ticker, kwargs: as_ticker(RECORDED, ticker))
    data = tmp_path / "data"
    args = ["--symbols", "SPY", "--data-dir", str(data), "--run-dir", str(tmp_path / "run"), *TINY_TRAIN]
    assert ppo.main([*args, "--fetch"]) == 0
    out = capsys.readouterr().out
    assert f"--fetch: downloading SPY from Yahoo Finance (python -m envs.fetch SPY --data-dir {data})" in out
    assert "SYNTHETIC" not in out and (data / "SPY.parquet").is_file()
    assert "done: 320 account-steps" in out
    assert ppo.main(["--resume", str(tmp_path / "run"), "--fetch"]) == 2
    assert "a resumed run keeps the markets it started with" in capsys.readouterr().err


@pytest.mark.parametrize("failure", ["nan_row", "empty", "network", "delisted", "offline"])
def test_a_failing_symbol_is_named_with_its_reason_and_leaves_no_file(tmp_path, monkeypatch, capsys,
                                                                       failure) -> None:
    def answer(ticker, kwargs):
        if ticker == "AAPL":  # the other symbol still lands
            return as_ticker(RECORDED, ticker)
        if failure == "nan_row":
            frame = RECORDED.copy()
            frame.iloc[5, frame.columns.get_loc(("Close", "SPY"))] = np.nan
            return frame
        if failure == "network":
            raise ConnectionError("Failed to perform, curl: (6) Could not resolve host: query2.example")
        if failure == "empty":
            return RECORDED.iloc[:0]
        # what yfinance 1.7.0 does (seen here without a network): log the reasons, answer an empty frame
        log = logging.getLogger("yfinance")
        if failure == "offline":  # it blames the ticker when it could not even ask for its timezone
            log.error("Failed to get ticker 'SPY' reason: Failed to perform, curl: (6) Could not resolve "
                      "host: query2.example (Domain name not found). See https://curl.se/libcurl/c/"
                      "libcurl-errors.html first for more details.")
            log.error("$SPY: possibly delisted; no timezone found")
        if failure == "delisted":
            log.error("$SPY: possibly delisted; no timezone found")
        log.error("\n1 Failed download:")
        log.error("['SPY']: possibly delisted; no timezone found")
        return RECORDED.iloc[:0]

    fake_yfinance(monkeypatch, answer)
    assert main(["SPY", "AAPL", "--data-dir", str(tmp_path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    reason = {"nan_row": "SPY (Yahoo's 1d bars): row 5: close is NaN or inf",
              "empty": "SPY: Yahoo Finance returned no 1d bars for 2005-01-01 .. now (unknown ticker",
              "network": "SPY: cannot reach Yahoo Finance (no network connection?): ConnectionError",
              "delisted": "SPY: possibly delisted; no timezone found; nothing written",
              "offline": "SPY: cannot reach Yahoo Finance (no network connection?): Failed to get ticker "
                         "'SPY' reason: Failed to perform, curl: (6) Could not resolve host: query2.example "
                         "(Domain name not found); nothing written"}[failure]
    assert reason in out and "nothing written" in out
    assert "1 written, 0 kept, 1 failed (SPY: see above)" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AAPL.parquet"]  # no SPY file, no temp file


def test_an_existing_file_is_kept_without_force(tmp_path, monkeypatch, capsys) -> None:
    calls = fake_yfinance(monkeypatch, lambda ticker, kwargs: as_ticker(RECORDED, ticker))
    kept = tmp_path / "SPY.parquet"
    kept.write_bytes(b"someone's own bars")
    assert main(["SPY", "--data-dir", str(tmp_path)]) == 0
    assert kept.read_bytes() == b"someone's own bars" and calls == []
    assert f"SPY: kept the existing {kept} (--force replaces it)" in capsys.readouterr().out
    assert main(["SPY", "--data-dir", str(tmp_path), "--force"]) == 0
    assert len(load_market(["SPY"], tmp_path)["SPY"]) == 251


def test_raw_prices_use_close_not_adj_close(tmp_path, monkeypatch) -> None:
    raw = RECORDED.copy()
    raw[("Adj Close", "SPY")] = raw[("Close", "SPY")] * 0.9
    calls = fake_yfinance(monkeypatch, lambda ticker, kwargs: raw)
    assert main(["SPY", "--raw", "--data-dir", str(tmp_path)]) == 0
    assert calls[0]["auto_adjust"] is False
    table = pq.read_table(tmp_path / "SPY.parquet")
    assert table.schema.metadata[b"adjusted"] == b"false"
    np.testing.assert_array_equal(table["close"].to_numpy(), RECORDED[("Close", "SPY")].to_numpy())


def test_hourly_bars_are_utc_instants_and_older_than_730_days_is_refused(tmp_path, monkeypatch,
                                                                          capsys) -> None:
    # seven sessions' bars a day, 09:30 .. 15:30 New York time, across the 2025-03-09 switch to EDT
    days = pd.bdate_range("2025-03-03", periods=35)
    index = pd.DatetimeIndex([day + pd.Timedelta(hours=9.5 + h) for day in days for h in range(7)],
                             name="Datetime").tz_localize("America/New_York")
    hourly = RECORDED.iloc[:len(index)].set_axis(index)
    fake_yfinance(monkeypatch, lambda ticker, kwargs: hourly)
    assert main(["SPY", "--interval", "1h", "--start", str(date.today().replace(day=1)),
                 "--data-dir", str(tmp_path)]) == 0
    stamps = [t.isoformat() for t in pq.read_table(tmp_path / "SPY.parquet")["timestamp"].to_pylist()]
    assert stamps[0] == "2025-03-03T14:30:00+00:00" and stamps[35] == "2025-03-10T13:30:00+00:00"

    assert make_request(interval="1h", today=date(2026, 1, 1)).start == date(2024, 1, 3)
    with pytest.raises(ValueError, match="last 730 days only"):
        make_request(date(2005, 1, 1), interval="1h", today=date(2026, 1, 1))
    assert main(["SPY", "--interval", "1h", "--start", "2005-01-01", "--data-dir", str(tmp_path / "h")]) == 2
    assert "Yahoo Finance serves 1h bars for the last 730 days only" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_without_yfinance_every_path_says_how_to_install_it(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "yfinance", None)  # `import yfinance` now raises ImportError
    install = 'pip install -e ".[data]"'
    assert main(["SPY", "--data-dir", str(tmp_path)]) == 2
    assert install in capsys.readouterr().err
    args = ["--symbols", "SPY", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "run"), *TINY_TRAIN]
    assert ppo.main([*args, "--fetch"]) == 2
    assert install in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert ppo.main([*args, "--total-steps", "64"]) == 0  # trades a synthetic SPY, and says how to fix that
    assert f"warning: fetch real bars for SPY with: {install} (adds yfinance), then python -m envs.fetch " \
           f"SPY --data-dir {tmp_path}" in capsys.readouterr().out
    with pytest.warns(UserWarning) as caught:
        load_market(["SPY", "AAPL"], tmp_path)
    assert f"fetch real bars for SPY, AAPL with: {install} (adds yfinance), then python -m envs.fetch " \
           f"SPY AAPL --data-dir {tmp_path}" in [str(w.message) for w in caught]
    assert fetch_hint(["SPY"]) == f"fetch real bars for SPY with: {install} (adds yfinance), then " \
                                  "python -m envs.fetch SPY"


def test_the_real_yfinance_download_takes_our_arguments() -> None:
    yf = pytest.importorskip("yfinance", reason="the data extra (yfinance) is not installed")
    import inspect
    parameters = inspect.signature(yf.download).parameters
    for name in ("start", "end", "interval", "auto_adjust", "actions", "ignore_tz", "progress", "threads"):
        assert name in parameters, f"yfinance {yf.__version__}: download() has no {name!r}"
