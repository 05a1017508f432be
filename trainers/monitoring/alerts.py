"""Collapse alerts: warning signs that a policy is collapsing, checked once per iteration from
host statistics (the training guide's sections 9.8 and 9.11; its incident was a policy that chose
BUY_SMALL 99.88 % of the time).

Alerts (names as in `alerts.halt_on` and TensorBoard `alerts/<name>`):
- action_share: one action above `action_share` of a symbol's policy or executed actions over the
  window. The env's repeat limit (3) caps any non-HOLD action at 3 of 4 executed steps, so among
  executed actions this flags HOLD; a policy stuck on another action shows in its own choices.
- entropy: mean policy entropy below `entropy_min` nats (`entropy_min_late` past mid-run).
- repeat_limit: repeat-limit events per episode above `repeat_per_episode` (window rate x mean
  episode length).
- guard_triggers: more than `guard_triggers` entropy-guard triggers in the last `guard_window`
  account-steps.
- trade_rate: a symbol's voluntary trade rate (fills per step, executed non-hold actions) below
  `trade_rate_min` over the window.
"""
from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple, Sequence

import numpy as np

from configs.alerts import ALERT_NAMES, AlertConfig
from ppo_core import EntropyState, UpdateStats
from trainers.monitoring.rollout_stats import RolloutSummary, SymbolActions

class IterationSignals(NamedTuple):
    """What the alerts read from one iteration (host values)."""

    global_step: int
    """account-steps after this iteration"""
    total_steps: int
    """account-steps of the whole run"""
    actions: SymbolActions
    """this rollout's policy and executed action counts, (S, A) each"""
    entropy: float
    """mean policy entropy of the update (nats)"""
    repeat_limit_events: float
    """actions the repeat limit turned into HOLD during the rollout"""
    episodes: float
    """episodes that finished during the rollout"""
    episode_steps: float
    """their summed lengths"""
    guard_triggers: int
    """entropy-guard triggers since the run started"""


class Alert(NamedTuple):
    name: str
    """one of ALERT_NAMES"""
    text: str
    """short tag for the log line, e.g. `entropy 0.18<0.3`"""


def iteration_signals(rollout: RolloutSummary, update: UpdateStats, entropy: EntropyState, global_step: int,
                      total_steps: int) -> IterationSignals:
    """What the alerts read from one iteration's rollout summary, update and entropy stack."""
    return IterationSignals(
        global_step=global_step, total_steps=total_steps, actions=rollout.actions, entropy=update.steps.entropy,
        repeat_limit_events=rollout.repeat_limit_events, episodes=rollout.episodes,
        episode_steps=rollout.episode_steps, guard_triggers=entropy.guard_triggers)


