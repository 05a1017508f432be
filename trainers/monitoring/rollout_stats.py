"""Device-side tallies of what the environment reported during one rollout.

`on_step` only adds tensors (no host sync); `summary` does the iteration's single host read and
returns a RolloutSummary, which the alerts and the console read by field and which names its own
TensorBoard scalars.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor

from envs import AccountLayout

# Reported per symbol as episodes/<SYMBOL>/<stat> and averaged over symbols as charts/episode_<stat>.
EPISODE_STATS = ("return", "sharpe_per_step", "max_drawdown", "trades", "win_rate", "profit_factor",
                 "voluntary_trade_rate", "unique_actions", "length")


class SymbolActions(NamedTuple):
    """Host counts of one rollout's actions per symbol, (S, A) each (the collapse alerts read them)."""

    policy: np.ndarray
    executed: np.ndarray


class RolloutStats:
    """Accumulates actions, reward components, constraint events and finished-episode statistics
    on the device; `summary` reads them to the host once per rollout."""

    def __init__(self, symbols: Sequence[str], envs_per_symbol: int, action_names: Sequence[str],
                 device: torch.device) -> None:
        self.symbols = list(symbols)
        self.action_names = list(action_names)
        self.device = device
        num_actions = len(self.action_names)
        self.policy_actions = torch.zeros(len(self.symbols), num_actions, device=device)  # (S, A)
        self.executed_actions = torch.zeros(len(self.symbols), num_actions, device=device)  # (S, A)
        self.layout = AccountLayout(len(self.symbols), envs_per_symbol)
        # account n's (symbol, action) cell of a flattened (S, A) tally starts at its symbol's row
        self._row_offsets = self.layout.symbol_of(device) * num_actions
        self.events = torch.zeros(2, device=device)  # mask violations, repeat-limit holds
        self.reward_sums: dict[str, Tensor] = {}
        self.weighted_abs_sums: dict[str, Tensor] = {}
        self.episode_sums = torch.zeros(len(EPISODE_STATS), len(self.symbols), device=device)
        self.episode_counts = torch.zeros(len(self.symbols), device=device)
        self.steps = 0

    def reset(self) -> None:
        """Zero every tally in place (called at the start of each rollout)."""
        for tally in (self.policy_actions, self.executed_actions, self.events, self.episode_sums,
                      self.episode_counts, *self.reward_sums.values(), *self.weighted_abs_sums.values()):
            tally.zero_()
        self.steps = 0

    def on_step(self, step: int, info: dict[str, Any], data: Any = None) -> None:
        """Add one env step's info (the collector's hook): actions, reward components and episode
        stats, each (N,)."""
        self.steps += 1
        ones = torch.ones_like(info["policy_action"], dtype=torch.float32)
        self.policy_actions.view(-1).index_add_(0, self._row_offsets + info["policy_action"], ones)
        self.executed_actions.view(-1).index_add_(0, self._row_offsets + info["executed_action"], ones)
        self.events[0] += info["mask_violation"].sum()
        self.events[1] += info["repeat_limited"].sum()
        for name, value in info["reward_components"].items():
            if name not in self.reward_sums:
                self.reward_sums[name] = torch.zeros((), device=self.device)
                self.weighted_abs_sums[name] = torch.zeros((), device=self.device)
            self.reward_sums[name] += value.sum()
            self.weighted_abs_sums[name] += info["weighted_reward_components"][name].abs().sum()
        ended = info["_episode"]
        stats = torch.stack([info["episode"][key].float() for key in EPISODE_STATS])  # (K, N)
        stats = torch.where(ended, torch.nan_to_num(stats, posinf=0.0, neginf=0.0), 0.0)
        self.episode_sums += self.layout.by_symbol(stats.T).sum(1).T  # (K, S)
        self.episode_counts += self.layout.by_symbol(ended.float()).sum(1)

    def summary(self) -> RolloutSummary:
        """The rollout's figures on the host. This is the rollout's one host sync point."""
        account_steps = max(self.steps * self.layout.num_accounts, 1)
        packed = torch.cat([
            self.policy_actions.flatten(), self.executed_actions.flatten(), self.events,
            torch.stack(list(self.reward_sums.values())) if self.reward_sums else self.events[:0],
            torch.stack(list(self.weighted_abs_sums.values())) if self.reward_sums else self.events[:0],
            self.episode_sums.flatten(), self.episode_counts,
        ]).tolist()
        shape = tuple(self.policy_actions.shape)
        cells = shape[0] * shape[1]
        actions = SymbolActions(np.reshape(packed[:cells], shape), np.reshape(packed[cells:2 * cells], shape))
        cursor = 2 * cells
        mask_violations, repeat_limit_events = packed[cursor:cursor + 2]
        cursor += 2
        count = len(self.reward_sums)
        reward_means = {name: value / account_steps
                        for name, value in zip(self.reward_sums, packed[cursor:cursor + count])}
        abs_sums = dict(zip(self.reward_sums, packed[cursor + count:cursor + 2 * count]))
        cursor += 2 * count
        num_symbols = len(self.symbols)
        sums = np.reshape(packed[cursor:cursor + len(EPISODE_STATS) * num_symbols], (len(EPISODE_STATS), num_symbols))
        counts = np.asarray(packed[cursor + len(EPISODE_STATS) * num_symbols:])  # (S,)
        episode_means = ({stat: float(sums[k].sum() / counts.sum()) for k, stat in enumerate(EPISODE_STATS)}
                         if counts.sum() > 0 else {})
        symbol_episode_means = {symbol: {stat: float(sums[k, s] / counts[s]) for k, stat in enumerate(EPISODE_STATS)}
                                for s, symbol in enumerate(self.symbols) if counts[s] > 0}
        return RolloutSummary(
            actions=actions, action_names=tuple(self.action_names), account_steps=account_steps,
            mask_violation_rate=mask_violations / account_steps, repeat_limit_events=repeat_limit_events,
            reward_means=reward_means, reward_shares=reward_shares(abs_sums), episodes=float(counts.sum()),
            episode_means=episode_means, symbol_episode_means=symbol_episode_means)


