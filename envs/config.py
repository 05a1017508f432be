"""Environment configuration: a plain dataclass (the reward's, RewardConfig, lives with the reward
terms in envs.rewards) that a TOML table maps onto exactly.

Every validation error is a ValueError whose message starts with the field name, so the config
loader can prefix it with the dotted key (`env.reward.pnl: must be ...`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from envs.actions import DEFAULT_ACTIONS, Action, check_actions
from envs.features import DEFAULT_FEATURE_NORM, DEFAULT_SCALE_WINDOW, FEATURE_NORMS
from envs.ranges import check_range
from envs.rewards import RewardConfig
from envs.splits import parse_split_dates, parse_trade_period


@dataclass
class EnvConfig:
    """The trading accounts, episodes and costs of VecTradingEnv."""

    lookback: int = 24
    """bars in the technical observation window"""
    episode_length: int = 256
    """decisions per episode; 0 = run to the end of the split"""
    random_start: bool = True
    """start episodes at a random bar of the split; false = at its first tradable bar"""
    initial_capital: float = 100_000.0
    """cash each account starts an episode with (currency)"""
    commission_bps: float = 2.0
    """commission on each fill's notional, basis points"""
    slippage_bps: float = 1.0
    """fill price moves against the trade by this many basis points of the open"""
    equity_floor: float = 0.5
    """fraction of initial capital below which the episode terminates"""
    max_consecutive_actions: int = 3
    """a non-HOLD action repeated more than this many times in a row executes as HOLD"""
    diversity_window: int = 50
    """steps of executed actions behind the diversity bonus"""
    split_fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    """train / val / test fractions of the sorted union of all symbols' timestamps, from which
    split_dates are derived when it is empty"""
    split_dates: tuple[str, ...] = ()
    """[first validation, first test] date ("YYYY-MM-DD", UTC), common to every symbol; empty =
    derive them from split_fractions (the run's config.toml records the dates used)"""
    purge_bars: int = 0
    """bars at the end of the train and the val split that are never traded or marked: a gap of at
    least lookback + 1 keeps every train decision, its reward and its lookback window out of the
    next split's observation windows (walk-forward sets it; 0 = the splits touch)"""
    strict_data: bool = False
    """refuse data files with an implausible move (a close more than 15 robust standard deviations
    and 20 % from the one before: an unadjusted split or a bad tick) instead of warning"""
    trade_period: tuple[str, ...] = ()
    """[first, end) dates ("YYYY-MM-DD", UTC) outside which no split trades: train starts at
    `first` (earlier bars still feed features and lookback windows: the past), test ends before
    `end` (later bars are never seen); empty = the whole data (walk-forward sets it per fold)"""
    max_exposure: float = 0.9
    """BUY and ADD are masked once position value / equity reaches this"""
    vol_target: float = 0.0
    """volatility targeting (docs/environment.md, Sizing): when > 0, every buy and add fraction is
    multiplied at each decision by vol_target / the symbol's annualised volatility over the last
    vol_window bars (at most vol_scale_max; the result at most max_exposure), so a position bought
    at fraction f carries about f x vol_target of volatility whatever the symbol's; 0 = off, the
    action table's fractions as they are"""
    vol_window: int = 20
    """close-to-close returns behind volatility targeting's volatility estimate"""
    vol_scale_max: float = 2.0
    """largest factor volatility targeting applies to a fraction (calm markets, a volatility of 0)"""
    obs_noise: float = 1.0
    """std of Gaussian noise added to the normalised market features (obs keys technical and regime)
    of every observation, in their (unit) scale: a training augmentation, so the policy cannot tell the
    training bars apart by their exact feature values; `backtest()` (evaluation and validation)
    turns it off; 0 = none. (guide: none; without it the policy memorised the training bars:
    bench/learning.py showed train-split Sharpe rising past the oracle's while validation and test
    fell)"""
    feature_norm: str = DEFAULT_FEATURE_NORM
    """how each market feature is normalised by its own trailing bars: zscore = minus the mean, over
    the std (250 bars); scale = the signed ones (returns, distances from moving averages,
    oscillators) only over their root mean square (scale_window bars), so an uptrend reads positive
    even after a stronger year (the rest z-scored) (guide: z-scores; they lost the sign of a slow
    trend on ~30 % of bars, and the agent its trend: docs/results.md, Seed robustness)"""
    scale_window: int = DEFAULT_SCALE_WINDOW
    """trailing bars over whose root mean square feature_norm=scale divides the signed features:
    20 puts the returns of a calm stretch after a volatile one back on unit scale within a month,
    where over 250 bars they stay a fraction of it (docs/results.md, The reward that paid for
    variance)"""
    actions: tuple[Action, ...] = DEFAULT_ACTIONS
    """the action table, one row per discrete action: its name; its kind, hold, buy (opens a
    position from flat), sell (a held position) or add (to a held position); buy_fraction of
    equity, sell_fraction of held shares. Masks and fills follow it"""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """reward component weights and parameters ([env.reward])"""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def round_trip_cost(self) -> float:
        """What buying and later selling costs as a fraction of the notional: commission and
        slippage, each paid on both fills."""
        return 2.0 * (self.commission_bps + self.slippage_bps) * 1e-4

    def backtest(self) -> EnvConfig:
        """This config for trading a whole split once, as evaluation and validation do: one
        episode from the split's first tradable bar to its end, observations without noise."""
        return replace(self, episode_length=0, random_start=False, obs_noise=0.0)

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        check_range(self, "lookback", 1, 4096)
        check_range(self, "episode_length", 0, 10_000_000)
        if not isinstance(self.random_start, bool):
            raise ValueError(f"random_start: must be true or false, got {self.random_start!r}")
        check_range(self, "initial_capital", 0.0, low_open=True)
        check_range(self, "commission_bps", 0.0, 1000.0)
        check_range(self, "slippage_bps", 0.0, 1000.0)
        check_range(self, "equity_floor", 0.0, 1.0)
        check_range(self, "max_consecutive_actions", 1, 1_000_000)
        check_range(self, "diversity_window", 1, 100_000)
        check_range(self, "max_exposure", 0.0, 1.0, low_open=True)
        check_range(self, "vol_target", 0.0, 10.0)
        check_range(self, "vol_window", 2, 100_000)
        check_range(self, "vol_scale_max", 0.0, 100.0, low_open=True)
        check_range(self, "obs_noise", 0.0, 10.0)
        if self.feature_norm not in FEATURE_NORMS:
            raise ValueError(f"feature_norm: expected one of {', '.join(FEATURE_NORMS)}, got {self.feature_norm!r}")
        check_range(self, "scale_window", 2, 100_000)
        fractions = tuple(self.split_fractions)
        if len(fractions) != 3 or any(not isinstance(x, (int, float)) or x < 0 for x in fractions) \
                or fractions[0] <= 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ValueError(f"split_fractions: need 3 non-negative fractions (train > 0) summing to 1, "
                             f"got {self.split_fractions!r}")
        if isinstance(self.split_dates, list):
            self.split_dates = tuple(self.split_dates)
        if self.split_dates != ():
            parse_split_dates(self.split_dates)
        check_range(self, "purge_bars", 0, 1_000_000)
        if isinstance(self.trade_period, list):
            self.trade_period = tuple(self.trade_period)
        if self.trade_period != ():
            parse_trade_period(self.trade_period)
        self.actions = tuple(Action(**a) if isinstance(a, dict) else a for a in self.actions)
        check_actions(self.actions)
        if not isinstance(self.reward, RewardConfig):
            raise ValueError(f"reward: must be a RewardConfig, got {type(self.reward).__name__}")
        self.reward.validate()
