"""The entropy-coefficient stack: a schedule, an adaptive multiplier and a collapse guard.

coefficient(step) = schedule(step) x adaptive multiplier x guard multiplier, raised to the
adaptive floor when the adaptive piece is enabled. Each piece is optional and reads the mean
policy entropy (nats) that the trainer passes to `observe` once per iteration.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple


class EntropyCollapseError(RuntimeError):
    """The guard was at its maximum boost and the policy entropy still did not recover."""


@dataclass
class EntropyScheduleConfig:
    kind: Literal["constant", "hold_then_linear"] = "hold_then_linear"
    """constant = `initial` throughout; hold_then_linear = hold, then linear decay to `final`"""
    initial: float = 0.02
    """coefficient at the start (and throughout for constant) (guide: 0.08; with it the policy
    stayed near uniform at 300k steps)"""
    final: float = 0.005
    """coefficient once the decay is over (guide: 0.03)"""
    hold_steps: int = 10_000
    """env steps at `initial` before the decay starts"""
    decay_steps: int = 40_000
    """env steps of the linear decay from `initial` to `final`"""
    floor: float = 0.005
    """lower bound of the hold_then_linear schedule (guide: 0.03)"""

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, ("constant", "hold_then_linear"))
        _check_min(self, ("initial", "final", "floor", "hold_steps", "decay_steps"), 0)


@dataclass
class AdaptiveEntropyConfig:
    enabled: bool = True
    """scale the scheduled coefficient up while mean entropy is below `target`"""
    target: float = 0.1
    """mean policy entropy (nats) the multiplier steers toward (guide: 0.55; a decided trading
    policy sits well below it, and the guide's target kept the policy near uniform)"""
    scale: float = 0.35
    """multiplier gain per observation, per unit of relative shortfall (target - H) / target"""
    warmup_steps: int = 4_000
    """env steps before the multiplier starts moving"""
    decay: float = 0.12
    """fraction of the excess over 1 removed per observation at or above target"""
    max_multiplier: float = 3.0
    """upper bound of the multiplier (its lower bound is 1)"""
    floor: float = 0.005
    """lower bound of the final coefficient while the adaptive piece is enabled (guide: 0.02)"""

    def __post_init__(self) -> None:
        _check_min(self, ("target", "scale", "warmup_steps", "floor"), 0)
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay: must be in [0, 1], got {self.decay}")
        if self.max_multiplier < 1.0:
            raise ValueError(f"max_multiplier: must be >= 1, got {self.max_multiplier}")


@dataclass
class EntropyGuardConfig:
    enabled: bool = True
    """boost the coefficient when mean entropy collapses below `threshold`"""
    threshold: float = 0.05
    """mean policy entropy (nats) below which the guard triggers (guide: 0.22; it reads the mean
    over all groups of envs, and pushed every group back up as soon as one of them had learned)"""
    warmup_steps: int = 4_000
    """env steps before the guard may trigger"""
    boost: float = 1.7
    """factor the guard multiplier grows by per trigger"""
    max_multiplier: float = 3.0
    """upper bound of the guard multiplier"""
    cooldown_steps: int = 6_000
    """env steps after a trigger during which the guard neither triggers nor relaxes"""
    patience: int = 2
    """consecutive triggers at the maximum multiplier tolerated before halting"""
    halt: bool = False
    """raise EntropyCollapseError when patience runs out (else keep training at the maximum)
    (guide: halt; a boost that fails is logged, the run keeps its checkpoints)"""

    def __post_init__(self) -> None:
        _check_min(self, ("threshold", "warmup_steps", "cooldown_steps"), 0)
        if self.boost <= 1.0:
            raise ValueError(f"boost: must be > 1, got {self.boost}")
        if self.max_multiplier < 1.0:
            raise ValueError(f"max_multiplier: must be >= 1, got {self.max_multiplier}")
        if self.patience < 1:
            raise ValueError(f"patience: must be >= 1, got {self.patience}")


@dataclass
class EntropyConfig:
    """The entropy stack. The defaults are the trading trainer's: the guide's stack (its values
    under "guide:", configs/seed_stage5.toml; docs/design.md, "The seed and the training guide") at
    a lower pressure, measured with bench/learning.py."""

    schedule: EntropyScheduleConfig = field(default_factory=EntropyScheduleConfig)
    """base coefficient over training"""
    adaptive: AdaptiveEntropyConfig = field(default_factory=AdaptiveEntropyConfig)
    """multiplier steering mean entropy toward a target"""
    guard: EntropyGuardConfig = field(default_factory=EntropyGuardConfig)
    """emergency boost (and optional halt) on entropy collapse"""


class EntropyState(NamedTuple):
    """The entropy stack at one step (host values, logged as `entropy/<field>`)."""

    coefficient: float
    """the entropy bonus coefficient in the loss: schedule x adaptive x guard multipliers"""
    schedule: float
    adaptive_multiplier: float
    guard_multiplier: float
    guard_triggers: int
    """guard triggers since the run started"""
    guard_strikes: int
    guard_cooldown_remaining: int
    """account-steps until the guard may boost again"""

    def scalars(self) -> dict[str, float]:
        """`entropy/<field>` floats for TensorBoard."""
        return {f"entropy/{name}": float(value) for name, value in zip(self._fields, self)}


class EntropyController:
    """Entropy coefficient per env step, updated from one observed mean entropy per iteration.

    Adaptive rule, after its warm-up, per observation of mean entropy H:
      H < target:  m <- min(m + scale * (target - H) / target, max_multiplier)
      H >= target: m <- 1 + (m - 1) * (1 - decay)
    Guard rule, after its warm-up and outside cooldown, per observation:
      H < threshold: a trigger. If g is already at max_multiplier the trigger is a strike;
                     `patience` consecutive strikes with halt on raise EntropyCollapseError.
                     g <- min(g * boost, max_multiplier); cooldown starts.
      H >= threshold: strikes reset; g <- max(g / boost, 1) (one step back per observation).

    Pass an EntropyConfig, or the three piece configs; a piece given as None is disabled
    (the schedule then defaults to EntropyScheduleConfig()).
    """

    def __init__(self, schedule: EntropyScheduleConfig | EntropyConfig | None = None,
                 adaptive: AdaptiveEntropyConfig | None = None,
                 guard: EntropyGuardConfig | None = None) -> None:
        if isinstance(schedule, EntropyConfig):
            schedule, adaptive, guard = schedule.schedule, schedule.adaptive, schedule.guard
        self.schedule_cfg = schedule or EntropyScheduleConfig()
        self.adaptive_cfg = adaptive or AdaptiveEntropyConfig(enabled=False)
        self.guard_cfg = guard or EntropyGuardConfig(enabled=False)
        self.adaptive_multiplier = 1.0
        self.guard_multiplier = 1.0
        self.guard_triggers = 0
        self.guard_strikes = 0
        self.cooldown_until = 0
        self.last_step = 0
        self.last_entropy = float("nan")

    def scheduled(self, global_step: int) -> float:
        """The schedule's base coefficient at `global_step` (env steps)."""
        cfg = self.schedule_cfg
        if cfg.kind == "constant":
            return cfg.initial
        if global_step <= cfg.hold_steps:
            value = cfg.initial
        elif cfg.decay_steps == 0 or global_step >= cfg.hold_steps + cfg.decay_steps:
            value = cfg.final
        else:
            frac = (global_step - cfg.hold_steps) / cfg.decay_steps
            value = cfg.initial + frac * (cfg.final - cfg.initial)
        return max(value, cfg.floor)

    def coefficient(self, global_step: int) -> float:
        """The entropy coefficient to use for the update at `global_step`."""
        coef = self.scheduled(global_step) * self.adaptive_multiplier * self.guard_multiplier
        return max(coef, self.adaptive_cfg.floor) if self.adaptive_cfg.enabled else coef

    def observe(self, global_step: int, mean_entropy: float) -> None:
        """Update the multipliers from this iteration's mean policy entropy (a host float)."""
        self.last_step, self.last_entropy = global_step, mean_entropy
        self._adapt(global_step, mean_entropy)
        self._guard(global_step, mean_entropy)

    def _adapt(self, step: int, entropy: float) -> None:
        cfg = self.adaptive_cfg
        if not cfg.enabled or step < cfg.warmup_steps:
            return
        if entropy < cfg.target:
            shortfall = (cfg.target - entropy) / cfg.target if cfg.target > 0 else 0.0
            self.adaptive_multiplier = min(self.adaptive_multiplier + cfg.scale * shortfall,
                                           cfg.max_multiplier)
        else:
            self.adaptive_multiplier = 1.0 + (self.adaptive_multiplier - 1.0) * (1.0 - cfg.decay)

    def _guard(self, step: int, entropy: float) -> None:
        cfg = self.guard_cfg
        if not cfg.enabled or step < cfg.warmup_steps or step < self.cooldown_until:
            return
        if entropy >= cfg.threshold:
            self.guard_strikes = 0
            self.guard_multiplier = max(self.guard_multiplier / cfg.boost, 1.0)
            return
        self.guard_triggers += 1
        if self.guard_multiplier >= cfg.max_multiplier:
            self.guard_strikes += 1
            if cfg.halt and self.guard_strikes >= cfg.patience:
                raise EntropyCollapseError(
                    f"entropy collapse at step {step}: mean policy entropy {entropy:.4f} is below the "
                    f"guard threshold {cfg.threshold} after {self.guard_strikes} consecutive triggers at "
                    f"the maximum multiplier x{cfg.max_multiplier:g}; raise the entropy schedule, "
                    "check the action masks, or set entropy.guard.halt = false to continue")
        self.guard_multiplier = min(self.guard_multiplier * cfg.boost, cfg.max_multiplier)
        self.cooldown_until = step + cfg.cooldown_steps

    def state(self) -> EntropyState:
        """The stack's values at the last observed step, as host floats for logging."""
        step = self.last_step
        return EntropyState(
            coefficient=self.coefficient(step), schedule=self.scheduled(step),
            adaptive_multiplier=self.adaptive_multiplier, guard_multiplier=self.guard_multiplier,
            guard_triggers=self.guard_triggers, guard_strikes=self.guard_strikes,
            guard_cooldown_remaining=max(self.cooldown_until - step, 0))

    def state_dict(self) -> dict[str, float | int]:
        """Mutable state for checkpoints (the configs travel with the run config)."""
        return {"adaptive_multiplier": self.adaptive_multiplier, "guard_multiplier": self.guard_multiplier,
                "guard_triggers": self.guard_triggers, "guard_strikes": self.guard_strikes,
                "cooldown_until": self.cooldown_until, "last_step": self.last_step,
                "last_entropy": self.last_entropy}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        missing = set(self.state_dict()) - set(state)
        if missing:
            raise KeyError(f"entropy controller state lacks {sorted(missing)}")
        self.adaptive_multiplier = float(state["adaptive_multiplier"])
        self.guard_multiplier = float(state["guard_multiplier"])
        self.guard_triggers = int(state["guard_triggers"])
        self.guard_strikes = int(state["guard_strikes"])
        self.cooldown_until = int(state["cooldown_until"])
        self.last_step = int(state["last_step"])
        self.last_entropy = float(state["last_entropy"])


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: must be one of {allowed}, got {value!r}")


def _check_min(config: object, names: tuple[str, ...], low: float) -> None:
    for name in names:
        if getattr(config, name) < low:
            raise ValueError(f"{name}: must be >= {low}, got {getattr(config, name)}")
