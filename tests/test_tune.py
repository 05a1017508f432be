"""trainers.tune: a tiny two-trial study in parallel workers, its resume, pruning, and the
message without Optuna."""
import json
import sys

import pytest

from trainers.backtest import trials
from trainers.tune import main


def tiny(study_dir, trials, jobs=1, steps=256):
    """One iteration of 2 symbols x 2 accounts x 64 steps per 256 account-steps, validated at each."""
    return ["--symbols", "SYNA,SYNB", "--trials", str(trials), "--jobs", str(jobs), "--study-dir", str(study_dir),
            "--steps-per-trial", str(steps), "--set", f"run.data_dir={study_dir.parent / 'empty'}",
            "--set", "run.device=cpu", "--set", "run.envs_per_symbol=2", "--set", "run.num_steps=64",
            "--set", "run.eval_every=256", "--set", "run.encoder_preset=custom",
            "--set", "model.encoder.n_layers=1", "--set", "model.encoder.d_model=16",
            "--set", "model.encoder.n_heads=2", "--set", "model.encoder.d_ff=32",
            "--set", "model.encoder.out_dim=16", "--set", "model.actor_hidden=[32]",
            "--set", "model.critic_hidden=[32]"]


def test_without_optuna_the_message_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    assert main(["--trials", "1"]) == 2
    assert 'pip install -e ".[tune]"' in capsys.readouterr().err


@pytest.mark.slow
def test_two_trials_in_two_workers_then_resume_to_three(tmp_path, capsys):
    optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")
    (tmp_path / "empty").mkdir()  # a data folder without files: synthetic markets
    study_dir = tmp_path / "study"
    assert main(tiny(study_dir, 2, jobs=2)) == 0
    assert "trials by best mean validation Sharpe" in capsys.readouterr().out
    report = json.loads((study_dir / "study.json").read_text())
    assert (study_dir / "study.db").is_file() and (study_dir / "study.csv").is_file()
    assert [row["state"] for row in report["trials"]] == ["COMPLETE", "COMPLETE"]
    assert [row["rank"] for row in report["trials"]] == [1, 2]
    first, second = report["trials"]
    assert first["val_sharpe"] >= second["val_sharpe"] and report["best"] == first
    assert first["ppo.minibatch_size"] in (32, 64, 128) and 1e-4 <= first["ppo.learning_rate"] <= 1e-3
    for row in report["trials"]:
        assert list(trials.read(study_dir / f"trial_{row['trial']:04d}").steps) == [256]
    selection = report["selection"]  # every validation of every trial: one each here
    assert selection["num_candidates"] == 2 and selection["num_trials"] == 2
    assert selection["chosen"] == f"trial_{first['trial']:04d} step 256" and 0 <= selection["pbo"] <= 1

    # the same study with --trials 3 runs one more trial; another trial setting is refused
    assert main(tiny(study_dir, 3)) == 0
    report = json.loads((study_dir / "study.json").read_text())
    assert len(report["trials"]) == 3 and report["selection"]["num_trials"] == 3
    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{study_dir / 'study.db'}")
    assert len(study.trials) == 3
    assert main(tiny(study_dir, 3) + ["--set", "run.seed=9"]) == 2
    assert "run.seed: the study has 1, given 9" in capsys.readouterr().err


@pytest.mark.slow
def test_a_pruned_trial_ends_with_a_checkpoint(tmp_path):
    optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")
    from rich.console import Console

    from trainers import checkpoints
    from trainers.tune import build_parser, study_spec
    from trainers.tuning.study import run_study

    (tmp_path / "empty").mkdir()
    spec = study_spec(build_parser().parse_args(tiny(tmp_path / "study", 1, steps=512)))
    # a threshold no Sharpe reaches prunes at the first validation (step 256 of 512)
    report = run_study(spec, 1, 1, Console(), pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    (row,) = report["trials"]
    assert row["state"] == "PRUNED" and row["rank"] is None and row["steps"] == 256
    assert checkpoints.latest(tmp_path / "study" / "trial_0000").step == 256
    assert "no completed trial" in report["selection"]["skipped"]


def test_searched_keys_cannot_be_set(tmp_path, capsys):
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    assert main(tiny(tmp_path / "study", 1) + ["--set", "ppo.clip_coef=0.2"]) == 2
    assert "leave them to the search" in capsys.readouterr().err


@pytest.mark.slow
def test_two_hosts_share_one_study_through_a_journal_storage(tmp_path):
    """Two independent commands (two hosts: their own study dirs) on one --storage journal file run
    one study: every trial number once, the study reaching its total, and the selection counting
    the validations of the trials both ran."""
    optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")
    import subprocess

    (tmp_path / "empty").mkdir()
    storage = f"journal:{tmp_path / 'shared.journal'}"
    commands = [[sys.executable, "-m", "trainers.tune", *tiny(tmp_path / f"host{k}", 4), "--storage", storage]
                for k in (1, 2)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for command in commands]
    outputs = [worker.communicate(timeout=600) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="tune",
                              storage=optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "shared.journal"))))
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) and len(numbers) >= 4
    ran = {k: {int(p.name[len("trial_"):]) for p in (tmp_path / f"host{k}").glob("trial_*")} for k in (1, 2)}
    assert not ran[1] & ran[2] and ran[1] | ran[2] == set(numbers)  # each trial ran on exactly one host
    from trainers.tuning.report import study_selection
    from trainers.tuning.trial import VAL_RETURNS

    recorded = sum(key.startswith(VAL_RETURNS) for t in study.trials for key in t.user_attrs)
    assert recorded >= 4 and study_selection(study)["num_trials"] == recorded  # both hosts' validations
