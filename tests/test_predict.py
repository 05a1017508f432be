"""python -m trainers.predict: the decision for the bar after the newest one, from the env's own
observation and mask at that bar; refusals for stale data, unknown symbols and missing files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import ROOT, tiny_args

from configs.loader import ConfigError
from envs import load_bars
from trainers.agent.decision import parse_age
from trainers.ppo import main as train_main
from trainers.predict import main as predict_main


def test_max_age_units():
    assert parse_age("36h") == 36 * 3600 and parse_age("2w") == 14 * 86_400 and parse_age("0") is None
    with pytest.raises(ConfigError, match="--max-age"):
        parse_age("soon")


@pytest.mark.slow
def test_a_run_predicts_the_next_bar_and_refuses_what_it_cannot_trust(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train_main(tiny_args(run_dir, 1)) == 0
    capsys.readouterr()
    assert predict_main(["--run-dir", str(run_dir), "--max-age", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    decisions = {d["symbol"]: d for d in out["decisions"]}
    assert set(decisions) == {"SPX", "GOOGL"} and "step" in out["checkpoint"]
    for symbol, d in decisions.items():
        newest = load_bars(ROOT / "data", symbol).timestamps[-1]
        assert np.datetime64(d["as_of"]) == np.datetime64(int(newest), "ns")
        probs = d["probabilities"]
        assert abs(sum(probs.values()) - 1.0) < 1e-5
        assert d["action"] == max(probs, key=probs.get) and d["action"] not in d["masked"]
        assert all(probs[name] == 0.0 for name in d["masked"])
        assert set(d["masked"]) == {"SELL_PARTIAL", "SELL_ALL", "ADD_TO_POSITION"}  # a flat account
        assert len(d["data_sha256"]) == 64

    assert predict_main(["--run-dir", str(run_dir)]) == 2  # the bundled bars end in 2018
    assert "days old, beyond --max-age" in capsys.readouterr().err
    assert predict_main(["--run-dir", str(run_dir), "--max-age", "0", "--symbols", "AAPL"]) == 2
    assert "AAPL not trained" in capsys.readouterr().err
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(ROOT / "data" / "SPX.parquet", partial)
    assert predict_main(["--run-dir", str(run_dir), "--max-age", "0", "--data-dir", str(partial)]) == 2
    assert "no data file for GOOGL" in capsys.readouterr().err
