"""Hyperparameter schedules driven by training progress in [0, 1]."""
from __future__ import annotations

SCHEDULES = ("constant", "linear")


def scheduled(initial: float, kind: str, progress: float) -> float:
    """`initial` for "constant"; `initial * (1 - progress)` for "linear" (CleanRL's lr annealing:
    the first update gets `initial`, the value reaches 0 at progress 1)."""
    if not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress: must be in [0, 1], got {progress}")
    if kind == "constant":
        return initial
    if kind == "linear":
        return initial * (1.0 - progress)
    raise ValueError(f"schedule kind: expected one of {SCHEDULES}, got {kind!r}")
