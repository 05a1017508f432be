"""The reward (docs/design.md, "Reward components"): one registry entry per term, `TERMS`, from
which RewardConfig's weight fields, the component list, the logging (reward/<name>,
reward_share/<name>) and configs/default.toml follow. A new term is one `RewardTerm` in TERMS (its
name, default weight, doc and function of the step's `StepOutcome`), plus a StepOutcome field when
it needs state the others do not read (docs/environment.md, Reward).

Each term maps the (N,) tensors of a StepOutcome to an unweighted (N,) float32 component;
`weighted_sum` applies the weights. Documented ranges (tested): pnl finite, cost [-inf, 0], time
[-1, 0], sharpe [-1, 1], drawdown [-1 / drawdown_severe, 0], sizing [-1, 0], hold [-1, 0],
diversity [0, 0.3], action_repeat [-0.5, 0], intrinsic_action [0, 0.1], failed_action_penalty
[-1, 0]. pnl and cost are money in units of initial capital x money_scale.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, make_dataclass

import torch
from torch import Tensor

from envs.ranges import check_range


@dataclass(frozen=True, kw_only=True)
class StepOutcome:
    """What one step did to each account, what every reward term reads; every tensor is (N,). Built
    by keyword only: thirteen tensors of one shape are too easy to swap by position."""

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
    initial_capital: float
    """the accounts' starting cash (a scalar): pnl and cost are money in its units"""
    repeat_limit: int
    """env.max_consecutive_actions (a scalar): action_repeat's limit"""


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


@dataclass(frozen=True)
class RewardTerm:
    """One reward component: its name (the RewardConfig weight field, the log tag), default weight,
    what it pays (the weight field's doc) and its value (StepOutcome, RewardConfig) -> (N,)."""

    name: str
    weight: float
    doc: str
    value: Callable[[StepOutcome, "RewardConfig"], Tensor]


def _hold_overrun(out: StepOutcome, cfg: RewardConfig) -> Tensor:
    over = (out.hold_time.to(torch.float32) - cfg.hold_limit).clamp_min(0.0) / cfg.hold_limit
    return -over.clamp_max(1.0)


TERMS: tuple[RewardTerm, ...] = (
    RewardTerm("pnl", 0.75, "weight of equity change / initial capital x money_scale (times the ROI multiplier when on)",
               lambda out, cfg: pnl_component(out.prev_equity, out.equity, out.cost_basis, out.initial_capital, cfg)),
    RewardTerm("cost", 0.10, "weight of -(commission + slippage) / initial capital x money_scale, a nudge against "
               "churning", lambda out, cfg: -out.cost / out.initial_capital * cfg.money_scale),
    RewardTerm("time", 0.0, "weight of -1 per step spent with no position (idle capital)",
               lambda out, cfg: out.holding.to(torch.float32) - 1.0),
    RewardTerm("sharpe", 0.03, "weight of the rolling per-step Sharpe ratio of equity returns, clipped to [-1, 1]",
               lambda out, cfg: sharpe_component(out.sharpe, out.episode_steps, cfg)),
    RewardTerm("drawdown", 0.02, "weight of the drawdown penalty (0 below drawdown_start, -dd up to drawdown_severe, "
               "steeper beyond)", lambda out, cfg: drawdown_component(out.drawdown, cfg.drawdown_start,
                                                                      cfg.drawdown_severe)),
    RewardTerm("sizing", 0.0, "weight of -|exposure - sizing_target|",
               lambda out, cfg: -(out.exposure - cfg.sizing_target).abs().clamp_max(1.0)),
    RewardTerm("hold", 0.0, "weight of -min(max(hold_time - hold_limit, 0) / hold_limit, 1): penalises overlong "
               "holds", _hold_overrun),
    RewardTerm("diversity", 0.07, "weight of 0.1 / 0.2 / 0.3 for 3 / 4 / 5+ distinct executed actions in the "
               "diversity window",
               lambda out, cfg: diversity_component(out.unique_actions, out.episode_steps, cfg.diversity_min_steps)),
    RewardTerm("action_repeat", 0.05, "weight of -0.5 x min(overflow / max_consecutive_actions, 1) when a non-HOLD "
               "action repeats", lambda out, cfg: repeat_component(out.run_length, out.repeat_limit, out.repeat_counted)),
    RewardTerm("intrinsic_action", 0.01, "weight of 0.1 for each valid executed non-HOLD action",
               lambda out, cfg: 0.1 * out.traded.to(torch.float32)),
    RewardTerm("failed_action_penalty", 0.05, "weight of -1 for each action the mask forbids that reaches the env "
               "(it executes as HOLD); masked policies never send one, agents without masks learn from it (the "
               "guide's failed_action_penalty)", lambda out, cfg: -out.failed.to(torch.float32)),
)
"""every reward term, in the order they are configured, logged and summed"""

