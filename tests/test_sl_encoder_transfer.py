"""--init-encoder-from a supervised encoder (trainers.pretrain's encoder.safetensors, kind sl_encoder):
the policy's encoder keys are mapped one to one and reported, the supervised head is dropped, and a
shape that differs is refused with the key and both shapes before the run directory is made."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_args
from safetensors.torch import save_file

from envs.spec import TradingSpec
from models import MultiSymbolPolicy
from configs.loader import ConfigError
from models.transfer import SL_ENCODER_KIND, TransferError, blend_encoder, is_sl_encoder, map_sl_encoder
from trainers.ppo import build_parser, resolve_run
from trainers.ppo import main as train_main
from trainers.run.transfer import TransferRequest, check_label_dates


def tiny_policy(run_dir: Path) -> MultiSymbolPolicy:
    config = resolve_run(build_parser().parse_args(tiny_args(run_dir, 1)))[0]
    return MultiSymbolPolicy(config.run.symbols, config.model, TradingSpec.from_config(config.env))


def sl_encoder_file(path: Path, policy: MultiSymbolPolicy, shrink: str | None = None,
                    last_label: str = "1990-01-02") -> dict[str, torch.Tensor]:
    """A supervised encoder checkpoint fitting `policy` (one tensor a row short when `shrink` names
    it) whose labels ended on `last_label` (by default long before any split of the test bars)."""
    generator = torch.Generator().manual_seed(5)
    tensors = {f"encoder.{k}": torch.randn(v.shape, generator=generator) for k, v in policy.encoder.state_dict().items()}
    if shrink:
        tensors[shrink] = tensors[shrink][:-1].contiguous()
    tensors["head.weight"], tensors["head.bias"] = torch.randn(2, 16, generator=generator), torch.zeros(2)
    save_file(tensors, str(path), metadata={"kind": SL_ENCODER_KIND, "format_version": "2",
                                            "last_label_date": last_label})
    return tensors


def test_the_encoder_keys_map_one_to_one_and_the_head_is_dropped(tmp_path):
    policy = tiny_policy(tmp_path / "run")
    tensors = sl_encoder_file(tmp_path / "encoder.safetensors", policy)
    assert is_sl_encoder(tmp_path / "encoder.safetensors")
    report = map_sl_encoder(tensors, policy, "encoder.safetensors")
    counts = report.counts()
    assert counts == {"copied": len(policy.encoder.state_dict()), "dropped": 2}
    assert {t.key for t in report.tensors if t.action == "dropped"} == {"head.weight", "head.bias"}
    heads_before = {k: v.clone() for k, v in policy.state_dict().items() if not k.startswith("encoder.")}
    blend_encoder(policy, {k: v for k, v in tensors.items() if k.startswith("encoder.")}, 1.0)
    for key, value in policy.encoder.state_dict().items():
        assert torch.equal(value, tensors[f"encoder.{key}"])
    assert all(torch.equal(policy.state_dict()[k], v) for k, v in heads_before.items())


def test_label_dates_are_checked_against_the_runs_first_validation_date(tmp_path):
    policy = tiny_policy(tmp_path / "run")
    path = tmp_path / "encoder.safetensors"
    dates = ("2020-01-01", "2021-01-01")
    sl_encoder_file(path, policy, last_label="2019-12-31")
    note, overlap = check_label_dates(TransferRequest(encoder_source=path), dates)
    assert not overlap and "2019-12-31" in note and "2020-01-01" in note
    sl_encoder_file(path, policy, last_label="2020-01-01")  # a label on the first validation day
    with pytest.raises(ConfigError, match=r"saw labels up to 2020-01-01 .* validates from 2020-01-01"):
        check_label_dates(TransferRequest(encoder_source=path), dates)
    note, overlap = check_label_dates(TransferRequest(encoder_source=path, allow_encoder_overlap=True), dates)
    assert overlap and "--allow-encoder-overlap" in note
    save_file({"encoder.x": torch.zeros(1)}, str(path), metadata={"kind": SL_ENCODER_KIND, "format_version": "1",
                                                                   "split_dates": '["2019-01-01", "2020-06-01"]'})
    with pytest.raises(ConfigError, match=r"up to 2020-06-01 \(its pretraining's first test date"):
        check_label_dates(TransferRequest(encoder_source=path), dates)  # format 1: bounded by its test date
    save_file({"encoder.x": torch.zeros(1)}, str(path), metadata={"kind": SL_ENCODER_KIND, "format_version": "1"})
    with pytest.raises(ConfigError, match="records no label dates"):
        check_label_dates(TransferRequest(encoder_source=path), dates)


def test_a_shape_mismatch_is_refused_naming_the_key_and_both_shapes(tmp_path):
    policy = tiny_policy(tmp_path / "run")
    key = next(k for k, v in policy.encoder.state_dict().items() if v.dim() == 2)
    tensors = sl_encoder_file(tmp_path / "encoder.safetensors", policy, shrink=f"encoder.{key}")
    wanted = tuple(policy.encoder.state_dict()[key].shape)
    with pytest.raises(TransferError, match=rf"encoder\.{key}: checkpoint \({wanted[0] - 1}, {wanted[1]}\), "
                                            rf"policy \({wanted[0]}, {wanted[1]}\)"):
        map_sl_encoder(tensors, policy, "encoder.safetensors")


@pytest.mark.slow
def test_the_trainer_starts_from_a_supervised_encoder_and_refuses_one_that_does_not_fit(tmp_path, capsys):
    policy = tiny_policy(tmp_path / "run")
    pretrain_dir = tmp_path / "pretrain"
    pretrain_dir.mkdir()
    sl_encoder_file(pretrain_dir / "encoder.safetensors", policy)
    run_dir = tmp_path / "run"
    assert train_main(tiny_args(run_dir, 1) + ["--init-encoder-from", str(pretrain_dir),
                                               "--kl-anchor", "0.01", "--kl-anchor-steps", "100"]) == 0
    report = json.loads((run_dir / "transfer.json").read_text())
    assert report["strategy"] == "sl_encoder key mapping"
    assert any("mapped all" in note for note in report["notes"])
    key = next(k for k, v in policy.encoder.state_dict().items() if v.dim() == 2)
    sl_encoder_file(pretrain_dir / "encoder.safetensors", policy, shrink=f"encoder.{key}")
    capsys.readouterr()
    assert train_main(tiny_args(tmp_path / "refused", 1) + ["--init-encoder-from", str(pretrain_dir)]) == 2
    assert f"encoder.{key}: checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    sl_encoder_file(pretrain_dir / "encoder.safetensors", policy, last_label="2100-01-01")  # saw every label
    assert train_main(tiny_args(tmp_path / "leaky", 1) + ["--init-encoder-from", str(pretrain_dir)]) == 2
    err = capsys.readouterr().err
    validation = json.loads((run_dir / "transfer.json").read_text())["notes"]
    assert "saw labels up to 2100-01-01" in err and "--allow-encoder-overlap" in err
    assert not (tmp_path / "leaky").exists()
    assert any(note.startswith("label dates checked") for note in validation)
