"""python -m trainers.paper: the ledger replays exactly what trainers.evaluate backtests, writes each
bar once (idempotent, whole bars after a SIGKILL), trades only the bars that arrive, refuses
changed inputs and held ledgers; predict reads the account a ledger or a positions file holds."""
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import ROOT, check_report_page, tiny_args

from trainers.agent.paper_report import book_curve
from trainers.evaluate import main as evaluate_main
from trainers.paper import main as paper_main
from trainers.ppo import main as train_main
from trainers.predict import main as predict_main

TABLES = ("meta", "orders", "fills", "positions")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """A tiny trained run, its test-split evaluation and a copy of its data."""
    root = tmp_path_factory.mktemp("paper")
    run_dir = root / "run"
    assert train_main(tiny_args(run_dir, 2)) == 0
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu"]) == 0
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    data = root / "data"
    data.mkdir()
    for symbol in ("SPX", "GOOGL"):
        shutil.copy(ROOT / "data" / f"{symbol}.parquet", data)
    return {"dir": run_dir, "evaluation": evaluation, "data": data, "root": root,
            "test_start": evaluation["split_dates"][1]}


def paper(run: dict, ledger: Path, *extra: str, data: Path | None = None) -> int:
    return paper_main(["--run-dir", str(run["dir"]), "--data-dir", str(data or run["data"]), "--ledger", str(ledger),
                       *extra])


def rows(ledger: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(ledger) as db:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}


def equity(ledger: Path, symbol: str) -> list[float]:
    with sqlite3.connect(ledger) as db:
        return [e for (e,) in db.execute("SELECT equity FROM positions WHERE symbol = ? ORDER BY ts_ns", (symbol,))]


def truncated(run: dict, name: str, keep_after_start: int) -> Path:
    """A copy of the run's data with each symbol cut `keep_after_start` bars after the test start."""
    folder = run["root"] / name
    folder.mkdir(exist_ok=True)
    start = np.datetime64(run["test_start"], "ns")
    for symbol in ("SPX", "GOOGL"):
        table = pq.read_table(run["data"] / f"{symbol}.parquet")
        first = int(np.searchsorted(table.column("timestamp").to_numpy().astype("datetime64[ns]"), start))
        pq.write_table(table.slice(0, first + keep_after_start), folder / f"{symbol}.parquet")
    return folder


@pytest.mark.slow
def test_replaying_the_test_split_gives_evaluates_greedy_curve_and_a_second_run_writes_nothing(run, tmp_path,
                                                                                               capsys):
    ledger = tmp_path / "paper.sqlite"
    assert paper(run, ledger, "--from", run["test_start"]) == 0
    for symbol, curves in run["evaluation"]["equity_curves"].items():
        expected, got = np.array(curves["agent (greedy)"]), np.array(equity(ledger, symbol))
        assert got.shape == expected.shape
        assert abs(got[-1] / expected[-1] - 1.0) < 1e-6
        np.testing.assert_allclose(got, expected, rtol=1e-9)
    before = rows(ledger)
    assert len(before["fills"]) > 0 and len(before["orders"]) == sum(
        len(c["agent (greedy)"]) - 1 for c in run["evaluation"]["equity_curves"].values())
    capsys.readouterr()
    assert paper(run, ledger) == 0 and paper(run, ledger, "--from", run["test_start"]) == 0
    assert rows(ledger) == before
    assert "wrote 0 new bar(s)" in capsys.readouterr().out

    assert paper_main(["--report", str(ledger), "--json", "--data-dir", str(run["data"])]) == 0
    report = json.loads(capsys.readouterr().out)
    summary = report["summary"]
    # the ledger replays the test split, so its baselines are evaluate's rows (same bars, costs and seed)
    for symbol, strategies in run["evaluation"]["results"].items():
        assert set(report["results"][symbol]) == set(strategies)
        for name in ("buy & hold", "matched buy & hold", "random valid"):
            for key, value in strategies[name].items():
                assert report["results"][symbol][name][key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)
        assert report["baselines"][symbol] == run["evaluation"]["baselines"][symbol]
    assert {"SPX", "GOOGL", "book (equal capital)"} <= set(summary)
    assert summary["SPX"]["fills"] == sum(r[0] == "SPX" for r in before["fills"])
    assert summary["SPX"]["equity"] == pytest.approx(equity(ledger, "SPX")[-1])
    assert "sharpe_annualised" in summary["SPX"] and ledger.with_suffix(".png").stat().st_size > 0
    # the tear sheet: the book, then per symbol the equity and the risk panels
    assert check_report_page(ledger.with_suffix(".html"), tmp_path) == 1 + 2 * 2


