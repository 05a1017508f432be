"""The phases of one VecTradingEnv step, in the order `VecTradingEnv.step` runs them:

decide (mask and repeat limit turn the policy's action into the executed one) -> fill at the next
bar's open (`accounts.fill_orders`) -> mark_to_market at its close -> push_rings (rolling-return
and diversity windows) -> score (reward components) -> commit (the new account state) ->
episode_ends -> step_info. Every phase is a fixed set of tensor ops over all N accounts: no host
sync, no Python branch on tensor values.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from envs.accounts import Accounts, Fill, rolling_ratios
from envs.actions import ActionTensors
from envs.config import EnvConfig
from envs.rewards import StepOutcome, components, weighted_sum


class Decision(NamedTuple):
    """What each account does this step; all (N,)."""

    policy_action: Tensor
    """long, what the policy sent"""
    valid: Tensor
    """bool: the mask allowed the policy's action"""
    run_length: Tensor
    """consecutive repeats of the policy's action, this one included"""
    repeat_counted: Tensor
    """bool: the repeat limit applies to the policy's action (not a hold)"""
    repeat_limited: Tensor
    """bool: the repeat limit turned it into the hold action"""
    executed: Tensor
    """long, what the env executes: the policy's action, or hold when invalid or repeat-limited"""
    traded: Tensor
    """bool: a non-hold action is executed"""


class Marks(NamedTuple):
    """The accounts after the fill, marked at the fill bar's close; all (N,)."""

    bar: Tensor
    """long, the bar filled at (open) and marked at (close): t + 1"""
    equity: Tensor
    step_return: Tensor
    peak: Tensor
    drawdown: Tensor
    holding: Tensor
    hold_time: Tensor
    exposure: Tensor
    steps: Tensor
    """episode steps, this one included"""


def decide(acc: Accounts, policy_action: Tensor, mask: Tensor, table: ActionTensors, hold_id: int,
           max_repeats: int) -> Decision:
    """Policy actions (N,) long and the current mask (N, A) bool -> the step's Decision."""
    valid = mask.gather(1, policy_action[:, None]).squeeze(1)
    run_length = torch.where(policy_action == acc.last_action, acc.run_length + 1, 1)
    repeat_counted = table.trades[policy_action]  # hold actions may repeat freely
    repeat_limited = repeat_counted & (run_length > max_repeats)
    executed = torch.where(valid & ~repeat_limited, policy_action, hold_id)
    traded = table.trades[executed]
    return Decision(policy_action=policy_action, valid=valid, run_length=run_length,
                    repeat_counted=repeat_counted, repeat_limited=repeat_limited, executed=executed,
                    traded=traded)


def mark_to_market(acc: Accounts, fill: Fill, bar: Tensor, close: Tensor) -> Marks:
    """Value the filled accounts at `close` (N,) of `bar` (N,); `acc` still holds the state before
    the step, the reference of the step's return, peak and hold time."""
    equity = fill.cash + fill.shares * close
    peak = torch.maximum(acc.peak, equity)
    holding = fill.shares > 0
    return Marks(bar=bar, equity=equity, step_return=equity / acc.equity - 1.0, peak=peak,
                 drawdown=1.0 - equity / peak, holding=holding,
                 hold_time=torch.where(holding, acc.hold_time + 1, 0),
                 exposure=fill.shares * close / equity, steps=acc.steps + 1)


def push_rings(acc: Accounts, step_return: Tensor, executed: Tensor) -> None:
    """Write the step's return (N,) and executed action (N,) into the accounts' ring buffers, in
    place. Each account writes its own slot (its step count), so episodes may be out of phase."""
    acc.returns.scatter_(1, (acc.steps % acc.returns.shape[1])[:, None], step_return[:, None])
    slot = (acc.steps % acc.action_ring.shape[1])[:, None]
    leaving = acc.action_ring.gather(1, slot)
    acc.action_counts.scatter_add_(1, leaving.clamp_min(0), -(leaving >= 0).long())
    acc.action_ring.scatter_(1, slot, executed[:, None])
    acc.action_counts.scatter_add_(1, executed[:, None], torch.ones_like(slot))


