"""Training throughput: account-steps per second of the rollout, the PPO update and a whole iteration.

    python bench/train_throughput.py [--symbols SPX,GOOGL] [--envs-per-symbol 16] [--num-steps 128]
                                     [--iterations 3] [--encoder small|full] [--device auto|cpu|cuda]
                                     [--threads 0] [--compile] [--json PATH]

Builds exactly what `python -m trainers.ppo` builds (same config resolution and session) and times
the trainer's own iteration (`Session.iterate`, i.e. ppo_core.ppo_iteration with the entropy
stack, reward normaliser and rollout statistics): one warm-up iteration, then `--iterations`
timed ones, phases separated by device syncs. The update's achieved GFLOP/s (3x the policy's
forward matmul FLOPs per sample, times samples and epochs run) is printed beside the matmul peak
of the update's precision (fp32, or bf16 / fp16 under ppo.amp) measured in the same run. With --compile (run.compile) the warm-up iteration's update includes
the compilation: `warmup_update_seconds`.
PERF-NOTES' reference for this machine: Stable-Baselines3 PPO with its default MLP runs ~700-1,200
env-steps/s on CartPole and gym-anytrading; here every step also runs a transformer encoder.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import torch

from common import add_session_arguments, device_name, emit, matmul_peak_gflops, session_config
from trainers.run.build import open_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_session_arguments(parser)
    parser.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args()
    config = session_config(args)
    with tempfile.TemporaryDirectory() as run_dir:
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's messages; stdout is the JSON
            session = open_session(config, Path(run_dir) / "run")
            try:
                warmup = session.iterate(sync_timing=True)
                results = [session.iterate(sync_timing=True) for _ in range(args.iterations)]
            finally:
                session.close()
    steps = session.batch_size
    rollout_s = sum(r.rollout_seconds for r in results)
    update_s = sum(r.update_seconds for r in results)
    enc = config.model.encoder
    # a training step is a forward and a backward pass, ~3x the forward's FLOPs
    update_flops = 3 * session.policy.flops_per_sample() * steps * sum(r.update.epochs_run for r in results)
    update_gflops = update_flops / update_s / 1e9
    peak = matmul_peak_gflops(session.device, dtype=session.learner.amp_dtype or torch.float32)  # the update's precision
    emit({
        "bench": "train_throughput", "device": device_name(session.device), "torch": torch.__version__,
        "symbols": list(config.run.symbols), "accounts": session.env.num_envs, "num_steps": args.num_steps,
        "encoder": f"{config.run.encoder_preset} ({enc.n_layers}x{enc.d_model})",
        "update_epochs": config.ppo.update_epochs, "iterations": args.iterations, "compile": config.run.compile,
        "warmup_update_seconds": round(warmup.update_seconds, 3),
        "epochs_run_mean": sum(r.update.epochs_run for r in results) / len(results),
        "rollout_seconds_per_iteration": round(rollout_s / args.iterations, 3),
        "update_seconds_per_iteration": round(update_s / args.iterations, 3),
        "rollout_account_steps_per_s": round(steps * args.iterations / rollout_s),
        "iteration_account_steps_per_s": round(steps * args.iterations / (rollout_s + update_s)),
        "rollout_share": round(rollout_s / (rollout_s + update_s), 3),
        "update_gflops": round(update_gflops, 1), "matmul_peak_gflops": round(peak, 1),
        "update_fraction_of_peak": round(update_gflops / peak, 3),
    }, args.json)


if __name__ == "__main__":
    main()