@pytest.mark.slow
def test_new_bars_are_the_only_ones_traded_and_predict_on_a_truncated_ledger_takes_the_backtests_action(
        run, tmp_path, capsys):
    full = tmp_path / "full.sqlite"
    assert paper(run, full, "--from", run["test_start"]) == 0
    decided = {(symbol, ts): action for symbol, _, ts, action, *_ in rows(full)["orders"]}
    growing = tmp_path / "growing.sqlite"
    for keep in (40, 97):  # data cut at a test bar, then more bars arrive
        data = truncated(run, f"cut{keep}", keep)
        assert paper(run, growing, "--from", run["test_start"], data=data) == 0
        capsys.readouterr()
        assert predict_main(["--run-dir", str(run["dir"]), "--data-dir", str(data), "--ledger", str(growing),
                             "--max-age", "0", "--json"]) == 0
        for decision in json.loads(capsys.readouterr().out)["decisions"]:
            newest = int(np.datetime64(decision["as_of"], "ns").astype(np.int64))
            assert decision["action"] == decided[(decision["symbol"], newest)]
            assert decision["account"].startswith("ledger:")
    assert paper(run, growing, data=run["data"]) == 0  # the rest of the bars: only those are new
    assert rows(growing)["positions"] == rows(full)["positions"]
    assert rows(growing)["orders"] == rows(full)["orders"] and rows(growing)["fills"] == rows(full)["fills"]


@pytest.mark.slow
def test_a_paper_run_killed_mid_way_resumes_without_a_duplicated_or_missing_bar(run, tmp_path):
    whole = tmp_path / "whole.sqlite"
    assert paper(run, whole, "--from", run["test_start"]) == 0
    ledger = tmp_path / "killed.sqlite"
    command = [sys.executable, "-m", "trainers.paper", "--run-dir", str(run["dir"]), "--data-dir", str(run["data"]),
               "--ledger", str(ledger), "--from", run["test_start"]]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, count = time.monotonic() + 120, 0
        while count < 50 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            try:
                with sqlite3.connect(ledger) as db:
                    count = db.execute("SELECT COUNT(*) FROM positions").fetchone()[0]
            except sqlite3.Error:
                count = 0
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    partial = rows(ledger)["positions"]
    assert 50 <= len(partial) < len(rows(whole)["positions"])  # killed mid-way
    assert paper(run, ledger) == 0
    assert rows(ledger) == {**rows(whole), "meta": rows(ledger)["meta"]}


