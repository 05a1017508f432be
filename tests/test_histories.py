"""Symbols with different histories (one 1999-2018, one 2004-2013): derived split dates fall in the
period both trade, so both train, validate and are evaluated; with dates outside the short one's
history, trainers.evaluate reports the other and names it."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import TINY

from envs import synthetic_bars
from trainers.evaluate import main as evaluate_main
from trainers.ppo import main as train_main


def write_dated(data_dir: Path, symbol: str, start: str, end: str) -> None:
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D"))
    days = days[np.is_busday(days)]
    bars = synthetic_bars(symbol, len(days))
    pq.write_table(pa.table({"timestamp": pa.array(days.astype("datetime64[ns]")), "open": bars.open,
                             "high": bars.high, "low": bars.low, "close": bars.close,
                             "volume": bars.volume}), data_dir / f"{symbol}.parquet")


def tiny(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    args = list(TINY)
    args[args.index("--symbols") + 1] = "LONG,SHORT"
    args[args.index("--data-dir") + 1] = str(data_dir)
    return [*args, "--run-dir", str(run_dir), "--total-steps", "128", "--set", "run.eval_every=0", *extra]


@pytest.mark.slow
def test_different_histories_train_and_evaluate_both(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    write_dated(data, "LONG", "1999-01-04", "2018-12-31")
    write_dated(data, "SHORT", "2004-01-05", "2013-12-31")
    assert train_main(tiny(data, tmp_path / "derived")) == 0
    val, test = tomllib.loads((tmp_path / "derived" / "config.toml").read_text())["env"]["split_dates"]
    assert "2004" < val < test < "2014"  # inside the period both trade
    assert evaluate_main(["--run-dir", str(tmp_path / "derived")]) == 0
    report = json.loads((tmp_path / "derived" / "evaluation.json").read_text())
    assert set(report["results"]) == {"LONG", "SHORT"} and report["skipped"] == {}

    # dates after SHORT's last bar: it trains, has no test bars, and evaluation reports LONG alone
    dates = "env.split_dates=['2012-01-03', '2015-01-02']"
    assert train_main(tiny(data, tmp_path / "given", "--set", dates)) == 0
    capsys.readouterr()
    assert evaluate_main(["--run-dir", str(tmp_path / "given")]) == 0
    report = json.loads((tmp_path / "given" / "evaluation.json").read_text())
    assert set(report["results"]) == {"LONG"} and set(report["skipped"]) == {"SHORT"}
    assert "skipped SHORT" in capsys.readouterr().out
