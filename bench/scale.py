"""The guide's universe on one device: env construction, rollout memory and account-steps/s at 143
symbols, with the rollout buffer storing bar indices (run.rollout_storage=index) and, where it
fits, whole lookback windows (window, the storage before index).

    python bench/scale.py [--symbols 143] [--envs-per-symbol 8] [--num-steps 128] [--epochs 1]
                          [--storage index,window] [--encoder auto|small|full]
                          [--device auto|cpu|cuda] [--threads 0] [--json PATH]

Each storage runs in a fresh process (so its peak memory is its own) that builds what
`python -m trainers.ppo` builds for `--symbols` synthetic markets (no data files: each symbol
trades a generated market) and times one trainer iteration after a warm-up one. Per storage:
env construction seconds, the buffer's bytes at this size and projected to the seed's 2048
steps, peak process RSS (CPU) or peak CUDA memory allocated, rollout and update account-steps/s
(update: samples of one epoch per second). A storage whose projected buffer would take more than
half of the machine's memory is skipped with the reason.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from common import device_name, emit
from configs.cli import add_device
from configs.train import resolve
from trainers.run.build import open_session

SEED_STEPS = 2048
"""the guide's rollout length per account"""


def measure(args: argparse.Namespace, storage: str) -> dict:
    """One storage's figures, in this process."""
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve(cli={
            "run.symbols": symbols, "run.data_dir": tmp, "run.device": args.device,
            "run.envs_per_symbol": args.envs_per_symbol, "run.num_steps": args.num_steps,
            "run.encoder_preset": args.encoder, "run.torch_threads": args.threads,
            "run.rollout_storage": storage, "run.eval_every": 0, "ppo.update_epochs": args.epochs,
            "ppo.target_kl": float("inf"),  # every epoch runs: the update's figures are per epoch
            "run.total_steps": 1000 * args.num_steps * args.envs_per_symbol * args.symbols,
        })
        with contextlib.redirect_stdout(sys.stderr), warnings_quiet():
            start = time.perf_counter()
            session = open_session(config, Path(tmp) / "run")
            build = time.perf_counter() - start
            try:
                if session.device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(session.device)
                session.iterate(sync_timing=True)  # warm-up
                result = session.iterate(sync_timing=True)
            finally:
                session.close()
    steps, buffer = session.batch_size, session.buffer
    seed_size = buffer.nbytes() / buffer.num_steps * SEED_STEPS
    report = {
        "storage": storage, "device": device_name(session.device), "accounts": session.env.num_envs,
        "session_build_seconds": round(build, 2),
        "buffer_bytes": buffer.nbytes(), "buffer_mb": round(buffer.nbytes() / 2**20, 1),
        "buffer_mb_at_2048_steps": round(seed_size / 2**20, 1),
        "rollout_account_steps_per_s": round(steps / result.rollout_seconds),
        "update_account_steps_per_s": round(steps * result.update.epochs_run / result.update_seconds),
        "iteration_seconds": round(result.rollout_seconds + result.update_seconds, 2),
    }
    if session.device.type == "cuda":
        report["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated(session.device) / 2**20, 1)
    else:  # ru_maxrss is in KiB on Linux
        report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10, 1)
    return report


@contextlib.contextmanager
def warnings_quiet():
    """The trainer warns once per symbol that it trades a synthetic market; that is the point here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def buffer_mb_estimate(args: argparse.Namespace, storage: str) -> float:
    """Buffer megabytes at `--num-steps`, from a 1 x 1 buffer's bytes per account-step."""
    from envs import DEFAULT_SPEC, EnvConfig, VecTradingEnv, synthetic_bars
    from ppo_core import RolloutBuffer
    markets = {"X": synthetic_bars("X", 800)}
    with warnings_quiet():
        env = VecTradingEnv(["X"], 1, EnvConfig(obs_noise=0.0), markets=markets, seed=0)
    compact = env.compact_observations() if storage == "index" else None
    one = RolloutBuffer(1, 1, DEFAULT_SPEC.obs_shapes, "cpu", DEFAULT_SPEC.num_actions, compact=compact)
    return one.nbytes() * args.num_steps * args.envs_per_symbol * args.symbols / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--symbols", type=int, default=143, help="number of synthetic symbols")
    parser.add_argument("--envs-per-symbol", type=int, default=8)
    parser.add_argument("--num-steps", type=int, default=128, help="rollout length (the seed's: 2048)")
    parser.add_argument("--epochs", type=int, default=1, help="update epochs timed")
    parser.add_argument("--storage", default="index,window", help="comma-separated: index, window")
    parser.add_argument("--encoder", choices=["auto", "small", "full"], default="auto")
    add_device(parser)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", choices=["index", "window"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args, args.worker)))
        return
    storages = args.storage.split(",")
    if not storages or set(storages) - {"index", "window"}:
        parser.error(f"--storage: expected index, window or both, got {args.storage!r}")
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    runs = []
    for storage in storages:
        estimate = buffer_mb_estimate(args, storage)
        if estimate > memory_mb / 2:
            runs.append({"storage": storage, "skipped": f"its buffer needs ~{estimate:,.0f} MB, more than "
                                                         f"half of this machine's {memory_mb:,.0f} MB"})
            continue
        worker = [sys.executable, __file__, "--worker", storage, *sys.argv[1:]]
        done = subprocess.run(worker, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            sys.exit(f"{storage}: the measuring process failed (exit code {done.returncode})")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report = {"bench": "scale", "torch": torch.__version__, "symbols": args.symbols,
              "envs_per_symbol": args.envs_per_symbol, "num_steps": args.num_steps, "runs": runs}
    measured = {r["storage"]: r for r in runs if "skipped" not in r}
    if len(measured) == 2:
        key = "cuda_peak_mb" if "cuda_peak_mb" in measured["index"] else "peak_rss_mb"
        report["window_over_index"] = {
            "buffer_bytes": round(measured["window"]["buffer_bytes"] / measured["index"]["buffer_bytes"], 1),
            key: round(measured["window"][key] / measured["index"][key], 2),
            "rollout_account_steps_per_s": round(measured["window"]["rollout_account_steps_per_s"]
                                                 / measured["index"]["rollout_account_steps_per_s"], 2),
            "update_account_steps_per_s": round(measured["window"]["update_account_steps_per_s"]
                                                / measured["index"]["update_account_steps_per_s"], 2)}
    emit(report, args.json)


if __name__ == "__main__":
    main()
