"""Helpers every bench shares: device choice, device sync, timing, and the JSON report.

`bench/` is not a package: scripts run as `python bench/<name>.py`, which puts this folder on
sys.path; the project's packages come from the editable install."""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import ppo_core
from configs.cli import add_device, device_or_auto
from configs.train import TrainConfig, resolve
from ppo_core import synchronize as sync


def device_or_exit(name: str | None) -> torch.device:
    """ppo_core.resolve_device of --device (None: auto), with its error as the bench's exit message."""
    try:
        return ppo_core.resolve_device(device_or_auto(name))
    except ValueError as err:
        sys.exit(f"--{err}")


def time_ms(fn: Callable[[], object], device: torch.device, seconds: float, warmup: int = 3,
            min_reps: int = 10, max_reps: int = 500) -> list[float]:
    """Wall-clock ms of each call: `warmup` untimed calls, then at least `min_reps` timed calls and
    more until `seconds` have passed (at most `max_reps`). Every call ends with a device sync."""
    for _ in range(warmup):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def emit(report: dict, json_path: Path | None) -> None:
    """Print the report as JSON on stdout, and write it to `json_path` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if json_path:
        json_path.write_text(text + "\n")


def matmul_peak_gflops(device: torch.device, seconds: float = 1.0, dtype: torch.dtype = torch.float32) -> float:
    """GEMM throughput of this device right now in `dtype` (a large square matmul)."""
    n = 4096 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    times = time_ms(lambda: a @ b, device, seconds, warmup=2, min_reps=5)
    return 2 * n**3 / (float(np.median(times)) * 1e-3) / 1e9


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the benches that build a trainer session (train_throughput, profile_update)."""
    parser.add_argument("--symbols", default="SPX,GOOGL")
    parser.add_argument("--envs-per-symbol", type=int, default=16)
    parser.add_argument("--num-steps", type=int, default=128)
    parser.add_argument("--encoder", choices=["auto", "small", "full"], default="auto")
    add_device(parser)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--compile", action="store_true", help="run.compile: torch.compile the update's forward")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1] / "data"))
    parser.add_argument("--json", type=Path)


def session_config(args: argparse.Namespace, overrides: list[str] | None = None,
                   **cli: object) -> TrainConfig:
    """The trainer's config for `add_session_arguments`' flags, `overrides` (KEY=VALUE) and `cli`
    (dotted key -> value). The schedules see a run long enough that a measured iteration is not its end."""
    symbols = args.symbols.split(",")
    return resolve(overrides=overrides or [], cli={
        "run.symbols": symbols, "run.data_dir": args.data_dir, "run.device": args.device,
        "run.envs_per_symbol": args.envs_per_symbol, "run.num_steps": args.num_steps,
        "run.encoder_preset": args.encoder, "run.torch_threads": args.threads, "run.compile": args.compile,
        "run.total_steps": 1000 * args.num_steps * args.envs_per_symbol * len(symbols), **cli})
