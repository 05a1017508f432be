"""python -m trainers.walkforward: stitching, and a tiny end-to-end walk-forward whose rerun after
an interruption gives the same report as the uninterrupted run."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import TINY, check_report_page

from trainers.folds.stitch import pooled_bars_per_year, stitch
from trainers.walkforward import main


def test_the_stitched_curve_compounds_the_fold_returns():
    rng = np.random.default_rng(0)
    curves = [100_000.0 * np.cumprod(np.r_[1.0, 1.0 + rng.normal(0.0, 0.01, n)]) for n in (30, 45, 20)]
    curves[1] *= 0.5  # each fold starts from its own capital: only its returns carry over
    equity = stitch(curves)
    assert len(equity) == sum(len(c) - 1 for c in curves) + 1
    assert equity[0] == curves[0][0]
    product = np.prod([c[-1] / c[0] for c in curves])
    assert equity[-1] / equity[0] == pytest.approx(product, rel=1e-12)


def test_pieces_keep_their_own_bar_frequency():
    """Two years of daily bars and one year of hourly bars (24 x 252 a year): the pooled frequency
    is all the bars over all three years, not the last piece's frequency."""
    daily, hourly = 504, 24 * 252
    assert pooled_bars_per_year([daily, hourly], [252.0, 24 * 252.0]) == pytest.approx((daily + hourly) / 3.0)
    assert pooled_bars_per_year([100, 300], [252.0, 252.0]) == pytest.approx(252.0)


def walkforward_args(run_dir) -> list[str]:
    """The tiny trainer command line for a 2-fold, 1-seed walk-forward (the per-run flags it lacks
    become --set)."""
    tiny, flags = [], iter(TINY)
    for arg in flags:
        if arg in ("--envs-per-symbol", "--seed"):
            next(flags)
        else:
            tiny.append(arg)
    return [*tiny, "--set", "run.envs_per_symbol=4", "--set", "run.eval_every=128",
            "--folds", "2", "--seeds", "1", "--steps-per-fold", "256", "--run-dir", str(run_dir)]


@pytest.mark.slow
def test_an_interrupted_walkforward_continues_to_the_same_report(tmp_path, capsys):
    whole = tmp_path / "whole"
    assert main(walkforward_args(whole)) == 0
    report = json.loads((whole / "walkforward.json").read_text())
    assert sorted(p.name for p in whole.iterdir() if p.is_dir()) == ["fold_0", "fold_1"]
    assert (whole / "fold_1" / "seed_1" / "checkpoints" / "latest.json").is_file()
    assert report["purge_bars"] == 25  # auto: the lookback (24) plus the reward's one bar
    across = report["summary"]["across_seeds_and_folds"]
    assert across["iqm_sharpe"]["agent (greedy)"]["low"] <= across["iqm_sharpe"]["agent (greedy)"]["point"]
    out = capsys.readouterr().out
    assert "purge 25 bars" in out and "not look-ahead" in report["purge"]
    # every symbol and the book: the stitched curve tested against no skill, each buy-and-hold on the
    # same bars, and the random paths stitched the same way
    significance = report["summary"]["significance"]
    assert set(significance) == {"SPX", "GOOGL", "book"}
    test = significance["book"]["per_seed"]["1"]
    assert significance["book"]["num_trials"] == 1 and 0.0 <= test["no_skill"]["probability"] <= 1.0
    assert set(test["paired"]) == {"buy & hold", "matched buy & hold"}
    assert all(0.0 < p["p_value"] <= 1.0 and p["low"] <= p["high"] for p in test["paired"].values())
    assert test["random"]["paths"] == 32 and 0.0 <= test["random"]["agent_percentile"] <= 1.0
    assert test["bars"] == sum(report["summary"]["stitched"]["book"]["1"]["agent (greedy)"]["fold_lengths"])
    assert [c["fold"] for c in report["summary"]["fold_selection"]] == [0, 1]
    assert all("num_trials" in c or "skipped" in c for c in report["summary"]["fold_selection"])
    assert len(report["summary"]["boundaries"]) == 1
    matched = [r for r in report["summary"]["rows"] if r["strategy"] == "matched buy & hold" and r["symbol"] != "book"]
    agent = {(r["fold"], r["symbol"]): r["exposure"] for r in report["summary"]["rows"]
             if r["strategy"] == "agent (greedy)" and r["symbol"] != "book"}
    assert all(abs(r["exposure"] - agent[(r["fold"], r["symbol"])]) < 0.01 for r in matched)
    assert "P(skill)" in out and "each fold's checkpoint choice among its validations" in out
    # the tear sheet: per symbol and the book, the stitched equity and the risk panels
    assert check_report_page(whole / "walkforward.html", tmp_path) == 3 * 2
    assert len(report["summary"]["timestamps"]["book"]) == test["bars"] + 1

    # as if killed after fold 0: fold 1 never ran; the rerun trains it and reports the same
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    shutil.rmtree(cut / "fold_1")
    (cut / "walkforward.json").unlink()
    assert main(walkforward_args(cut)) == 0
    again = json.loads((cut / "walkforward.json").read_text())
    assert again["summary"] == report["summary"]

    # another plan in the same directory is refused by name, nothing is overwritten
    assert main([*walkforward_args(cut), "--folds", "3"]) == 2
    assert "walkforward_plan.json" in capsys.readouterr().err


@pytest.mark.slow
def test_two_processes_on_one_run_directory_split_the_pairs_and_report_alike(tmp_path):
    """The same walk-forward started twice on one RUN_DIR (two hosts on a shared filesystem, here
    two processes): every fold x seed pair is trained and tested by exactly one of them, and both
    end with the same report."""
    import re
    import subprocess
    import sys

    run_dir = tmp_path / "shared"
    args = [*walkforward_args(run_dir)]
    args[args.index("--seeds") + 1] = "1,2"
    command = [sys.executable, "-m", "trainers.walkforward", *args]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [process.communicate(timeout=900) for process in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    ran_here = [re.findall(r"fold (\d) seed (\d): tested here", out) for out, _ in outputs]
    everywhere = sorted(ran_here[0] + ran_here[1])
    assert everywhere == [("0", "1"), ("0", "2"), ("1", "1"), ("1", "2")]  # each pair once, by one process
    for out, _ in outputs:
        assert len(re.findall(r"fold \d seed \d: tested", out)) == 4  # each knows all four
    report = json.loads((run_dir / "walkforward.json").read_text())
    assert set(report["summary"]["stitched"]["book"]) == {"1", "2"}