class CollapseAlerts:
    """Checks the alerts once per iteration; counts how often each was on and for how long in a row.

    `observe` takes one iteration's signals and returns the alerts that are on; `scalars` gives
    `alerts/<name>` (iterations on so far) and `alerts/<name>_active` (0/1) for TensorBoard, and
    `halt_reason` says why the run must stop when an alert of `halt_on` stayed on `halt_after`
    iterations in a row.
    """

    def __init__(self, config: AlertConfig, symbols: Sequence[str], action_names: Sequence[str],
                 hold_actions: Sequence[int]) -> None:
        self.config = config
        self.symbols = list(symbols)
        self.action_names = list(action_names)
        self.trading = np.ones(len(self.action_names), dtype=bool)  # (A,) actions that fill
        self.trading[list(hold_actions)] = False
        self.counts = dict.fromkeys(ALERT_NAMES, 0)
        self.streaks = dict.fromkeys(ALERT_NAMES, 0)
        self.active: list[Alert] = []
        # newest iterations covering action_window account-steps per symbol: (policy (S, A),
        # executed (S, A), repeat-limit events)
        self._window: deque[tuple[np.ndarray, np.ndarray, float]] = deque()
        self._episodes = 0.0
        self._episode_steps = 0.0
        # (global_step, cumulative triggers) back to the first entry at or before the guard window
        self._guard: deque[tuple[int, int]] = deque([(0, 0)])

    def observe(self, signals: IterationSignals) -> list[Alert]:
        """Add one iteration and return the alerts that are on after it."""
        self._remember(signals)
        checks = (self._action_share(), self._entropy(signals), self._repeat_limit(),
                  self._guard_triggers(signals), self._trade_rate())
        self.active = [alert for alert in checks if alert is not None]
        on = {alert.name for alert in self.active}
        for name in ALERT_NAMES:
            self.counts[name] += name in on
            self.streaks[name] = self.streaks[name] + 1 if name in on else 0
        return self.active

    def scalars(self) -> dict[str, float]:
        """`alerts/<name>`: iterations on so far; `alerts/<name>_active`: 1 while on."""
        on = {alert.name for alert in self.active}
        values = {f"alerts/{name}": float(count) for name, count in self.counts.items()}
        values.update({f"alerts/{name}_active": float(name in on) for name in ALERT_NAMES})
        return values

    def halt_reason(self) -> str | None:
        """Why the run must stop now (an alert of halt_on on halt_after iterations in a row), or None."""
        for alert in self.active:
            streak = self.streaks[alert.name]
            if alert.name in self.config.halt_on and streak >= self.config.halt_after:
                return (f"collapse alert {alert.name} on for {streak} iterations in a row: {alert.text}; "
                        "alerts.halt_on stops the run on it")
        return None

    # ---- the checks, on the remembered window --------------------------------------------------
    def _remember(self, signals: IterationSignals) -> None:
        actions = signals.actions
        expected = (len(self.symbols), len(self.action_names))
        if actions.policy.shape != expected or actions.executed.shape != expected:
            raise ValueError(f"action counts must be (symbols, actions) = {expected}, got "
                             f"{actions.policy.shape} and {actions.executed.shape}")
        self._window.append((actions.policy, actions.executed, signals.repeat_limit_events))
        while len(self._window) > 1 and self._steps_per_symbol(skip_oldest=True) >= self.config.action_window:
            self._window.popleft()
        self._episodes += signals.episodes
        self._episode_steps += signals.episode_steps
        self._guard.append((signals.global_step, signals.guard_triggers))
        while len(self._guard) > 1 and self._guard[1][0] <= signals.global_step - self.config.guard_window:
            self._guard.popleft()

    def _steps_per_symbol(self, skip_oldest: bool = False) -> float:
        entries = list(self._window)[1 if skip_oldest else 0:]
        return sum(float(executed.sum()) for _, executed, _ in entries) / len(self.symbols)

    def _window_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Policy and executed action counts over the window, (S, A) each."""
        return (sum(policy for policy, _, _ in self._window),
                sum(executed for _, executed, _ in self._window))

    def _action_share(self) -> Alert | None:
        worst: tuple[float, str, str, str] | None = None  # share, symbol, which mix, action
        crowded = set()
        for mix, counts in zip(("policy", "executed"), self._window_counts()):
            shares = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)  # (S, A)
            for s, a in zip(*np.nonzero(shares > self.config.action_share)):
                crowded.add(self.symbols[s])
                if worst is None or shares[s, a] > worst[0]:
                    worst = (float(shares[s, a]), self.symbols[s], mix, self.action_names[a])
        if worst is None:
            return None
        share, symbol, mix, action = worst
        more = f" (+{len(crowded) - 1} symbols)" if len(crowded) > 1 else ""
        return Alert("action_share",
                     f"{symbol} {mix} {action} {share:.0%}>{self.config.action_share:.0%}{more}")

    def _entropy(self, signals: IterationSignals) -> Alert | None:
        late = signals.global_step > signals.total_steps / 2
        floor = self.config.entropy_min_late if late else self.config.entropy_min
        if signals.entropy >= floor:
            return None
        return Alert("entropy", f"entropy {signals.entropy:.3f}<{floor:g}")

    def _repeat_limit(self) -> Alert | None:
        if self._episodes == 0:
            return None  # no finished episode yet: no episode length to scale by
        steps = self._steps_per_symbol() * len(self.symbols)
        events = sum(event for _, _, event in self._window)
        per_episode = events / max(steps, 1.0) * (self._episode_steps / self._episodes)
        if per_episode <= self.config.repeat_per_episode:
            return None
        return Alert("repeat_limit", f"repeat {per_episode:.0f}/ep>{self.config.repeat_per_episode:g}")

    def _guard_triggers(self, signals: IterationSignals) -> Alert | None:
        triggers = signals.guard_triggers - self._guard[0][1]
        if triggers <= self.config.guard_triggers:
            return None
        return Alert("guard_triggers",
                     f"guard {triggers}/{self.config.guard_window / 1000:g}k>{self.config.guard_triggers}")

    def _trade_rate(self) -> Alert | None:
        executed = self._window_counts()[1]
        rates = executed[:, self.trading].sum(1) / np.maximum(executed.sum(1), 1.0)  # (S,)
        low = np.nonzero(rates < self.config.trade_rate_min)[0]
        if len(low) == 0:
            return None
        worst = low[np.argmin(rates[low])]
        more = f" (+{len(low) - 1} symbols)" if len(low) > 1 else ""
        return Alert("trade_rate",
                     f"{self.symbols[worst]} trades {rates[worst]:.3f}<{self.config.trade_rate_min:g}{more}")

    # ---- resume ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Counters and windows as plain lists (loadable with torch.load(weights_only=True))."""
        return {"counts": dict(self.counts), "streaks": dict(self.streaks),
                "window": [(p.tolist(), e.tolist(), r) for p, e, r in self._window],
                "episodes": self._episodes, "episode_steps": self._episode_steps,
                "guard": list(self._guard)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = {name: int(state["counts"].get(name, 0)) for name in ALERT_NAMES}
        self.streaks = {name: int(state["streaks"].get(name, 0)) for name in ALERT_NAMES}
        self._window = deque((np.asarray(p), np.asarray(e), float(r)) for p, e, r in state["window"])
        self._episodes, self._episode_steps = float(state["episodes"]), float(state["episode_steps"])
        self._guard = deque((int(step), int(triggers)) for step, triggers in state["guard"])
