"""Encoder inference latency per batch size, and achieved GFLOP/s against a measured matmul peak.

    python bench/encoder_latency.py [--batch-sizes 1,4,8,16,32,64,256] [--device auto|cpu|cuda]
                                    [--seconds 4] [--json PATH]

Eval mode under torch.inference_mode, warm-up calls, then timed calls each followed by a device
synchronisation. Prints a rich table to stderr and the results as JSON to stdout (and to --json).
Seed target: p95 < 10 ms at batch 32 on a GPU.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from common import device_name, device_or_exit, emit, matmul_peak_gflops, time_ms
from configs.cli import add_device
from envs import DEFAULT_SPEC
from models import EncoderConfig, FeatureEncoder

TARGET_BATCH, TARGET_P95_MS = 32, 10.0


def run(batch_sizes: list[int], device: torch.device, seconds: float) -> dict:
    config = EncoderConfig(pool="mean")
    torch.manual_seed(0)
    encoder = FeatureEncoder(config, DEFAULT_SPEC.obs_shapes).to(device).eval()
    params = sum(p.numel() for p in encoder.parameters())
    param_mb = sum(p.numel() * p.element_size() for p in encoder.parameters()) / 2**20
    peak = matmul_peak_gflops(device)
    rows = []
    for batch in batch_sizes:
        obs = {k: torch.randn(batch, *s, device=device) for k, s in DEFAULT_SPEC.obs_shapes.items()}
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with torch.inference_mode():
            times = time_ms(lambda: encoder(obs), device, seconds)
        p50, p95, p99 = (float(v) for v in np.percentile(times, [50, 95, 99]))
        gflops = encoder.flops_per_sample() * batch / (p50 * 1e-3) / 1e9
        rows.append({"batch": batch, "reps": len(times), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
                     "per_sample_ms": p50 / batch, "gflops": gflops, "fraction_of_peak": gflops / peak,
                     "cuda_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20
                     if device.type == "cuda" else None})
    return {"bench": "encoder_latency", "device": device_name(device), "torch": torch.__version__,
            "config": asdict(config), "params": params, "param_mb": param_mb,
            "flops_per_sample": encoder.flops_per_sample(), "matmul_peak_gflops": peak,
            "results": rows, "target": verdict(rows, device)}


def verdict(rows: list[dict], device: torch.device) -> dict:
    """Pass/fail against the seed's GPU target; on a CPU the target does not apply."""
    row = next((r for r in rows if r["batch"] == TARGET_BATCH), None)
    target = f"p95 < {TARGET_P95_MS:g} ms at batch {TARGET_BATCH} on GPU"
    if row is None:
        return {"target": target, "status": f"n/a (batch {TARGET_BATCH} not measured)"}
    if device.type != "cuda":
        return {"target": target, "p95_ms": row["p95_ms"],
                "status": f"n/a (target is for GPU; this CPU: p95 {row['p95_ms']:.1f} ms)"}
    status = "pass" if row["p95_ms"] < TARGET_P95_MS else "FAIL"
    return {"target": target, "p95_ms": row["p95_ms"], "status": status}


def print_table(report: dict) -> None:
    table = Table(title=f"FeatureEncoder latency on {report['device']}",
                  caption=f"{report['params']:,} params ({report['param_mb']:.1f} MB), "
                          f"{report['flops_per_sample'] / 1e6:.1f} MFLOP/sample, "
                          f"fp32 matmul peak {report['matmul_peak_gflops']:.0f} GFLOP/s")
    for column in ("batch", "reps", "p50 ms", "p95 ms", "p99 ms", "ms/obs", "GFLOP/s", "%peak", "CUDA MB"):
        table.add_column(column, justify="right")
    for r in report["results"]:
        mem = "-" if r["cuda_peak_mb"] is None else f"{r['cuda_peak_mb']:.0f}"
        table.add_row(str(r["batch"]), str(r["reps"]), f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{r['per_sample_ms']:.3f}", f"{r['gflops']:.1f}",
                      f"{100 * r['fraction_of_peak']:.0f}", mem)
    console = Console(stderr=True)
    console.print(table)
    console.print(f"target ({report['target']['target']}): {report['target']['status']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="1,4,8,16,32,64,256", help="comma-separated batch sizes")
    add_device(parser)
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="timing budget per batch size (at least 10 timed calls regardless)")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    report = run(batch_sizes, device_or_exit(args.device), args.seconds)
    print_table(report)
    emit(report, args.json)


if __name__ == "__main__":
    main()
