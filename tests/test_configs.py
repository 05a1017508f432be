"""Config parsing, overrides and error messages."""
import tomllib
from dataclasses import replace

import pytest
import torch

from configs.defaults import differences
from configs.loader import ConfigError, dumps_toml, flatten
from configs.run import ENCODER_PRESETS
from configs.train import (BEFORE_FIELD, DEFAULT_CONFIG, TrainConfig, apply_device_profile, as_dict, build,
                           read_run_config, resolve)
from envs import EnvConfig
from models import PolicyConfig
from ppo_core import PPOConfig, auto_amp, cpu_has_native_bf16
from trainers.ppo import main


def test_default_toml_is_written_from_the_dataclass_defaults():
    """The dataclasses are the only home of the defaults; default.toml is generated from them."""
    problems = differences(DEFAULT_CONFIG.read_text())
    assert not problems, ("configs/default.toml is out of date (python -m configs.defaults --write):\n"
                          + "\n".join(problems))
    written = tomllib.loads(DEFAULT_CONFIG.read_text())
    # the encoder sizes are the preset's to set, so the file leaves them out
    assert set(written["model"]["encoder"]).isdisjoint(ENCODER_PRESETS["small"])
    assert build(TrainConfig, written) == build(TrainConfig, {}) == TrainConfig()
    assert resolve(DEFAULT_CONFIG) == resolve(None) == apply_device_profile(TrainConfig())


def test_a_stale_default_toml_is_reported_field_by_field():
    text = DEFAULT_CONFIG.read_text()
    stale = text.replace("\ngamma = 0.5 ", "\ngamma = 0.9 ").replace("\nnorm_adv = true", "\n#")
    assert differences(stale) == ["ppo.norm_adv: missing (dataclass default true)",
                                  "ppo.gamma: 0.9 differs from the dataclass default 0.5"]
    assert differences(text.replace("# discount factor", "# the discount")) == [
        "the values match, but the comments or layout differ from the field docstrings"]


@pytest.mark.parametrize("preset", ["small", "full"])
def test_presets_are_resolved_into_the_config(preset):
    cfg = resolve(DEFAULT_CONFIG, [f"run.encoder_preset={preset}"])
    assert cfg.run.encoder_preset == preset
    assert {k: getattr(cfg.model.encoder, k) for k in ENCODER_PRESETS[preset]} == ENCODER_PRESETS[preset]
    auto = resolve(DEFAULT_CONFIG, ["run.device=cpu"])
    assert auto.run.encoder_preset == "small"
    assert auto.model.encoder.d_model == ENCODER_PRESETS["small"]["d_model"]
    # what a run writes resolves to itself: presets do not apply twice or drift
    assert resolve(None, cli=flatten(as_dict(cfg))) == cfg


def test_an_encoder_field_the_preset_replaces_is_refused_not_ignored():
    with pytest.raises(ConfigError, match=r"model\.encoder\.d_model: 128 conflicts with run\.encoder_preset"):
        resolve(DEFAULT_CONFIG, ["run.device=cpu", "model.encoder.d_model=128"])
    # the preset's own value is fine, and "custom" takes the fields as written
    small = ENCODER_PRESETS["small"]["d_model"]
    same = resolve(DEFAULT_CONFIG, ["run.device=cpu", f"model.encoder.d_model={small}"])
    assert same.model.encoder.d_model == small
    custom = resolve(DEFAULT_CONFIG, ["run.encoder_preset=custom", "model.encoder.d_model=128"])
    assert custom.model.encoder.d_model == 128 and custom.run.encoder_preset == "custom"
    with pytest.raises(ConfigError, match=r"model\.encoder\.d_model: .*n_heads"):
        resolve(DEFAULT_CONFIG, ["run.encoder_preset=custom", "model.encoder.d_model=100"])


def test_action_table_errors_name_the_row_and_field():
    with pytest.raises(ConfigError, match=r"env\.actions\[1\]\.kind"):
        resolve(DEFAULT_CONFIG, ["env.actions=[{name='HOLD', kind='hold'}, {name='SHORT', kind='short'}]"])
    with pytest.raises(ConfigError, match="hold action"):
        resolve(DEFAULT_CONFIG, ["env.actions=[{name='BUY', kind='buy', buy_fraction=0.1}, "
                                 "{name='SELL', kind='sell', sell_fraction=1.0}]"])


