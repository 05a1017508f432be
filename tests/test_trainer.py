"""The trainer CLI: smoke run, exact resume, Ctrl-C checkpoint, NaN halt, evaluation output."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from configs.train import TrainConfig, build
from envs import EnvConfig, VecTradingEnv
from models import MultiSymbolPolicy, load_checkpoint, read_checkpoint_meta
from trainers import checkpointing
from trainers.evaluate import main as evaluate_main
from trainers.ppo import build_parser, cli_values, main, train
from trainers.session import StopRequest, open_session

ROOT = Path(__file__).resolve().parents[1]
NUM_STEPS, ENVS = 16, 4
BATCH = NUM_STEPS * ENVS * 2  # account-steps per iteration with two symbols
TINY = [
    "--symbols", "SPX,GOOGL", "--data-dir", str(ROOT / "data"), "--envs-per-symbol", str(ENVS),
    "--seed", "3", "--device", "cpu",
    "--set", "run.encoder_preset=custom", "--set", "model.encoder.n_layers=1",
    "--set", "model.encoder.d_model=16", "--set", "model.encoder.n_heads=2",
    "--set", "model.encoder.d_ff=32", "--set", "model.encoder.out_dim=16",
    "--set", "model.encoder.dropout=0.0", "--set", "model.actor_hidden=[32]",
    "--set", "model.critic_hidden=[32]", "--set", f"run.num_steps={NUM_STEPS}",
    "--set", "env.episode_length=20", "--set", "run.checkpoint_every=1", "--set", "run.torch_threads=1",
]


def tiny_args(run_dir: Path, iterations: int) -> list[str]:
    return TINY + ["--run-dir", str(run_dir), "--total-steps", str(iterations * BATCH)]


def open_tiny(run_dir: Path, iterations: int):
    args = build_parser().parse_args(tiny_args(run_dir, iterations))
    return open_session(args, cli_values(args))


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpointing.latest(run_dir).weights)


def test_smoke_run_writes_config_checkpoint_and_tensorboard(tmp_path):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 2)) == 0
    assert (run_dir / "config.toml").is_file()
    assert checkpointing.latest(run_dir).step == 2 * BATCH
    assert any((run_dir / "tb").iterdir())
    # a finished run directory is not silently overwritten
    assert main(tiny_args(run_dir, 2)) == 2


def test_resume_equals_uninterrupted_run(tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(tiny_args(straight, 4)) == 0

    session = open_tiny(interrupted, 4)
    stop = StopRequest()
    update = session.learner.update

    def update_then_stop(*args, **kwargs):
        stats = update(*args, **kwargs)
        if session.iteration == 2:
            stop.requested, stop.signal_name = True, "test stop"
        return stats

    session.learner.update = update_then_stop
    try:
        assert train(session, stop) == 130
    finally:
        session.close()
    assert checkpointing.latest(interrupted).step == 2 * BATCH

    assert main(["--resume", str(interrupted)]) == 0
    a, b = final_weights(straight), final_weights(interrupted)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    state_a = checkpointing.load_state(checkpointing.latest(straight))
    state_b = checkpointing.load_state(checkpointing.latest(interrupted))
    assert state_a["global_step"] == state_b["global_step"] == 4 * BATCH
    for key, value in state_a["env"]["accounts"].items():
        assert torch.equal(value, state_b["env"]["accounts"][key]), key


def test_resume_refuses_other_settings(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 1)) == 0
    assert main(["--resume", str(run_dir), "--set", "ppo.learning_rate=1"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path / "nowhere")]) == 2


def test_non_finite_loss_halts_and_keeps_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    session = open_tiny(run_dir, 4)
    update = session.learner.update

    def poisoned_update(*args, **kwargs):
        if session.iteration == 2:
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
    kept = checkpointing.latest(run_dir)
    assert kept.step == BATCH  # iteration 1's checkpoint, untouched
    fresh = open_tiny(tmp_path / "other", 1)
    try:
        load_checkpoint(kept.weights, fresh.policy)
        assert all(torch.isfinite(p).all() for p in fresh.policy.parameters())
    finally:
        fresh.close()


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
    checkpoint = checkpointing.latest(run_dir)
    assert checkpoint.step >= BATCH
    config = build(TrainConfig, read_checkpoint_meta(checkpoint.weights).config)
    policy = MultiSymbolPolicy(["SPX", "GOOGL"], config.model)
    meta = load_checkpoint(checkpoint.weights, policy)
    assert meta.step == checkpoint.step and meta.symbols == ["SPX", "GOOGL"]


def test_evaluate_writes_table_json_and_pictures(tmp_path):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 1)) == 0
    args = ["--run-dir", str(run_dir), "--split", "val", "--sampled", "2", "--device", "cpu"]
    assert evaluate_main(args) == 0
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert set(report["results"]) == {"SPX", "GOOGL"}
    env = VecTradingEnv(["SPX", "GOOGL"], 1, EnvConfig(episode_length=0, random_start=False),
                        data_dir=str(ROOT / "data"), split="val")
    for symbol, rows in report["results"].items():
        assert {"agent (greedy)", "buy & hold", "random valid", "agent (sampled, mean of 2)"} <= set(rows)
        assert (run_dir / f"equity_val_{symbol}.png").stat().st_size > 1000
        bars, (first, last) = env.markets[symbol], env.bounds[symbol]
        # fully invested at the first fill (open after the first decision bar, plus 1 bp slippage
        # and 2 bp commission), marked at the split's last close
        by_hand = bars.close[last] / (bars.open[first + 1] * 1.0001 * 1.0002) - 1
        assert abs(rows["buy & hold"]["total_return"] - by_hand) < 1e-9
        assert len(report["equity_curves"][symbol]["agent (greedy)"]) == last - first + 1
