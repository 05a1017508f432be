"""Smoke runs of the benches that no other test runs: they start, finish and print their JSON."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_init_ablation_quick_reports_and_marks_the_default():
    # one thread: on a busy machine the default thread count made this 6x slower
    args = ["--quick", "--inits", "orthogonal", "--gains", "0.01", "--seeds", "1", "--device", "cpu",
            "--set", "run.torch_threads=1"]
    out = subprocess.run([sys.executable, str(BENCH / "init_ablation.py"), *args],
                         capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(out.stdout)
    [config] = report["configs"]
    assert (config["init"], config["actor_out_gain"], config["is_default"]) == ("orthogonal", 0.01, True)
    [run] = config["runs"]
    assert run["error"] is None and run["iterations"] == 1
    assert run["best_val_sharpe"] is not None and run["entropy"] > 0
    assert "init x actor output gain" in out.stderr and "orthogonal *" in out.stderr


@pytest.mark.slow
def test_profile_update_reports_category_shares():
    args = ["--envs-per-symbol", "2", "--num-steps", "16", "--threads", "1", "--top", "5", "--device", "cpu"]
    out = subprocess.run([sys.executable, str(BENCH / "profile_update.py"), *args],
                         capture_output=True, text=True, check=True, timeout=180)
    report = json.loads(out.stdout)
    shares = report["category_share"]
    assert {"matmul", "attention/softmax", "optimizer", "untraced"} <= set(shares)
    assert 0.5 < sum(shares.values()) <= 1.01 and all(share >= 0 for share in shares.values())
    assert len(report["top_ops"]) == 5 and report["update_gflops"] > 0 and report["epochs_run"] >= 1


@pytest.mark.slow
def test_learning_quick_backtests_each_checkpoint_kind_against_every_family_oracle():
    """Two seeds trained in two processes, each backtested with the weight average (the default) and
    with the ensemble; every generated family's oracle earns a positive test Sharpe, so each row has
    a share."""
    sys.path.insert(0, str(BENCH))
    from markets import GENERATED
    args = ["--quick", "--markets", "generated", "--seeds", "1,2", "--jobs", "2", "--checkpoint", "average,ensemble",
            "--fresh", "1", "--device", "cpu", "--set", "run.torch_threads=1"]
    out = subprocess.run([sys.executable, str(BENCH / "learning.py"), *args],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout)
    assert report["checkpoints"] == ["average", "ensemble"] and set(report["markets"]) == set(GENERATED)
    for kind in ("average", "ensemble"):
        per_seed = report[f"generated/{kind}"]["per_seed"]
        assert set(per_seed) == {"1", "2"}
        for rows in per_seed.values():
            assert [r["symbol"] for r in rows] == list(GENERATED)
            assert all(r["oracle_sharpe"] > 0 and r["oracle_share"] is not None for r in rows)
    assert report["evaluated_checkpoints"]["ensemble"]["generated_seed1"]["choice"] == "ensemble"
    # the same runs on a fresh draw of every market: other bars, so other Sharpes, each with an oracle
    for kind in ("average", "ensemble"):
        for seed, rows in report[f"generated/{kind}/fresh"]["per_seed"].items():
            test_rows = report[f"generated/{kind}"]["per_seed"][seed]
            assert [r["symbol"] for r in rows] == list(GENERATED)
            assert all(r["oracle_sharpe"] > 0 and r["oracle_share"] is not None for r in rows)
            assert [r["oracle_sharpe"] for r in rows] != [r["oracle_sharpe"] for r in test_rows]


@pytest.mark.slow
def test_calibration_prints_every_rate():
    out = subprocess.run([sys.executable, str(BENCH / "calibration.py"), "--draws", "20"],
                         capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(out.stdout)
    rates = [*report["selection_dsr_above_0.95"].values(), *report["pbo_mean"].values(),
             *report["paired_test"].values(),
             *(v for row in report["walk_forward_probabilistic_sharpe"].values() for v in row.values())]
    assert len(rates) == 3 + 3 + 2 + 2 * 3 and all(0.0 <= rate <= 1.0 for rate in rates)


@pytest.mark.slow
def test_peers_times_every_installed_peer_and_names_the_missing_ones():
    """Tiny settings; a peer that is not installed (CI has none of the `peers` extra) is reported
    with the command that installs it, and the installed ones run with ratios to this trainer."""
    args = ["--envs-per-symbol", "2", "--num-steps", "16", "--iterations", "1", "--epochs", "1",
            "--minibatches", "2", "--threads", "1"]
    out = subprocess.run([sys.executable, str(BENCH / "peers.py"), *args],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout)
    ours = report["results"]["ours"]
    assert ours["iteration"] > 0 and ours["account_steps_per_s"] > 0
    for peer in ("sb3", "maskable", "torchrl"):
        if peer in report["missing"]:
            assert "not installed" in report["missing"][peer] and "pip install" in report["missing"][peer]
            assert peer not in report["results"]
        else:
            assert report["results"][peer]["iteration"] > 0
            assert report["ratios"][f"{peer}/ours"]["iteration"] > 0