def test_overrides_reach_nested_fields_and_keep_types():
    cfg = resolve(DEFAULT_CONFIG, ["ppo.learning_rate=1e-4", "env.reward.pnl=1", "run.symbols=['A','B']",
                                   "run.device=cpu"])
    assert cfg.ppo.learning_rate == 1e-4
    assert cfg.env.reward.pnl == 1.0 and isinstance(cfg.env.reward.pnl, float)
    assert cfg.run.symbols == ("A", "B")
    assert cfg.run.device == "cpu"


def test_cli_values_sit_between_file_and_overrides():
    cfg = resolve(DEFAULT_CONFIG, ["run.seed=7"], cli={"run.seed": 3, "run.total_steps": 999})
    assert cfg.run.seed == 7 and cfg.run.total_steps == 999


@pytest.mark.parametrize("override, fragments", [
    ("ppo.learning_rat=1e-4", ["ppo.learning_rat", "unknown key", "learning_rate"]),
    ("ppo.learning_rate='fast'", ["ppo.learning_rate", "number"]),
    ("ppo.update_epochs=2.5", ["ppo.update_epochs", "integer"]),
    ("run.device='tpu'", ["run.device", "'cpu'"]),
    ("run.envs_per_symbol=0", ["run.envs_per_symbol", ">= 1"]),
    ("env.reward.nonsense=1", ["env.reward.nonsense", "unknown key"]),
    ("model.encoder.d_model=100", ["model.encoder.d_model"]),
    ("ppo.clip_coef=-0.2", ["ppo.clip_coef"]),
    ("ppo", ["--set 'ppo'", "KEY=VALUE"]),
])
def test_bad_values_name_the_dotted_key(override, fragments):
    with pytest.raises(ConfigError) as err:
        resolve(DEFAULT_CONFIG, [override])
    for fragment in fragments:
        assert fragment in str(err.value)


def test_toml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ppo]\nlearning_rate = = 3\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        resolve(bad)
    with pytest.raises(ConfigError, match="not found"):
        resolve(tmp_path / "missing.toml")


def test_resolved_config_round_trips_through_toml():
    cfg = resolve(DEFAULT_CONFIG, ["ppo.learning_rate=3e-4", "run.symbols=['X']", "env.episode_length=64"])
    again = build(TrainConfig, tomllib.loads(dumps_toml(as_dict(cfg))))
    assert again == cfg


def test_cli_reports_config_errors_without_a_traceback(capsys, tmp_path):
    code = main(["--set", "ppo.nope=1", "--run-dir", str(tmp_path / "run")])
    assert code == 2
    assert "ppo.nope" in capsys.readouterr().err


def test_seed_stage5_is_the_guides_stage5_as_written():
    seed = resolve(DEFAULT_CONFIG.with_name("seed_stage5.toml"), ["run.device=cpu"])
    assert (seed.ppo.learning_rate, seed.ppo.lr_schedule) == (3e-4, "constant")
    assert seed.ppo.update_epochs == 10 and seed.ppo.minibatch_size == 64
    assert (seed.run.num_steps, seed.run.envs_per_symbol) == (2048, 8)
    assert seed.ppo.normalize_rewards is False and seed.entropy.guard.halt is True
    assert (seed.ppo.gamma, seed.ppo.gae_lambda, seed.ppo.clip_coef) == (0.99, 0.95, 0.2)
    assert seed.env.reward.money_scale == 1.0  # the literal formulas: fractions of capital
    assert seed.env.reward.roi_scaling is True
    assert seed.env.obs_noise == 0.0 and seed.env.feature_norm == "zscore"
    assert seed.ppo.weight_decay == 0.0 and seed.ppo.norm_adv_per_group is False
    assert seed.env.reward.weights() == {
        "pnl": 0.75, "cost": 0.1, "time": 0.0, "sharpe": 0.03, "drawdown": 0.02, "sizing": 0.0,
        "hold": 0.0, "diversity": 0.07, "action_repeat": 0.05, "intrinsic_action": 0.01,
        "failed_action_penalty": seed.env.reward.failed_action_penalty}
    schedule = seed.entropy.schedule
    assert (schedule.initial, schedule.final, schedule.floor) == (0.08, 0.03, 0.03)
    assert (schedule.hold_steps, schedule.decay_steps) == (10_000, 40_000)
    assert (seed.entropy.adaptive.target, seed.entropy.adaptive.floor) == (0.55, 0.02)
    assert seed.entropy.guard.threshold == 0.22 and seed.model.encoder.pool == "mean"
    assert (seed.run.early_stop_patience, seed.run.early_stop_min_delta) == (5, 0.01)
    assert seed.run.early_stop_target_sharpe == 0.8


