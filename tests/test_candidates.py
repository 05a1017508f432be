"""Selection bias over candidates: skip reasons, and evaluate's PBO / deflated Sharpe over a real
run's kept checkpoints (and the same run's best list traded as one policy, --checkpoint ensemble)."""
import json

import numpy as np
import pytest

from helpers import BATCH, tiny_args
from trainers.run import checkpoints
from trainers.backtest.overfitting import NUM_BLOCKS, describe, selection_stats
from trainers.evaluate import main as evaluate_main
from trainers.ppo import main


def test_selection_is_skipped_with_its_reason():
    rng = np.random.default_rng(0)
    one = selection_stats({"a": rng.normal(size=100)}, "a")
    assert one == {"skipped": "1 candidate; selection bias needs at least 2", "num_candidates": 1}
    bars = 2 * NUM_BLOCKS - 1
    short = selection_stats({"a": rng.normal(size=bars), "b": rng.normal(size=bars)}, "a")
    assert "too few for 16 CSCV blocks" in short["skipped"]
    assert "skipped (" in describe(short, "trials")


def test_selection_reports_pbo_and_dsr_of_the_chosen_candidate():
    rng = np.random.default_rng(1)
    returns = {f"c{i}": rng.normal(0.0, 0.01, size=400) for i in range(5)}
    stats = selection_stats(returns, "c3", num_trials=8)
    assert stats["chosen"] == "c3" and stats["num_trials"] == 8 and stats["num_candidates"] == 5
    assert 0.0 <= stats["pbo"] <= 1.0 and 0.0 <= stats["dsr"] <= 1.0
    assert "deflated Sharpe of c3" in describe(stats, "trials")


@pytest.mark.slow
def test_evaluate_reports_selection_over_the_kept_checkpoints(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 3) + ["--set", f"run.eval_every={BATCH}", "--set", "run.keep_best=2"]) == 0
    kept = {c.weights.stem for c in [*checkpoints.best(run_dir), checkpoints.latest(run_dir)]}
    assert len(kept) >= 2
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu", "--checkpoint", "best"]) == 0
    assert f"selection bias over {len(kept)} kept checkpoints" in capsys.readouterr().out
    selection = json.loads((run_dir / "evaluation.json").read_text())["selection"]
    assert selection["num_candidates"] == len(kept) == selection["num_trials"]
    assert selection["chosen"] == checkpoints.best(run_dir)[0].weights.stem
    assert 0.0 <= selection["pbo"] <= 1.0 and 0.0 <= selection["dsr"] <= 1.0
    assert selection["num_periods"] >= 2 * selection["num_blocks"]

    # the default, the best list's weight average, is judged among the kept checkpoints it came from
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu"]) == 0
    assert f"selection bias over {len(kept) + 1} kept checkpoints" in capsys.readouterr().out
    selection = json.loads((run_dir / "evaluation.json").read_text())["selection"]
    assert selection["num_candidates"] == len(kept) + 1 and selection["chosen"] == "average"

    # the same run's best list traded as one policy (models.PolicyEnsemble)
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu", "--checkpoint", "ensemble"]) == 0
    assert "ensemble of the 2 best" in capsys.readouterr().out
    checkpoint = json.loads((run_dir / "evaluation.json").read_text())["checkpoint"]
    assert checkpoint["choice"] == "ensemble"
    assert checkpoint["members"] == [str(c.weights) for c in checkpoints.best(run_dir)]
