"""The whole training configuration: one dataclass per TOML table, resolved from defaults, a TOML
file, CLI flags and `--set` overrides, in that order; then the device profile is applied (device,
encoder preset, AMP, final_obs: no "auto" left), so the resolved config (and the run's
config.toml) is exactly what runs.

The dataclasses' field defaults are the trainer's defaults, their only home: configs/default.toml
is written from them (`python -m configs.defaults --write`)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from configs.alerts import AlertConfig
from configs.loader import ConfigError, apply_overrides, build, load_toml, merge, to_dict
from configs.run import ENCODER_PRESETS, RunConfig
from envs import EnvConfig
from models import PolicyConfig
from ppo_core import EntropyConfig, PPOConfig, auto_amp, resolve_device

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")
BEFORE_FIELD = {"env.feature_norm": "zscore", "ppo.weight_decay": 0.0, "env.scale_window": 250}
"""fields added after runs were written, with the value such a run trained with: a run's
config.toml without one means this, not today's default"""


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
    alerts: AlertConfig = field(default_factory=AlertConfig)
    """collapse alerts (the guide's 9.8 and 9.11), checked by the trainer every iteration: their
    thresholds and which of them stop the run. One that is on shows as "ALERT <tag>" in the live
    table / log line; TensorBoard alerts/<name> counts the iterations it was on and
    alerts/<name>_active is 0/1. None stops the run unless named in halt_on"""


def explicit_settings(config_path: str | Path | None = None, overrides: list[str] | None = None,
                      cli: dict[str, Any] | None = None) -> dict[str, Any]:
    """The nested table of every value the user gave: TOML file <- `cli` (dotted keys; a None value
    is a flag that was not given, and is left out) <- `--set`."""
    data = load_toml(config_path) if config_path is not None else {}
    for key, value in (cli or {}).items():
        if value is None:
            continue
        for part in reversed(key.split(".")):
            value = {part: value}
        data = merge(data, value)
    return apply_overrides(data, list(overrides or []))


def resolve(config_path: str | Path | None = DEFAULT_CONFIG, overrides: list[str] | None = None,
            cli: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults <- TOML file <- `cli` values (dotted keys) <- `--set` overrides, then the device
    profile (see `apply_device_profile`)."""
    data = explicit_settings(config_path, overrides, cli)
    return apply_device_profile(build(TrainConfig, data), data)


def apply_device_profile(config: TrainConfig, explicit: dict[str, Any] | None = None) -> TrainConfig:
    """Resolve every setting whose default depends on the device, once, so that the config (and
    the run's config.toml) holds no "auto": run.device (CUDA when available, else CPU), then from
    it run.encoder_preset (full on CUDA, small on CPU), ppo.amp (ppo_core.auto_amp: fp16 on CUDA, bf16 on
    a CPU with native bf16, else off) and
    run.final_obs (always on CUDA, on_end on CPU; envs.VecTradingEnv). A setting the user gave is
    kept: auto only fills what was left at auto. A named preset replaces every encoder field it
    lists; one the user set explicitly (`explicit`, the nested table of given values) to another
    value is a ConfigError rather than silently overwritten; "custom" keeps [model.encoder]."""
    try:
        device = resolve_device(config.run.device)
    except ValueError as err:
        raise ConfigError(f"run.{err}") from err
    cuda = device.type == "cuda"
    run = replace(config.run, device=device.type,
                  final_obs=config.run.final_obs if config.run.final_obs != "auto" else "always" if cuda else "on_end")
    ppo = replace(config.ppo, amp=config.ppo.amp if config.ppo.amp != "auto" else auto_amp(device))
    config = replace(config, run=run, ppo=ppo)
    preset = config.run.encoder_preset
    if preset == "custom":
        return config
    if preset == "auto":
        preset = "full" if cuda else "small"
    values = ENCODER_PRESETS[preset]
    given = (explicit or {}).get("model", {}).get("encoder", {})
    for name, value in values.items():
        if name in given and given[name] != value:
            raise ConfigError(f"model.encoder.{name}: {given[name]!r} conflicts with run.encoder_preset "
                              f"{preset!r}, which sets it to {value!r}; set run.encoder_preset = "
                              "\"custom\" to size the encoder yourself")
    encoder = replace(config.model.encoder, **values)
    return replace(config, run=replace(config.run, encoder_preset=preset),
                   model=replace(config.model, encoder=encoder))


def device_profile(config: TrainConfig) -> str:
    """One line naming the resolved device profile of `config` (apply_device_profile's settings)."""
    enc = config.model.encoder
    return (f"device profile: run.device {config.run.device}, run.encoder_preset {config.run.encoder_preset} "
            f"({enc.n_layers} layers x {enc.d_model}, {enc.n_heads} heads), ppo.amp {config.ppo.amp}, "
            f"run.final_obs {config.run.final_obs}")


def run_settings(path: str | Path) -> dict[str, Any]:
    """The nested table of a run's config.toml, with BEFORE_FIELD's value for each field it lacks
    (a run written before the field existed)."""
    data = load_toml(path)
    for key, value in BEFORE_FIELD.items():
        section, name = key.split(".")
        data.setdefault(section, {}).setdefault(name, value)
    return data


def read_run_config(path: str | Path) -> TrainConfig:
    """The TrainConfig a run's config.toml records (see `run_settings`)."""
    return build(TrainConfig, run_settings(path))


def as_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (for TOML, JSON and checkpoint metadata)."""
    return to_dict(config)
