"""`trainers.evaluate --data-dir`: a run backtested on the same symbols' files in another folder,
split at the run's dates."""
import json
import shutil

import pyarrow.parquet as pq
import pytest

from helpers import ROOT, tiny_args
from trainers.evaluate import main as evaluate_main
from trainers.ppo import main


def agent_rows(run_dir):
    report = json.loads((run_dir / "evaluation.json").read_text())
    return report["data_dir"], {s: rows["agent (greedy)"] for s, rows in report["results"].items()}


@pytest.mark.slow
def test_evaluate_trades_the_bars_of_another_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 2)) == 0
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu"]) == 0
    own_dir, own = agent_rows(run_dir)

    copy = tmp_path / "copy"
    copy.mkdir()
    for symbol in ("SPX", "GOOGL"):
        shutil.copy(ROOT / "data" / f"{symbol}.parquet", copy / f"{symbol}.parquet")
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu", "--data-dir", str(copy)]) == 0
    data_dir, same = agent_rows(run_dir)
    assert data_dir == str(copy) != own_dir and same == own  # the same bars trade the same way

    # other bars: GOOGL's test split cut short by its last 100 bars
    table = pq.read_table(copy / "GOOGL.parquet")
    pq.write_table(table.slice(0, table.num_rows - 100), copy / "GOOGL.parquet")
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu", "--data-dir", str(copy)]) == 0
    _, other = agent_rows(run_dir)
    assert other["SPX"] == own["SPX"] and other["GOOGL"] != own["GOOGL"]

    (copy / "SPX.parquet").unlink()
    capsys.readouterr()
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu", "--data-dir", str(copy)]) == 2
    assert f"{copy}: no bars for SPX" in capsys.readouterr().err
