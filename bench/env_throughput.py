"""VecTradingEnv throughput: account-steps per second at several account counts.

    python bench/env_throughput.py [--accounts 64,1024,4096,16384] [--symbols SPX,GOOGL]
                                   [--device auto|cpu|cuda] [--seconds 3] [--threads 0] [--json PATH]

Accounts are split evenly over the symbols (N = S x E). Each step takes a uniformly random valid
action per account (drawn on the device from the env's own mask), so fills, masks, rewards and
auto-resets are all exercised. Warm-up steps first, then timed steps until --seconds have passed,
with a device synchronisation before the clock stops. Prints JSON to stdout (and to --json).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch

from common import device_or_exit, emit, sync
from configs.cli import add_device
from envs import EnvConfig, VecTradingEnv, load_market


def measure(env: VecTradingEnv, seconds: float, warmup: int = 10) -> dict[str, float]:
    """Step with random valid actions; returns steps, seconds, ms per step and account-steps/s."""
    generator = torch.Generator(device=env.device).manual_seed(0)
    env.reset(seed=0)

    def one_step() -> None:
        noise = torch.rand(env.num_envs, env.trading_spec.num_actions, generator=generator, device=env.device)
        env.step((noise * env.action_masks()).argmax(1))  # uniform over valid actions; hold always is

    for _ in range(warmup):
        one_step()
    sync(env.device)
    steps, start = 0, time.perf_counter()
    while steps < 5 or time.perf_counter() - start < seconds:
        for _ in range(5):  # check the clock every few steps so the loop itself stays cheap
            one_step()
        steps += 5
        if env.device.type == "cuda" and time.perf_counter() - start >= seconds:
            sync(env.device)  # the GPU may still be working through queued steps
    sync(env.device)
    elapsed = time.perf_counter() - start
    return {"accounts": env.num_envs, "steps": steps, "seconds": round(elapsed, 3),
            "ms_per_step": round(1e3 * elapsed / steps, 3),
            "account_steps_per_s": round(env.num_envs * steps / elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", default="64,1024,4096,16384", help="comma-separated N values")
    parser.add_argument("--symbols", default="SPX,GOOGL", help="files in --data-dir, else synthetic")
    parser.add_argument("--data-dir", default="data")
    add_device(parser)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_or_exit(args.device)
    symbols = args.symbols.split(",")
    markets = load_market(symbols, args.data_dir)
    results = []
    for accounts in (int(n) for n in args.accounts.split(",")):
        per_symbol = max(accounts // len(symbols), 1)
        env = VecTradingEnv(symbols, per_symbol, EnvConfig(obs_noise=0.0), device, markets=markets, seed=0)
        results.append(measure(env, args.seconds))
        print(f"N={env.num_envs}: {results[-1]['account_steps_per_s']:,} account-steps/s", file=sys.stderr)
    report = {
        "bench": "env_throughput", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "symbols": symbols,
        "results": results,
    }
    emit(report, args.json)


if __name__ == "__main__":
    main()