def score(acc: Accounts, decision: Decision, fill: Fill, marks: Marks, cfg: EnvConfig
          ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """(reward (N,) float32, raw components, weighted components), each component (N,). Runs after
    push_rings (the windows include this step) and before commit (acc.equity is the previous)."""
    sharpe, _ = rolling_ratios(acc.returns, marks.steps)
    outcome = StepOutcome(
        prev_equity=acc.equity, equity=marks.equity, cost_basis=fill.shares * fill.entry, cost=fill.cost,
        holding=marks.holding, exposure=marks.exposure, drawdown=marks.drawdown, hold_time=marks.hold_time,
        sharpe=sharpe, unique_actions=(acc.action_counts > 0).sum(1), episode_steps=marks.steps,
        run_length=decision.run_length, repeat_counted=decision.repeat_counted, traded=decision.traded,
        failed=~decision.valid, initial_capital=cfg.initial_capital, repeat_limit=cfg.max_consecutive_actions)
    raw = components(outcome, cfg.reward)
    reward, weighted = weighted_sum(raw, cfg.reward)
    return reward, raw, weighted


def commit(acc: Accounts, decision: Decision, fill: Fill, marks: Marks, num_actions: int) -> None:
    """Move the accounts to the step's new state (positions, marks, episode tallies), in place."""
    sold_any = fill.sold > 0
    acc.cash, acc.shares, acc.entry = fill.cash, fill.shares, fill.entry
    acc.equity, acc.peak = marks.equity, marks.peak
    acc.realised = acc.realised + torch.where(sold_any, fill.trade_pnl, 0.0)
    step_return = marks.step_return
    acc.sum_ret, acc.sum_ret_sq = acc.sum_ret + step_return, acc.sum_ret_sq + step_return * step_return
    acc.max_drawdown = torch.maximum(acc.max_drawdown, marks.drawdown)
    acc.gross_profit = acc.gross_profit + torch.where(sold_any, fill.trade_pnl.clamp_min(0.0), 0.0)
    acc.gross_loss = acc.gross_loss + torch.where(sold_any, (-fill.trade_pnl).clamp_min(0.0), 0.0)
    acc.t, acc.steps, acc.hold_time = marks.bar, marks.steps, marks.hold_time
    acc.last_action, acc.run_length = decision.policy_action, decision.run_length
    acc.since_trade = torch.where(decision.traded, 0, acc.since_trade + 1)
    acc.trades = acc.trades + decision.traded.long()
    acc.sells = acc.sells + sold_any.long()
    acc.wins = acc.wins + (sold_any & (fill.trade_pnl > 0)).long()
    acc.seen = acc.seen | torch.nn.functional.one_hot(decision.executed, num_actions).bool()


def episode_ends(marks: Marks, last_bar: Tensor, cfg: EnvConfig) -> tuple[Tensor, Tensor]:
    """(terminated, truncated) (N,) bool: terminated below the equity floor, truncated at the
    split's last bar `last_bar` (N,) or after episode_length steps, never both."""
    terminated = marks.equity < cfg.equity_floor * cfg.initial_capital
    out_of_time = marks.bar >= last_bar
    if cfg.episode_length > 0:  # a config value, not a tensor: no sync
        out_of_time = out_of_time | (marks.steps >= cfg.episode_length)
    return terminated, out_of_time & ~terminated


def step_info(decision: Decision, fill: Fill, marks: Marks, raw: dict[str, Tensor],
              weighted: dict[str, Tensor], episode: dict[str, Tensor], done: Tensor) -> dict[str, Any]:
    """The step's info dict (everything (N,)) except final_obs; `episode` holds the episode
    statistics, valid where `_episode` (done) is True."""
    return {
        "reward_components": raw, "weighted_reward_components": weighted,
        "policy_action": decision.policy_action, "executed_action": decision.executed,
        "mask_violation": ~decision.valid, "repeat_limited": decision.repeat_limited,
        "equity": marks.equity, "exposure": marks.exposure, "filled": decision.traded,
        "cost": fill.cost, "notional": fill.notional, "bar": marks.bar, "episode": episode,
        "_episode": done,
    }
