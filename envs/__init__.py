"""Vectorized trading environment: market data, causal features, masking, rewards, accounts."""
from envs.bars import Bars, DataError
from envs.config import COMPONENTS as REWARD_COMPONENTS
from envs.config import EnvConfig, RewardConfig
from envs.gym_wrapper import SingleAccountEnv
from envs.features import REGIME_NAMES, TECHNICAL_NAMES, WARMUP_BARS, compute_features
from envs.market_data import load_bars, load_market, split_bounds, validate_bars
from envs.masking import ACTION_NAMES, NUM_ACTIONS, action_mask, masked_logits
from envs.synthetic import planted_signal_bars, synthetic_bars
from envs.trading_env import OBS_BOUNDS, OBS_SHAPES, VecTradingEnv, observation_shapes

__all__ = [
    "ACTION_NAMES", "NUM_ACTIONS", "OBS_BOUNDS", "OBS_SHAPES", "REGIME_NAMES", "REWARD_COMPONENTS",
    "TECHNICAL_NAMES",
    "WARMUP_BARS", "Bars", "DataError", "EnvConfig", "RewardConfig", "VecTradingEnv", "action_mask",
    "compute_features", "load_bars", "load_market", "masked_logits", "observation_shapes",
    "planted_signal_bars", "SingleAccountEnv", "split_bounds", "synthetic_bars", "validate_bars",
]