@pytest.mark.slow
def test_changed_inputs_and_held_ledgers_are_refused_with_one_line(run, tmp_path, capsys):
    ledger = tmp_path / "paper.sqlite"
    data = truncated(run, "short", 30)
    assert paper(run, ledger, "--from", run["test_start"], data=data) == 0
    kept = rows(ledger)
    capsys.readouterr()

    def refused(code: int, *needles: str) -> None:
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert all(n in err for n in needles), err

    refused(paper(run, ledger, "--from", "2016-06-01", data=data), "started at", "new ledger")
    revised = run["root"] / "revised"
    revised.mkdir(exist_ok=True)
    table = pq.read_table(data / "SPX.parquet").to_pandas()
    table.loc[len(table) - 5:, ["open", "high", "low", "close"]] *= 1.01  # re-adjusted recent bars
    table.to_parquet(revised / "SPX.parquet", index=False)
    shutil.copy(data / "GOOGL.parquet", revised)
    refused(paper(run, ledger, data=revised), "SPX's equity at", "changed")
    other = tmp_path / "other_run"
    shutil.copytree(run["dir"], other, ignore=shutil.ignore_patterns(".lock"))
    refused(paper_main(["--run-dir", str(other), "--data-dir", str(data), "--ledger", str(ledger)]),
            "a ledger of run")
    broken = run["root"] / "broken"
    broken.mkdir(exist_ok=True)
    shutil.copy(data / "GOOGL.parquet", broken)
    (broken / "SPX.parquet").write_bytes((data / "SPX.parquet").read_bytes()[:3000])
    refused(paper(run, tmp_path / "fresh.sqlite", "--from", run["test_start"], data=broken), "SPX.parquet",
            "not a readable parquet")
    assert not (tmp_path / "fresh.sqlite").exists()
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"not a database at all" * 100)
    refused(paper(run, corrupt), "not a paper-trading ledger")
    refused(paper(run, tmp_path / "new.sqlite", "--from", "2016-13-01", data=data), "--from", "not a calendar date")
    frozen = ledger.with_name("paper.policy.safetensors")
    original = frozen.read_bytes()
    frozen.write_bytes(original + b" ")
    refused(paper(run, ledger, data=data), "frozen policy weights", "changed")
    frozen.write_bytes(original)
    refused(predict_main(["--run-dir", str(run["dir"]), "--ledger", str(tmp_path / "none.sqlite"), "--max-age", "0"]),
            "no such ledger")
    assert rows(ledger) == kept  # nothing refused wrote anything

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from trainers.run.lock import ProcessLock; "
         "ProcessLock(sys.argv[1], 'x', 'paper trading').acquire(); print('held', flush=True); time.sleep(60)",
         f"{ledger}.lock"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused(paper(run, ledger, data=data), f"in use by process {holder.pid}", "paper trading")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert paper(run, ledger, data=data) == 0  # a killed holder leaves no lock behind


@pytest.mark.slow
def test_predict_assumes_the_positions_a_file_gives(run, tmp_path, capsys):
    positions = tmp_path / "positions.json"
    positions.write_text(json.dumps({"SPX": {"shares": 10, "cash": 75000, "entry": 2500.0}}))
    assert predict_main(["--run-dir", str(run["dir"]), "--data-dir", str(run["data"]), "--max-age", "0",
                         "--positions", str(positions), "--json"]) == 0
    decisions = {d["symbol"]: d for d in json.loads(capsys.readouterr().out)["decisions"]}
    spx, googl = decisions["SPX"], decisions["GOOGL"]
    buys = {"BUY_SMALL", "BUY_MEDIUM", "BUY_LARGE"}
    assert buys <= set(spx["masked"]) and not {"SELL_PARTIAL", "SELL_ALL"} & set(spx["masked"])
    assert "10 shares at 2,500" in spx["account"] and "75,000.00 cash" in spx["account"]
    assert {"SELL_PARTIAL", "SELL_ALL", "ADD_TO_POSITION"} <= set(googl["masked"])  # left out: flat
    for bad, needle in (({"AAPL": {"shares": 1}}, "AAPL not trained"), ({"SPX": {"shares": -1}}, "SPX.shares"),
                        ({"SPX": {"shares": 1e9}}, "give its cash"), ([1, 2], "expected an object")):
        positions.write_text(json.dumps(bad))
        assert predict_main(["--run-dir", str(run["dir"]), "--data-dir", str(run["data"]), "--max-age", "0",
                             "--positions", str(positions)]) == 2
        assert needle in capsys.readouterr().err


def test_the_book_carries_each_symbols_equity_forward():
    curves = {"A": (np.array([1, 3, 4]), np.array([100.0, 110.0, 120.0])),
              "B": (np.array([2, 3]), np.array([100.0, 90.0]))}
    stamps, book = book_curve(curves)
    assert stamps.tolist() == [1, 2, 3, 4]
    assert book.tolist() == [100.0 + 100.0, 100.0 + 100.0, 110.0 + 90.0, 120.0 + 90.0]
