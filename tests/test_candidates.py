"""Selection bias over candidates: skip reasons, and evaluate's PBO / deflated Sharpe over a real
run's kept checkpoints (and the same run's best list traded as one policy, --checkpoint ensemble)."""
import json

import numpy as np
import pytest

from helpers import BATCH, tiny_args
from trainers import checkpoints
import torch

from configs.train import read_run_config
from trainers.backtest import trials
from trainers.backtest.evaluation import selection_validator
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
def test_evaluate_counts_every_validation_not_only_the_kept_checkpoints(tmp_path, capsys):
    """Three validations, two kept by keep_best: the selection statistics count all three (the
    pruned one was looked at too), from validations.npz, whose rows are exactly what a backtest of
    the kept checkpoints on the val split gives again."""
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 3) + ["--set", f"run.eval_every={BATCH}", "--set", "run.keep_best=2"]) == 0
    record = trials.read(run_dir)
    assert record is not None and list(record.steps) == [BATCH, 2 * BATCH, 3 * BATCH]
    kept = checkpoints.best(run_dir)
    assert len(kept) == 2 < len(record.steps)
    config = read_run_config(run_dir / "config.toml")
    validator = selection_validator(config, torch.device("cpu"), 0)
    for checkpoint in kept:
        actor = checkpoints.load_policy(config, [checkpoint], validator.symbols, validator.env.trading_spec,
                                        torch.device("cpu"))
        row = record.returns[list(record.steps).index(checkpoint.step)]
        np.testing.assert_array_equal(validator.backtest(actor).returns, row)
    assert record.scores[list(record.steps).index(kept[0].step)] == pytest.approx(kept[0].val_sharpe)

    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu", "--checkpoint", "best"]) == 0
    out = capsys.readouterr().out
    assert "selection bias over 3 validations (every one the run recorded, kept or pruned)" in out
    assert "ties count one half" in out
    selection = json.loads((run_dir / "evaluation.json").read_text())["selection"]
    assert selection["num_candidates"] == 3 == selection["num_trials"] == selection["num_validations"]
    assert selection["chosen"] == kept[0].weights.stem
    assert 0.0 <= selection["pbo"] <= 1.0 and 0.0 <= selection["dsr"] <= 1.0
    assert selection["num_periods"] >= 2 * selection["num_blocks"]

    # the default, the best list's weight average, was never validated: one more trial
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu"]) == 0
    assert "selection bias over 4 validations" in capsys.readouterr().out
    selection = json.loads((run_dir / "evaluation.json").read_text())["selection"]
    assert selection["num_candidates"] == 4 and selection["chosen"] == "average"

    # the same run's best list traded as one policy (models.PolicyEnsemble)
    assert evaluate_main(["--run-dir", str(run_dir), "--device", "cpu", "--checkpoint", "ensemble"]) == 0
    assert "ensemble of the 2 best" in capsys.readouterr().out
    checkpoint = json.loads((run_dir / "evaluation.json").read_text())["checkpoint"]
    assert checkpoint["choice"] == "ensemble"
    assert checkpoint["members"] == [str(c.weights) for c in checkpoints.best(run_dir)]
    selection = json.loads((run_dir / "evaluation.json").read_text())["selection"]
    assert selection["chosen"] == "ensemble" and selection["num_candidates"] == 4


def test_the_validation_record_replaces_a_replayed_step_and_keeps_the_rest(tmp_path):
    """A resume replays the iterations after its checkpoint: the validation at a step seen again
    replaces its row; the others stay in step order; another number of val bars is refused."""
    rng = np.random.default_rng(3)
    rows = {step: rng.normal(size=50) for step in (300, 100, 200)}
    for step, row in rows.items():
        trials.record(tmp_path, step, float(step), row)
    replayed = rng.normal(size=50)
    record = trials.record(tmp_path, 200, -1.0, replayed)
    assert list(record.steps) == [100, 200, 300] and list(record.scores) == [100.0, -1.0, 300.0]
    np.testing.assert_array_equal(record.returns, np.stack([rows[100], replayed, rows[300]]))
    np.testing.assert_array_equal(trials.read(tmp_path).returns, record.returns)
    with pytest.raises(ValueError, match="50 val bars, the one at step 400 has 49"):
        trials.record(tmp_path, 400, 0.0, rng.normal(size=49))
    assert trials.read(tmp_path / "nothing") is None
