"""The whole training configuration: one dataclass per TOML table, resolved from defaults, a TOML
file and `--set` overrides, in that order."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from configs.loader import apply_overrides, build, load_toml, merge, to_dict
from configs.run import ENCODER_PRESETS, RunConfig
from envs import EnvConfig
from models import PolicyConfig
from ppo_core import EntropyConfig, PPOConfig

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    """what to train, for how long, where"""
    env: EnvConfig = field(default_factory=EnvConfig)
    """trading environment and its reward weights ([env.reward])"""
    model: PolicyConfig = field(default_factory=PolicyConfig)
    """encoder ([model.encoder]) and per-symbol heads"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO update"""
    entropy: EntropyConfig = field(default_factory=EntropyConfig)
    """entropy schedule, adaptive bonus and collapse guard"""


def resolve(config_path: str | Path | None = DEFAULT_CONFIG, overrides: list[str] | None = None,
            cli: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- TOML file <- `cli` values (dotted keys) <- `--set` overrides."""
    data = load_toml(config_path) if config_path is not None else {}
    for key, value in (cli or {}).items():
        section, _, name = key.partition(".")
        data = merge(data, {section: {name: value}})
    data = apply_overrides(data, list(overrides or []))
    return build(TrainConfig, data)


def with_encoder_preset(config: TrainConfig, preset: str) -> TrainConfig:
    """Replace the encoder's size fields with a named preset ("small" or "full")."""
    encoder = replace(config.model.encoder, **ENCODER_PRESETS[preset])
    return replace(config, model=replace(config.model, encoder=encoder))


def as_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (for TOML, JSON and checkpoint metadata)."""
    return to_dict(config)
