"""Plain helpers that several test files call with arguments (plain values and functions, not fixtures).

Tests import them as `from helpers import ...`: pytest puts tests/ on sys.path (rootdir-relative
"prepend" import mode; tests/ is not a package)."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A tiny two-symbol `trainers.ppo` command line: one-layer encoder, short rollouts, cpu, checkpoint
# every iteration. tiny_args(run_dir, n) runs it for exactly n iterations.
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
