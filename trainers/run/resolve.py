"""A run's config from the settings a user gave: a new run takes the defaults under them; a resumed
run takes the config it was started with and accepts only the changes listed here."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from configs.loader import ConfigError, flatten, merge
from configs.train import TrainConfig, apply_device_profile, as_dict, build, run_settings

RESUMABLE = ("run.total_steps", "run.device", "run.torch_threads", "run.compile", "run.checkpoint_every",
             "run.eval_every", "env.strict_data", "run.keep_best", "run.early_stop_patience", "run.early_stop_min_delta",
             "run.early_stop_target_sharpe")
"""settings a resumed run may change: how long and where it runs and how it is validated and
stopped, not what it learns"""
TRANSFERABLE = ("run.symbols", "run.encoder_preset", "model.encoder.n_layers", "model.encoder.d_model",
                "model.encoder.n_heads", "model.encoder.d_ff", "model.encoder.out_dim", "model.actor_hidden",
                "model.critic_hidden")
"""settings a resumed run may change by transferring its weights (models.transfer) when nothing
outside RESUMABLE and these changed"""


def parse_symbols(text: str) -> list[str]:
    """--symbols "SPY, AAPL" -> ["SPY", "AAPL"]; ConfigError when it names none."""
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise ConfigError(f"--symbols {text!r}: no symbol given; pass comma-separated symbols, e.g. "
                          "--symbols SPY,AAPL")
    return symbols


def new_run_config(explicit: dict[str, Any]) -> TrainConfig:
    """The config of a new run from the nested table of the values the user gave."""
    return apply_device_profile(build(TrainConfig, explicit), explicit)


def default_run_dir(config: TrainConfig) -> Path:
    """runs/<time>-<symbols>"""
    return Path("runs") / (time.strftime("%Y%m%d-%H%M%S") + "-" + "-".join(config.run.symbols))


def resumed_config(run_dir: Path, explicit: dict[str, Any]) -> TrainConfig:
    """RUN_DIR/config.toml with the user's values on top; values that repeat the run's are fine, a
    change outside RESUMABLE (or TRANSFERABLE, by transfer) is refused by name."""
    saved_path = run_dir / "config.toml"
    if not saved_path.is_file():
        raise ConfigError(f"{saved_path}: not found; --resume takes a run directory written by "
                          "trainers.ppo")
    saved_data = run_settings(saved_path)
    saved = apply_device_profile(build(TrainConfig, saved_data), saved_data)  # a run written with "auto" in it
    requested = apply_device_profile(build(TrainConfig, merge(saved_data, explicit)), explicit)
    before, after = flatten(as_dict(saved)), flatten(as_dict(requested))
    changed = [key for key in after if key not in RESUMABLE and after[key] != before.get(key)]
    if any(key not in TRANSFERABLE for key in changed):
        details = "; ".join(f"{key}: the run has {before.get(key)!r}, given {after[key]!r}"
                            for key in changed)
        raise ConfigError(f"--resume {run_dir}: {details}. A resumed run keeps its settings; only "
                          f"{', '.join(RESUMABLE)} may change, and the architecture and symbols by transfer "
                          "(see --transfer-strategy); start a new run, or one --init-from this, for the others")
    return requested