@dataclass(frozen=True)
class RolloutSummary:
    """One rollout's figures on the host, from RolloutStats.summary (TensorBoard names in `scalars`)."""

    actions: SymbolActions
    """(S, A) policy and executed action counts per symbol"""
    action_names: tuple[str, ...]
    account_steps: int
    """T x N: the steps every share and mean is taken over"""
    mask_violation_rate: float
    """share of account-steps whose policy action was masked (0 unless masking is broken)"""
    repeat_limit_events: float
    """steps the repeat limit turned an action into HOLD"""
    reward_means: dict[str, float]
    """reward component -> its mean weighted value per account-step"""
    reward_shares: dict[str, float]
    """reward component -> its share of the summed absolute weighted reward (they add up to 1)"""
    episodes: float
    """episodes that finished during the rollout"""
    episode_means: dict[str, float]
    """EPISODE_STATS -> mean over the finished episodes of every symbol (empty when none finished)"""
    symbol_episode_means: dict[str, dict[str, float]]
    """symbol -> EPISODE_STATS -> mean over its finished episodes (symbols with none are absent)"""

    def policy_share(self) -> dict[str, float]:
        """action name -> share of account-steps the policy chose it"""
        return dict(zip(self.action_names, (self.actions.policy.sum(0) / self.account_steps).tolist()))

    def executed_share(self) -> dict[str, float]:
        """action name -> share of account-steps it was executed"""
        return dict(zip(self.action_names, (self.actions.executed.sum(0) / self.account_steps).tolist()))

    @property
    def episode_steps(self) -> float:
        """summed length of the finished episodes"""
        return self.episode_means["length"] * self.episodes if self.episodes else 0.0

    def scalars(self) -> dict[str, float]:
        """`actions/*`, `charts/*`, `reward/*`, `reward_share/*` and `episodes/<SYMBOL>/*` floats."""
        values = {f"actions/policy_{name}": share for name, share in self.policy_share().items()}
        values.update({f"actions/executed_{name}": share for name, share in self.executed_share().items()})
        values["charts/mask_violation_rate"] = self.mask_violation_rate
        values["charts/repeat_limit_events"] = self.repeat_limit_events
        values.update({f"reward/{name}": value for name, value in self.reward_means.items()})
        values.update({f"reward_share/{name}": value for name, value in self.reward_shares.items()})
        values["charts/episodes"] = self.episodes
        for symbol, stats in self.symbol_episode_means.items():
            values.update({f"episodes/{symbol}/{stat}": value for stat, value in stats.items()})
        values.update({f"charts/episode_{stat}": value for stat, value in self.episode_means.items()})
        return values


def reward_shares(weighted_abs_sums: dict[str, float]) -> dict[str, float]:
    """Each component's share of the summed absolute weighted reward, sum over steps and accounts of
    |weight x value|; the shares add up to 1 (all 0 if no reward)."""
    total = sum(weighted_abs_sums.values())
    return {name: (value / total if total > 0 else 0.0) for name, value in weighted_abs_sums.items()}
