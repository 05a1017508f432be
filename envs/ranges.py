"""The range check every config dataclass of the env uses: a ValueError whose message starts with the
field name, so the config loader can prefix it with the dotted key (`env.reward.pnl: must be ...`)."""
from __future__ import annotations

import math


def check_range(obj: object, name: str, low: float, high: float = math.inf,
                 low_open: bool = False) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: must be in {bracket}{low}, {high}], got {value!r}")