COMPONENTS = tuple(term.name for term in TERMS)

_RewardWeights = make_dataclass(
    "RewardWeights", [(t.name, float, field(default=t.weight, metadata={"doc": t.doc})) for t in TERMS])
_RewardWeights.__module__ = __name__  # pickling and repr find it here


@dataclass
class RewardConfig(_RewardWeights):  # type: ignore[misc, valid-type]  (fields made from TERMS)
    """Weights of the reward components (one float per TERMS entry, its name and doc) and the
    parameters they need.

    Scale: pnl and cost are money, as fractions of initial capital times `money_scale` (1e4 by
    default: basis points); the shaping terms are unitless scores of about 0.1 to 1. In basis
    points a day's PnL of a few percent of equity in the market is tens of units, so with the
    seed's weights PnL carries most of the reward and no shaping term outweighs it (logged as
    reward_share/<component>). money_scale = 1 is the seed's literal formula, where the shaping
    terms outweigh PnL about 60 to 1 (configs/seed_stage5.toml).
    """

    money_scale: float = 10_000.0
    """pnl and cost are fractions of initial capital times this: 1e4 = basis points; 1 = the seed
    (guide: 1, fractions of capital; basis points make PnL ~99 % of |reward|)"""
    roi_scaling: bool = False
    """multiply the pnl component by clamp(1 + roi_multiplier x ROI, roi_clamp_min, roi_clamp_max)
    (guide: on; a held bar's pnl reward becomes ~r + roi_multiplier r^2, which pays for variance
    itself, so agents learn to seek volatility: docs/results.md, The reward that paid for variance)"""
    roi_multiplier: float = 2.0
    """slope of the ROI multiplier (ROI = the step's equity change / the held position's cost basis;
    0 when flat)"""
    roi_clamp_min: float = 0.5
    """lower clamp of the ROI multiplier"""
    roi_clamp_max: float = 3.0
    """upper clamp of the ROI multiplier"""
    sharpe_window: int = 20
    """steps of equity returns behind the rolling Sharpe / Sortino (reward and observation)"""
    sharpe_min_steps: int = 20
    """episode steps before the Sharpe component pays anything (a 2-return Sharpe is noise)"""
    sharpe_target: float = 0.0
    """the Sharpe component is clip(rolling per-step Sharpe - sharpe_target, -1, 1)"""
    drawdown_start: float = 0.05
    """drawdown below which the penalty is 0"""
    drawdown_severe: float = 0.15
    """drawdown beyond which the penalty grows quadratically (-dd^2 / drawdown_severe, continuous)"""
    sizing_target: float = 0.3
    """exposure the sizing component steers towards (fraction of equity in the position)"""
    hold_limit: int = 50
    """bars a position may be held before the hold penalty starts"""
    diversity_min_steps: int = 10
    """episode steps before the diversity bonus can be non-zero"""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        for name in COMPONENTS:
            check_range(self, name, 0.0)
        if not isinstance(self.roi_scaling, bool):
            raise ValueError(f"roi_scaling: must be true or false, got {self.roi_scaling!r}")
        check_range(self, "roi_multiplier", 0.0)
        check_range(self, "roi_clamp_min", 0.0)
        check_range(self, "roi_clamp_max", self.roi_clamp_min)
        check_range(self, "sharpe_window", 2, 10_000)
        check_range(self, "sharpe_min_steps", 0, 1_000_000)
        check_range(self, "sharpe_target", -10.0, 10.0)
        check_range(self, "money_scale", 0.0, 1e9, low_open=True)
        check_range(self, "drawdown_start", 0.0, 1.0)
        check_range(self, "drawdown_severe", max(self.drawdown_start, 1e-6), 1.0)
        check_range(self, "sizing_target", 0.0, 1.0)
        check_range(self, "hold_limit", 1, 1_000_000)
        check_range(self, "diversity_min_steps", 0, 1_000_000)

    def weights(self) -> dict[str, float]:
        """Component name -> weight, in the order the components are reported."""
        return {name: getattr(self, name) for name in COMPONENTS}


def components(out: StepOutcome, cfg: RewardConfig) -> dict[str, Tensor]:
    """Every unweighted component (N,) float32, keyed by term name in TERMS order."""
    return {term.name: term.value(out, cfg).to(torch.float32) for term in TERMS}


def weighted_sum(values: dict[str, Tensor], cfg: RewardConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """(reward (N,), weighted components) = sum over components of weight x value."""
    weighted = {name: getattr(cfg, name) * value for name, value in values.items()}
    return torch.stack(list(weighted.values())).sum(0), weighted