def test_a_partial_table_keeps_the_defaults_of_the_other_fields():
    cfg = resolve(None, ["ppo.learning_rate=3e-4", "model.encoder.n_heads=4", "run.device=cpu"])
    assert cfg.ppo.learning_rate == 3e-4
    assert cfg.ppo.amp == auto_amp(torch.device("cpu"))  # the device profile's
    assert replace(cfg.ppo, learning_rate=PPOConfig().learning_rate, amp=PPOConfig().amp) == PPOConfig()
    assert cfg.model.encoder.pool == PolicyConfig().encoder.pool


def test_the_device_profile_leaves_no_auto_and_keeps_what_the_user_set():
    cpu = resolve(None, ["run.device=cpu"])
    cpu_amp = "bf16" if cpu_has_native_bf16() else "off"
    assert (cpu.run.device, cpu.run.encoder_preset, cpu.ppo.amp, cpu.run.final_obs) == ("cpu", "small", cpu_amp, "on_end")
    assert "auto" not in dumps_toml(as_dict(cpu))  # what config.toml records
    given = resolve(None, ["run.device=cpu", "ppo.amp=bf16", "run.final_obs=always", "run.encoder_preset=full"])
    assert (given.ppo.amp, given.run.final_obs, given.run.encoder_preset) == ("bf16", "always", "full")
    assert given.model.encoder.d_model == 256
    assert resolve(None, ["run.device=auto"]).run.device in ("cpu", "cuda")


def test_a_run_written_before_a_field_existed_reads_the_value_it_trained_with(tmp_path):
    saved = as_dict(resolve(DEFAULT_CONFIG, ["run.device=cpu"]))
    path = tmp_path / "config.toml"
    path.write_text(dumps_toml(saved))
    assert read_run_config(path) == build(TrainConfig, saved)  # a full record is read as written
    for key in BEFORE_FIELD:
        section, name = key.split(".")
        del saved[section][name]
    path.write_text(dumps_toml(saved))
    old = read_run_config(path)
    assert (old.env.feature_norm, old.ppo.weight_decay) == ("zscore", 0.0)
    assert old.env.feature_norm != EnvConfig().feature_norm and old.ppo.weight_decay != PPOConfig().weight_decay


def test_every_preset_loads_and_says_what_it_changes():
    """Each configs/*.toml preset resolves over the defaults; full_size's buys reach 90 % of equity
    and its adds 25 %; the cost presets set both costs (the FX one under a 1 bp round trip)."""
    folder = DEFAULT_CONFIG.parent
    for path in folder.glob("*.toml"):
        assert resolve(path, ["run.device=cpu"]).run.device == "cpu", path
    full = resolve(folder / "full_size.toml").env
    buys = {a.name: a.buy_fraction for a in full.actions if a.kind in ("buy", "add")}
    assert buys == {"BUY_SMALL": 0.25, "BUY_MEDIUM": 0.5, "BUY_LARGE": 0.9, "ADD_TO_POSITION": 0.25}
    equity = resolve(folder / "costs_equity_daily.toml").env
    assert (equity.commission_bps, equity.slippage_bps) == (2.0, 1.0) == (EnvConfig().commission_bps,
                                                                         EnvConfig().slippage_bps)
    assert resolve(folder / "costs_fx_hourly.toml").env.round_trip_cost < 1e-4
