"""Device choice, shared by the trainer, the evaluator and every bench."""
from __future__ import annotations

import os
import time

import torch


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when torch sees a GPU, else CPU; "cuda" without a GPU is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {name!r} requested but torch sees no CUDA device")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU), before reading a wall clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (x86 AVX512-BF16 or AMX tiles). Without it a
    bf16 matmul is emulated and slower than fp32."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def auto_amp(device: torch.device) -> str:
    """What `amp = "auto"` means on `device`: fp16 (with a GradScaler) on CUDA, bf16 on a CPU with
    native bf16, off elsewhere. docs/results.md ("The update's speed") has the measurements."""
    if device.type == "cuda":
        return "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "off"


def busy_cores(interval: float = 0.1) -> float:
    """Cores busy with other work right now: the non-idle share of all CPUs' time in /proc/stat over
    `interval` seconds (this process sleeps meanwhile), times the CPU count. Where /proc/stat is
    missing, the 1-minute load average (which lags: it still counts a job that just ended)."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]  # cpu user nice system idle iowait ...
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)
    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    elapsed = total1 - total0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / elapsed) if elapsed > 0 else 0.0


def cpu_threads(requested: int = 0, processes: int = 1) -> int:
    """Torch CPU threads for one of `processes` CPU-bound processes starting together: `requested`
    when > 0; else OMP_NUM_THREADS when the environment sets it (torchrun sets 1 for several
    processes on a machine); else the cores this process may run on less those busy with other
    work right now (`busy_cores`), shared among the `processes`, at least 1. OpenMP threads spin on
    cores another job holds: evaluate beside two jobs on 2 cores took over 20 minutes with 2
    threads, 25 s with 1."""
    if requested > 0:
        return requested
    launcher = os.environ.get("OMP_NUM_THREADS", "")
    if launcher.isdigit() and int(launcher) > 0:
        return int(launcher)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    free = max(1, round(cores - busy_cores()))
    return max(1, min(free, cores) // max(1, processes))


def set_cpu_threads(requested: int = 0, processes: int = 1) -> int:
    """torch.set_num_threads(cpu_threads(requested, processes)); returns the count."""
    threads = cpu_threads(requested, processes)
    torch.set_num_threads(threads)
    return threads
