"""Reward components (docs/design.md, "Reward components") as pure tensor functions of account state.

Each function maps (N,) tensors to an unweighted (N,) component; `weighted_sum` applies the
RewardConfig weights. Documented ranges (tested): pnl finite, cost [-inf, 0], time [-1, 0],
sharpe [-1, 1], drawdown [-1 / drawdown_severe, 0], sizing [-1, 0], hold [-1, 0],
diversity [0, 0.3], action_repeat [-0.5, 0], intrinsic_action [0, 0.1], failed_action_penalty
[-1, 0]. pnl and cost are money in units of initial capital x money_scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from envs.config import COMPONENTS, RewardConfig


@dataclass(frozen=True, kw_only=True)
class StepOutcome:
    """What one step did to each account; every field is (N,). Built by keyword only: thirteen
    tensors of one shape are too easy to swap by position."""

    prev_equity: Tensor
    equity: Tensor
    cost_basis: Tensor
    """shares x average entry price of the position held through the step (0 when flat)"""
    cost: Tensor
    """commission + slippage paid this step (currency, >= 0)"""
    holding: Tensor
    """bool: a position is held after the fill"""
    exposure: Tensor
    drawdown: Tensor
    hold_time: Tensor
    sharpe: Tensor
    """rolling Sharpe of per-step equity returns"""
    unique_actions: Tensor
    """distinct executed actions in the diversity window"""
    episode_steps: Tensor
    """steps taken in this episode, this one included"""
    run_length: Tensor
    """consecutive repeats of the policy's action, this one included"""
    repeat_counted: Tensor
    """bool: the policy's action is one the repeat limit applies to (not HOLD)"""
    traded: Tensor
    """bool: a valid non-HOLD action was executed"""
    failed: Tensor
    """bool: the policy's action was one the mask forbids"""


def pnl_component(prev_equity: Tensor, equity: Tensor, cost_basis: Tensor, initial: float,
                  cfg: RewardConfig) -> Tensor:
    """(equity - prev_equity) / initial x money_scale, times clamp(1 + m x ROI, lo, hi) where ROI is
    the equity change over the position's cost basis (0 when flat, so the multiplier is 1)."""
    change = equity - prev_equity
    scaled = change / initial * cfg.money_scale
    if not cfg.roi_scaling:
        return scaled
    roi = torch.where(cost_basis > 0, change / cost_basis.clamp_min(1e-12), 0.0)
    return scaled * (1.0 + cfg.roi_multiplier * roi).clamp(cfg.roi_clamp_min, cfg.roi_clamp_max)


def sharpe_component(sharpe: Tensor, episode_steps: Tensor, cfg: RewardConfig) -> Tensor:
    """clip(sharpe - sharpe_target, -1, 1), and 0 before `sharpe_min_steps` episode steps."""
    score = (sharpe - cfg.sharpe_target).clamp(-1.0, 1.0)
    return torch.where(episode_steps >= cfg.sharpe_min_steps, score, torch.zeros_like(score))


def drawdown_component(drawdown: Tensor, start: float = 0.05, severe: float = 0.15) -> Tensor:
    """0 below `start`, -dd up to `severe`, -dd^2 / severe beyond (continuous, non-increasing).

    The seed's literal "-dd^2 beyond 15 %" would jump from -0.15 to -0.0225 and reward deeper
    drawdowns; dividing by `severe` keeps it continuous and steeper.
    """
    quadratic = -drawdown * drawdown / severe
    return torch.where(drawdown < start, torch.zeros_like(drawdown),
                       torch.where(drawdown <= severe, -drawdown, quadratic))


def diversity_component(unique_actions: Tensor, episode_steps: Tensor, min_steps: int = 10) -> Tensor:
    """0.1 / 0.2 / 0.3 for 3 / 4 / 5+ distinct actions in the window; 0 before `min_steps` steps."""
    bonus = 0.1 * (unique_actions.to(torch.float32) - 2.0).clamp(0.0, 3.0)
    return torch.where(episode_steps >= min_steps, bonus, torch.zeros_like(bonus))


def repeat_component(run_length: Tensor, limit: int, counted: Tensor) -> Tensor:
    """-0.5 x min((run_length - limit) / limit, 1) for repeats past `limit`; 0 otherwise."""
    overflow = (run_length.to(torch.float32) - limit).clamp_min(0.0)
    penalty = -0.5 * (overflow / limit).clamp_max(1.0)
    return torch.where(counted, penalty, torch.zeros_like(penalty))


def components(out: StepOutcome, initial: float, repeat_limit: int, cfg: RewardConfig) -> dict[str, Tensor]:
    """Every unweighted component (N,) float32, keyed by the RewardConfig weight names."""
    f32 = torch.float32
    hold_over = (out.hold_time.to(f32) - cfg.hold_limit).clamp_min(0.0) / cfg.hold_limit
    values = {
        "pnl": pnl_component(out.prev_equity, out.equity, out.cost_basis, initial, cfg).to(f32),
        "cost": (-out.cost / initial * cfg.money_scale).to(f32),
        "time": out.holding.to(f32) - 1.0,
        "sharpe": sharpe_component(out.sharpe, out.episode_steps, cfg).to(f32),
        "drawdown": drawdown_component(out.drawdown, cfg.drawdown_start, cfg.drawdown_severe).to(f32),
        "sizing": -(out.exposure - cfg.sizing_target).abs().clamp_max(1.0).to(f32),
        "hold": -hold_over.clamp_max(1.0),
        "diversity": diversity_component(out.unique_actions, out.episode_steps, cfg.diversity_min_steps),
        "action_repeat": repeat_component(out.run_length, repeat_limit, out.repeat_counted),
        "intrinsic_action": 0.1 * out.traded.to(f32),
        "failed_action_penalty": -out.failed.to(f32),
    }
    assert tuple(values) == COMPONENTS, "reward components must follow RewardConfig's weight order"
    return values


def weighted_sum(values: dict[str, Tensor], cfg: RewardConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """(reward (N,), weighted components) = sum over components of weight x value."""
    weighted = {name: getattr(cfg, name) * value for name, value in values.items()}
    return torch.stack(list(weighted.values())).sum(0), weighted
