"""Device-side tallies of what the environment reported during one rollout.

`on_step` only adds tensors (no host sync); `summary` does the iteration's single host read and
returns flat `group/name` floats for the console and TensorBoard.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

# Reported per symbol as episodes/<SYMBOL>/<stat> and averaged over symbols as charts/episode_<stat>.
EPISODE_STATS = ("return", "sharpe_per_step", "max_drawdown", "trades", "win_rate", "profit_factor",
                 "voluntary_trade_rate", "unique_actions", "length")


class SymbolActions(NamedTuple):
    """Host counts of one rollout's actions per symbol, (S, A) each (the collapse alerts read them)."""

    policy: np.ndarray
    executed: np.ndarray


class RolloutStats:
    """Accumulates actions, reward components, constraint events and finished-episode statistics.
    After `summary`, `symbol_actions` holds that rollout's per-symbol action counts."""

    def __init__(self, symbols: Sequence[str], envs_per_symbol: int, action_names: Sequence[str],
                 device: torch.device) -> None:
        self.symbols = list(symbols)
        self.action_names = list(action_names)
        self.envs_per_symbol = envs_per_symbol
        self.device = device
        num_actions = len(self.action_names)
        self.policy_actions = torch.zeros(len(self.symbols), num_actions, device=device)  # (S, A)
        self.executed_actions = torch.zeros(len(self.symbols), num_actions, device=device)  # (S, A)
        # account n trades symbol n // E: its (symbol, action) cell of a flattened (S, A) tally
        self._row_offsets = torch.arange(len(self.symbols) * envs_per_symbol, device=device) \
            // envs_per_symbol * num_actions
        self.symbol_actions = SymbolActions(np.zeros((len(self.symbols), num_actions)),
                                            np.zeros((len(self.symbols), num_actions)))
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
        self.episode_sums += rearrange(stats, "k (s e) -> k s e", e=self.envs_per_symbol).sum(-1)
        self.episode_counts += rearrange(ended.float(), "(s e) -> s e", e=self.envs_per_symbol).sum(-1)

    def summary(self) -> dict[str, float]:
        """Flat `group/name` floats. This is the rollout's one host sync point."""
        account_steps = max(self.steps * len(self.symbols) * self.envs_per_symbol, 1)
        packed = torch.cat([
            self.policy_actions.flatten(), self.executed_actions.flatten(), self.events,
            torch.stack(list(self.reward_sums.values())) if self.reward_sums else self.events[:0],
            torch.stack(list(self.weighted_abs_sums.values())) if self.reward_sums else self.events[:0],
            self.episode_sums.flatten(), self.episode_counts,
        ]).tolist()
        values: dict[str, float] = {}
        shape = tuple(self.policy_actions.shape)
        cells = shape[0] * shape[1]
        self.symbol_actions = SymbolActions(np.reshape(packed[:cells], shape),
                                            np.reshape(packed[cells:2 * cells], shape))
        policy, executed = self.symbol_actions.policy.sum(0), self.symbol_actions.executed.sum(0)  # (A,)
        cursor = 2 * cells
        for name, p, e in zip(self.action_names, policy, executed):
            values[f"actions/policy_{name}"] = float(p) / account_steps
            values[f"actions/executed_{name}"] = float(e) / account_steps
        values["charts/mask_violation_rate"] = packed[cursor] / account_steps
        values["charts/repeat_limit_events"] = packed[cursor + 1]
        cursor += 2
        for name in self.reward_sums:
            values[f"reward/{name}"] = packed[cursor] / account_steps
            cursor += 1
        count = len(self.reward_sums)
        values.update(reward_shares(dict(zip(self.reward_sums, packed[cursor:cursor + count]))))
        cursor += count
        num_symbols = len(self.symbols)
        sums = packed[cursor:cursor + len(EPISODE_STATS) * num_symbols]
        counts = packed[cursor + len(EPISODE_STATS) * num_symbols:]
        values["charts/episodes"] = float(sum(counts))
        for k, stat in enumerate(EPISODE_STATS):
            per_symbol = sums[k * num_symbols:(k + 1) * num_symbols]
            for symbol, total, count in zip(self.symbols, per_symbol, counts):
                if count > 0:
                    values[f"episodes/{symbol}/{stat}"] = total / count
            if sum(counts) > 0:
                values[f"charts/episode_{stat}"] = sum(per_symbol) / sum(counts)
        return values


def reward_shares(weighted_abs_sums: dict[str, float]) -> dict[str, float]:
    """`reward_share/<component>`: each component's share of the summed absolute weighted reward,
    sum over steps and accounts of |weight x value|; the shares add up to 1 (all 0 if no reward)."""
    total = sum(weighted_abs_sums.values())
    return {f"reward_share/{name}": (value / total if total > 0 else 0.0)
            for name, value in weighted_abs_sums.items()}
