"""Thresholds of the collapse alerts (trainers' monitoring reads them; what each alert means is
documented there and in docs/monitoring.md)."""
from __future__ import annotations

from dataclasses import dataclass

ALERT_NAMES = ("action_share", "entropy", "repeat_limit", "guard_triggers", "trade_rate")


@dataclass
class AlertConfig:
    action_share: float = 0.8
    """share of one action in a symbol's policy or executed actions above which it alerts (guide);
    among executed actions only HOLD can reach it, as the repeat limit caps any other at 75 %"""
    action_window: int = 2048
    """account-steps per symbol (the latest iterations covering at least this many) over which action
    shares, trade rates and repeat-limit events are counted"""
    entropy_min: float = 0.3
    """mean policy entropy (nats) below which it alerts (guide); a decided policy may pass below
    the guide's floors in long runs (entropy.adaptive.target is 0.1), so they only warn"""
    entropy_min_late: float = 0.2
    """the entropy floor past half of the run's account-steps (guide)"""
    repeat_per_episode: float = 50.0
    """repeat-limit events per episode above which it alerts (guide; the default run on SPX,GOOGL
    has ~30 at 200k steps)"""
    guard_triggers: int = 2
    """entropy-guard triggers within guard_window above which it alerts (guide); the guard's
    cooldown_steps of 6000 allow at most 2, so this fires only with a shorter cooldown"""
    guard_window: int = 10_000
    """account-steps over which guard triggers are counted"""
    trade_rate_min: float = 0.01
    """fills per step below which a symbol counts as no longer trading (< 1 trade per 100 bars; not
    in the guide; the default run trades ~0.5 per step)"""
    halt_on: tuple[str, ...] = ()
    """alerts that stop the run, with a checkpoint saved and exit code 1 (names as above, e.g.
    ["entropy", "trade_rate"]; empty = alerts only warn)"""
    halt_after: int = 3
    """consecutive iterations an alert of halt_on must stay on before the run stops"""

    def __post_init__(self) -> None:
        for name in ("action_share", "trade_rate_min"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be a share in [0, 1], got {getattr(self, name)}")
        for name in ("entropy_min", "entropy_min_late", "repeat_per_episode", "guard_triggers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("action_window", "guard_window", "halt_after"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        unknown = [name for name in self.halt_on if name not in ALERT_NAMES]
        if unknown:
            raise ValueError(f"halt_on: unknown alert {unknown}; the alerts are {', '.join(ALERT_NAMES)}")
