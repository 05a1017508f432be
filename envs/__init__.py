"""Vectorized trading environment: market data, causal features, masking, rewards, accounts, and
the env-policy interface (`TradingSpec`: observation shapes and the action table), and the
symbol-major account layout (`AccountLayout`)."""
from envs.actions import DEFAULT_ACTIONS, Action
from envs.bars import Bars, DataError, validate_bars
from envs.config import EnvConfig
from envs.rewards import COMPONENTS as REWARD_COMPONENTS
from envs.rewards import RewardConfig
from envs.features import REGIME_NAMES, TECHNICAL_NAMES, WARMUP_BARS, compute_features
from envs.gym_wrapper import SingleAccountEnv
from envs.layout import AccountLayout
from envs.market_data import load_bars, load_market
from envs.masking import action_mask
from envs.spec import TradingSpec
from envs.splits import SPLITS, derive_split_dates, parse_split_dates, split_ranges
from envs.synthetic import ar1_expected_return, autocorrelated_bars, planted_signal_bars, synthetic_bars
from envs.trading_env import VecTradingEnv

DEFAULT_SPEC = TradingSpec.from_config(EnvConfig())
"""the interface of the default EnvConfig (lookback 24, DESIGN's seven actions)"""

__all__ = [
    "DEFAULT_ACTIONS", "DEFAULT_SPEC", "REGIME_NAMES", "REWARD_COMPONENTS", "TECHNICAL_NAMES",
    "SPLITS", "WARMUP_BARS", "AccountLayout", "Action", "Bars", "DataError", "EnvConfig", "RewardConfig",
    "SingleAccountEnv", "TradingSpec", "VecTradingEnv", "action_mask", "ar1_expected_return", "autocorrelated_bars",
    "compute_features", "derive_split_dates", "load_bars", "load_market", "parse_split_dates",
    "planted_signal_bars", "split_ranges", "synthetic_bars", "validate_bars",
]
