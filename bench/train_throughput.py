"""Training throughput: account-steps per second of the rollout, the PPO update and a whole iteration.

    python bench/train_throughput.py [--symbols SPX,GOOGL] [--envs-per-symbol 16] [--num-steps 128]
                                     [--iterations 3] [--encoder small|full] [--device auto|cpu|cuda]
                                     [--threads 0] [--json PATH]

Builds exactly what `python -m trainers.ppo` builds (same config resolution, env, policy, learner),
runs one warm-up iteration, then times `--iterations` iterations phase by phase with device syncs.
PERF-NOTES' reference for this machine: Stable-Baselines3 PPO with its default MLP runs ~700-1,200
env-steps/s on CartPole and gym-anytrading; here every step also runs a transformer encoder.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import device_name, emit, sync
from ppo_core import collect_rollout, compute_gae
from trainers.ppo import build_parser, cli_values
from trainers.session import Session, open_session


def iteration(session: Session) -> tuple[float, float]:
    """One rollout + update; returns (rollout seconds, GAE + update seconds)."""
    cfg, buf = session.config, session.buffer
    start = time.perf_counter()
    session.policy.eval()
    with torch.no_grad():
        rollout = collect_rollout(session.env, session.policy, buf, session.obs, cfg.ppo.gamma,
                                  on_step=session.stats.on_step, reward_scale=session.reward_normalizer)
    session.obs = rollout.next_obs
    sync(session.device)
    collected = time.perf_counter()
    advantages, returns = compute_gae(buf.rewards, buf.values, buf.dones, rollout.last_values,
                                      cfg.ppo.gamma, cfg.ppo.gae_lambda)
    session.policy.train()
    session.learner.update(buf, advantages, returns, ent_coef=0.01, progress=0.0,
                           num_groups=len(cfg.run.symbols), generator=session.generator)
    sync(session.device)
    return collected - start, time.perf_counter() - collected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", default="SPX,GOOGL")
    parser.add_argument("--envs-per-symbol", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--encoder", choices=["auto", "small", "full"], default="auto")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1] / "data"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as run_dir:
        train_args = build_parser().parse_args([
            "--symbols", args.symbols, "--data-dir", args.data_dir, "--device", args.device,
            "--envs-per-symbol", str(args.envs_per_symbol), "--run-dir", str(Path(run_dir) / "run"),
            "--set", f"run.num_steps={args.num_steps}", "--set", f"run.encoder_preset={args.encoder}",
            "--set", f"run.torch_threads={args.threads}"])
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's messages; stdout is the JSON
            session = open_session(train_args, cli_values(train_args))
            try:
                iteration(session)  # warm-up
                timings = [iteration(session) for _ in range(args.iterations)]
            finally:
                session.close()
    steps = session.config.run.num_steps * session.env.num_envs
    rollout_s = sum(t[0] for t in timings)
    update_s = sum(t[1] for t in timings)
    enc = session.config.model.encoder
    emit({
        "bench": "train_throughput", "device": device_name(session.device), "torch": torch.__version__,
        "symbols": args.symbols.split(","), "accounts": session.env.num_envs, "num_steps": args.num_steps,
        "encoder": f"{session.config.run.encoder_preset} ({enc.n_layers}x{enc.d_model})",
        "update_epochs": session.config.ppo.update_epochs, "iterations": args.iterations,
        "rollout_seconds_per_iteration": round(rollout_s / args.iterations, 3),
        "update_seconds_per_iteration": round(update_s / args.iterations, 3),
        "rollout_account_steps_per_s": round(steps * args.iterations / rollout_s),
        "iteration_account_steps_per_s": round(steps * args.iterations / (rollout_s + update_s)),
        "rollout_share": round(rollout_s / (rollout_s + update_s), 3),
    }, args.json)


if __name__ == "__main__":
    main()
