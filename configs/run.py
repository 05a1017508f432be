"""The `[run]` table: what to train on, for how long, where and how to write results."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

# The seed's full encoder (4 layers x 256) is compute-bound on a 2-core CPU (~0.5 GFLOP per sample
# per epoch with backward), so CPU runs default to this small one; CUDA runs get the full size.
# configs.train.apply_device_profile applies them while the config is resolved.
ENCODER_PRESETS: dict[str, dict[str, int | float]] = {
    "small": {"n_layers": 2, "d_model": 64, "n_heads": 4, "d_ff": 128, "out_dim": 128, "dropout": 0.0},
    "full": {"n_layers": 4, "d_model": 256, "n_heads": 8, "d_ff": 1024, "out_dim": 256, "dropout": 0.0},
}


@dataclass
class RunConfig:
    symbols: tuple[str, ...] = ("SPY", "AAPL")
    """symbols to trade; each gets its own actor and critic head"""
    data_dir: str = "data"
    """folder of <SYMBOL>.parquet bars; a symbol without a file trades a synthetic market"""
    total_steps: int = 200_000
    """account-steps to train for (all accounts of all symbols count)"""
    envs_per_symbol: int = 16
    """parallel trading accounts per symbol (E); N = symbols x E accounts step together (guide: 8;
    accounts are batched tensors, so more of them cost little)"""
    num_steps: int = 128
    """rollout length T per iteration; one iteration collects T x N account-steps (guide: 2048;
    shorter rollouts give ~20x more updates per 300k steps)"""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto = CUDA when available, else CPU; resolved (with encoder_preset, final_obs and ppo.amp:
    the device profile) before the run's config.toml is written"""
    seed: int = 1
    """seed of every random stream (env, sampling, minibatches); same seed -> same run on CPU"""
    encoder_preset: Literal["auto", "small", "full", "custom"] = "auto"
    """auto = full (4x256) on CUDA, small (2x64) on CPU; custom = [model.encoder] exactly. Resolved
    (auto becomes small or full) before the run's config.toml is written"""
    final_obs: Literal["auto", "always", "on_end"] = "auto"
    """when the training env returns the ended episodes' last observations (envs.VecTradingEnv):
    always (no host sync per step), on_end (only on steps where an episode ended: one host read per
    step, which saves a critic forward on the others); auto = always on CUDA, on_end on CPU"""
    checkpoint_every: int = 10
    """iterations between checkpoints (one is always written at the end)"""
    torch_threads: int = 0
    """CPU threads for torch; 0 = OMP_NUM_THREADS when set, else the cores not busy with other work
    (ppo_core.cpu_threads)"""
    compile: bool = False
    """torch.compile the policy's forward in the PPO update (MultiSymbolPolicy.compile_evaluate); off:
    on a 2-core CPU it compiles for 30-90 s cold and its update was 0.8-1.2x eager's
    (docs/results.md, "The update's speed")"""
    rollout_storage: Literal["index", "window"] = "index"
    """index = the rollout buffer keeps each lookback window as its bar index (and noise offset) and
    gathers it from the env's feature table in the update (memory independent of the lookback);
    window = it stores every L x F window it saw (same minibatches, ~25x the memory)"""
    eval_every: int = 25_000
    """account-steps between validations: the greedy policy trades every symbol's whole val split
    (val/<SYMBOL>/* and val/mean_* in TensorBoard; 0 = no validation); the end of training is
    validated too. About 2-4 s on a 2-core CPU per validation of ~750 daily bars: one account per
    symbol, so the cost is mostly per bar"""
    keep_best: int = 3
    """checkpoints kept beside the newest ones for their mean validation Sharpe, best first (0 =
    none); trainers.evaluate takes the best"""
    early_stop_patience: int = 0
    """stop after this many validations in a row without a gain of more than early_stop_min_delta in
    mean validation Sharpe (0 = off) (guide: 5; off so that the default run is never cut short:
    the best checkpoint is kept anyway, early stopping only saves time)"""
    early_stop_min_delta: float = 0.01
    """gain in mean validation Sharpe that counts as an improvement for early_stop_patience"""
    early_stop_target_sharpe: float = math.inf
    """stop as soon as a validation's mean Sharpe reaches this (inf = no target) (guide: 0.8)"""

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("symbols: at least one symbol is required")
        bad = [s for s in self.symbols if not s or not s.replace("_", "").replace("-", "").isalnum()]
        if bad:
            raise ValueError(f"symbols: {bad} are not valid symbol names (letters, digits, _ and -)")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols: duplicates in {list(self.symbols)}")
        for name, low in (("total_steps", 1), ("envs_per_symbol", 1), ("num_steps", 1),
                          ("checkpoint_every", 1), ("torch_threads", 0), ("eval_every", 0), ("keep_best", 0),
                          ("early_stop_patience", 0), ("early_stop_min_delta", 0)):
            if not getattr(self, name) >= low:  # `not >=` also refuses NaN
                raise ValueError(f"{name}: must be >= {low}, got {getattr(self, name)}")
        if math.isnan(self.early_stop_target_sharpe):
            raise ValueError("early_stop_target_sharpe: must be a number (inf = no target), got nan")
        if not self.eval_every and (self.early_stop_patience or self.early_stop_target_sharpe < math.inf):
            raise ValueError("eval_every: 0 turns validation off, but early stopping "
                             "(early_stop_patience or early_stop_target_sharpe) needs it; set eval_every > 0")
