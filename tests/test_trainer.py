"""The trainer CLI: smoke run, exact resume, Ctrl-C checkpoint, NaN halt, evaluation output."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from configs.train import TrainConfig, build
from envs import EnvConfig, TradingSpec, VecTradingEnv
from helpers import BATCH, ROOT, check_report_page, tiny_args
from models import MultiSymbolPolicy, load_checkpoint, read_checkpoint_meta
from trainers import checkpoints
from trainers.backtest.metrics import equity_metrics
from trainers.backtest.simulate import account_metrics
from trainers.evaluate import main as evaluate_main
from trainers.ppo import build_parser, main, resolve_run, train
from trainers.backtest.report import COLUMNS, print_tables
from trainers.run.loop import StopRequest
from trainers.run.build import open_session


def open_tiny(run_dir: Path, iterations: int):
    config, run_dir, resuming = resolve_run(build_parser().parse_args(tiny_args(run_dir, iterations)))
    return open_session(config, run_dir, resume=resuming)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoints.latest(run_dir).weights)


@pytest.mark.slow
def test_smoke_run_writes_config_checkpoint_and_tensorboard(tmp_path):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 2)) == 0
    assert (run_dir / "config.toml").is_file()
    assert checkpoints.latest(run_dir).step == 2 * BATCH
    assert any((run_dir / "tb").iterdir())
    # a finished run directory is not silently overwritten
    assert main(tiny_args(run_dir, 2)) == 2


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(tiny_args(straight, 4)) == 0

    session = open_tiny(interrupted, 4)
    stop = StopRequest()
    iterate = session.iterate

    def iterate_then_stop(*args, **kwargs):
        result = iterate(*args, **kwargs)
        if session.iteration == 2:
            stop.requested, stop.signal_name = True, "test stop"
        return result

    session.iterate = iterate_then_stop
    try:
        assert train(session, stop) == 130
    finally:
        session.close()
    assert checkpoints.latest(interrupted).step == 2 * BATCH

    assert main(["--resume", str(interrupted)]) == 0
    a, b = final_weights(straight), final_weights(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    state_a = checkpoints.load_state(checkpoints.latest(straight))
    state_b = checkpoints.load_state(checkpoints.latest(interrupted))
    assert state_a["global_step"] == state_b["global_step"] == 4 * BATCH
    for key, value in state_a["env"]["accounts"].items():
        assert torch.equal(value, state_b["env"]["accounts"][key]), key


@pytest.mark.slow
def test_resume_refuses_other_settings(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 1)) == 0
    assert main(["--resume", str(run_dir), "--set", "ppo.learning_rate=1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nowhere")]) == 2


@pytest.mark.slow
def test_resume_accepts_the_runs_own_settings_and_names_a_real_difference(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 1)) == 0
    # the very same flags again (only --total-steps grows): resumes
    assert main(["--resume", str(run_dir), *tiny_args(run_dir, 2)]) == 0
    assert main(["--resume", str(run_dir), "--symbols", "SPX,GOOGL", "--seed", "3",
                 "--total-steps", str(3 * BATCH)]) == 0
    assert checkpoints.latest(run_dir).step == 3 * BATCH
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--seed", "4", "--symbols", "SPX,AAPL"]) == 2
    err = capsys.readouterr().err
    assert "run.seed: the run has 3, given 4" in err
    assert "run.symbols: the run has ['SPX', 'GOOGL'], given ['SPX', 'AAPL']" in err
    assert checkpoints.latest(run_dir).step == 3 * BATCH


def test_empty_symbols_and_missing_data_dir_are_refused_before_anything_is_written(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["--symbols", "", "--run-dir", str(run_dir)]) == 2
    assert "--symbols '': no symbol given" in capsys.readouterr().err
    args = tiny_args(run_dir, 1)
    args[args.index("--data-dir") + 1] = str(tmp_path / "dat")  # a typo of an existing folder
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "dat" in err and "no such folder" in err and "Traceback" not in err
    assert not run_dir.exists()


@pytest.mark.slow
def test_truncated_latest_checkpoint_resumes_from_the_newest_intact_one(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 2)) == 0
    bad = checkpoints.latest(run_dir).weights
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "--total-steps", str(3 * BATCH)]) == 0
    out = capsys.readouterr().out
    assert bad.name in out and f"resumed {run_dir} at step {BATCH:,}" in out
    assert checkpoints.latest(run_dir).step == 3 * BATCH
    assert bad.with_name(bad.name + checkpoints.CORRUPT_SUFFIX).exists()  # kept for inspection


def test_non_finite_loss_halts_and_keeps_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    session = open_tiny(run_dir, 4)
    update = session.learner.update

    def poisoned_update(*args, **kwargs):
        if session.iteration == 1:  # counted after the iteration: this is the second update
            with torch.no_grad():
                next(session.policy.parameters()).fill_(float("nan"))
        return update(*args, **kwargs)

    session.learner.update = poisoned_update
    messages = []
    log_message = session.log.message
    session.log.message = lambda text, style="": (messages.append(text), log_message(text, style))
    try:
        assert train(session) == 1
    finally:
        session.close()
    failure = [m for m in messages if m.startswith("error:")]
    assert failure and "iteration 2" in failure[0] and "non-finite" in failure[0]
    kept = checkpoints.latest(run_dir)
    assert kept.step == BATCH  # iteration 1's checkpoint, untouched
    fresh = open_tiny(tmp_path / "other", 1)
    try:
        load_checkpoint(kept.weights, fresh.policy)
        assert all(torch.isfinite(p).all() for p in fresh.policy.parameters())
    finally:
        fresh.close()


@pytest.mark.slow
def test_sigint_saves_a_loadable_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "trainers.ppo", *tiny_args(run_dir, 10_000)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("it 1 "):
            proc.send_signal(signal.SIGINT)
            break
    out, _ = proc.communicate(timeout=120)
    lines.append(out)
    assert proc.returncode == 130, "".join(lines)
    assert "checkpoint saved" in "".join(lines)
    checkpoint = checkpoints.latest(run_dir)
    assert checkpoint.step >= BATCH
    config = build(TrainConfig, read_checkpoint_meta(checkpoint.weights).config)
    policy = MultiSymbolPolicy(["SPX", "GOOGL"], config.model, TradingSpec.from_config(config.env))
    meta = load_checkpoint(checkpoint.weights, policy)
    assert meta.step == checkpoint.step and meta.symbols == ["SPX", "GOOGL"]


@pytest.mark.slow
def test_evaluate_writes_table_json_and_pictures(tmp_path):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 1)) == 0
    args = ["--run-dir", str(run_dir), "--split", "val", "--sampled", "2", "--device", "cpu"]
    assert evaluate_main(args) == 0
    report = json.loads((run_dir / "evaluation_val.json").read_text())
    assert set(report["results"]) == {"SPX", "GOOGL"}
    # the tear sheet: per symbol the equity and the risk panels
    assert check_report_page(run_dir / "report_val.html", tmp_path) == 2 * 2
    env = VecTradingEnv(["SPX", "GOOGL"], 1, EnvConfig(episode_length=0, random_start=False, obs_noise=0.0),
                        data_dir=str(ROOT / "data"), split="val")
    for symbol, rows in report["results"].items():
        assert {"agent (greedy)", "buy & hold", "random valid", "agent (sampled, mean of 2)"} <= set(rows)
        assert (run_dir / f"equity_val_{symbol}.png").stat().st_size > 1000
        bars, (first, last) = env.markets[symbol], env.decision_range[symbol]
        # fully invested at the first fill (open after the first decision bar, plus 1 bp slippage
        # and 2 bp commission), marked at the split's last close
        by_hand = bars.close[last] / (bars.open[first + 1] * 1.0001 * 1.0002) - 1
        assert abs(rows["buy & hold"]["total_return"] - by_hand) < 1e-9
        assert len(report["equity_curves"][symbol]["agent (greedy)"]) == last - first + 1
        # matched buy & hold holds the agent's exposure bar after bar, and says what it realised
        baselines = report["baselines"][symbol]
        agent_exposure = rows["agent (greedy)"]["exposure"]
        assert baselines["matched buy & hold"]["fraction"] == pytest.approx(agent_exposure)
        assert abs(rows["matched buy & hold"]["exposure"] - agent_exposure) < 0.01
        # random valid is the median of its 32 paths, and the agent's place among them is their share below it
        random = baselines["random valid"]
        with np.load(run_dir / "random_paths_val.npz") as arrays:
            paths = arrays[symbol]
        assert paths.shape == (32, last - first + 1) == (random["paths"], last - first + 1)
        assert rows["random valid"]["total_return"] == pytest.approx(np.median(paths[:, -1] / paths[:, 0] - 1.0))
        sharpes = [equity_metrics(path, report["periods"][symbol]["bars_per_year"])["sharpe_annualised"]
                   for path in paths]
        agent_sharpe = rows["agent (greedy)"]["sharpe_annualised"]
        assert random["agent_percentile"] == pytest.approx(np.mean(np.array(sharpes) < agent_sharpe)
                                                           + 0.5 * np.mean(np.array(sharpes) == agent_sharpe))
        assert random["sharpe_p05"] <= random["sharpe_median"] <= random["sharpe_p95"]
        assert len({round(s, 9) for s in sharpes}) > 16  # 32 different paths, not one repeated


def test_win_rate_and_profit_factor_show_a_dash_without_a_closed_trade():
    """An account that bought and held (a positive return, no sell) has no win rate or profit
    factor: they are None in the JSON and "-" in the table, not 0 % and 0.00."""
    steps = 4
    sim = {"equity": np.array([[100.0, 100.0], [101.0, 99.0], [102.0, 101.0], [104.0, 103.0]]),
           "exposure": np.full((steps, 2), 0.5), "notional": np.zeros((steps, 2)),
           "closed_trades": np.array([0.0, 2.0]), "win_rate": np.array([0.0, 0.5]),
           "profit_factor": np.array([0.0, 1.5]), "trades": np.array([1.0, 3.0])}
    held, _ = account_metrics(sim, 0, steps, 100.0, 252.0)
    traded, _ = account_metrics(sim, 1, steps, 100.0, 252.0)
    assert held["total_return"] > 0 and held["win_rate"] is None and held["profit_factor"] is None
    assert traded["win_rate"] == 0.5 and traded["profit_factor"] == 1.5
    console = Console(width=200, record=True)
    print_tables({"SYN": {"held": held, "traded": traded}}, "test", console)
    held_row = next(line for line in console.export_text().splitlines() if "held" in line)
    cells = [cell.strip() for cell in held_row.split("│")]
    columns = [title for _, title, _ in COLUMNS]
    assert cells[2 + columns.index("win")] == "-" and cells[2 + columns.index("PF")] == "-"


def test_a_run_directory_removed_while_the_run_shuts_down_is_not_recreated(tmp_path, capsys):
    """Deleting RUN_DIR while the trainer finishes (the save of a Ctrl-C, say) must not bring it
    back: the save says nothing was written and closing leaves no file behind."""
    import shutil

    run_dir = tmp_path / "run"
    config, run_dir, resume = resolve_run(build_parser().parse_args(tiny_args(run_dir, 2)))
    session = open_session(config, run_dir, resume=resume)
    session.iterate()
    shutil.rmtree(run_dir)
    assert session.save() is None
    session.close()
    assert not run_dir.exists()
    assert "no longer exists; no checkpoint written" in capsys.readouterr().out
