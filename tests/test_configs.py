"""Config parsing, overrides and error messages."""
import tomllib

import pytest

from configs.loader import ConfigError, dumps_toml
from configs.train import DEFAULT_CONFIG, TrainConfig, as_dict, build, resolve
from trainers.ppo import main


def test_default_toml_maps_exactly_onto_the_dataclass_defaults():
    assert resolve(DEFAULT_CONFIG) == TrainConfig()
    written = tomllib.loads(DEFAULT_CONFIG.read_text())
    assert set(written) == set(as_dict(TrainConfig()))


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
    ("model.encoder.d_model=100", ["model.encoder.d_model", "n_heads"]),
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
