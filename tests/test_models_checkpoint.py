"""Safetensors checkpoints: exact round trip, mismatches named, corrupt files named, atomic writes."""
from __future__ import annotations

import pytest
import torch

from envs import DEFAULT_SPEC
from models import (FORMAT_VERSION, CheckpointError, CheckpointMismatchError, EncoderConfig,
                    MultiSymbolPolicy, PolicyConfig, atomic_write_bytes, load_checkpoint,
                    read_checkpoint_meta, save_checkpoint)

SMALL = EncoderConfig(n_layers=1, d_model=32, n_heads=4, d_ff=64, out_dim=16, dropout=0.0, pool="mean")
CONFIG = {"model": {"encoder": {"d_model": 32}}, "ppo": {"learning_rate": 3e-4}}


def make_policy(symbols, seed=0, encoder=SMALL) -> MultiSymbolPolicy:
    torch.manual_seed(seed)
    return MultiSymbolPolicy(symbols, PolicyConfig(encoder=encoder, actor_hidden=(8,), critic_hidden=(8,)),
                             DEFAULT_SPEC)


def test_round_trip_is_exact(tmp_path):
    source, target = make_policy(["SPY", "AAPL"], seed=0), make_policy(["SPY", "AAPL"], seed=1)
    path = save_checkpoint(tmp_path / "ckpt.safetensors", source, config=CONFIG, symbols=source.symbols,
                           step=12_288, extra={"git": "abc123"})
    meta = load_checkpoint(path, target)
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert torch.equal(a, b), name
    assert meta.config == CONFIG and meta.symbols == ["SPY", "AAPL"] and meta.step == 12_288
    assert meta.format_version == FORMAT_VERSION and meta.extra == {"git": "abc123"}
    assert read_checkpoint_meta(path) == meta
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temp file left behind


def test_different_symbol_count_names_shapes_and_symbols(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    source = make_policy(["SPY", "AAPL"])
    save_checkpoint(path, source, config=CONFIG, symbols=source.symbols, step=1)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(path, make_policy(["SPY", "AAPL", "MSFT"]))
    message = str(err.value)
    assert str(path) in message
    assert "shape mismatch for actor.weight_0: file (2, 16, 8) vs model (3, 16, 8)" in message
    assert "critic.bias_1: file (2, 1, 1) vs model (3, 1, 1)" in message
    assert "only in the model: ['MSFT']" in message
    assert "encoder." not in message  # the shared encoder fits and is not blamed


def test_missing_and_unexpected_keys_are_named(tmp_path):
    deep = EncoderConfig(n_layers=2, d_model=32, n_heads=4, d_ff=64, out_dim=16, dropout=0.0, pool="mean")
    shallow_policy, deep_policy = make_policy(["SPY"]), make_policy(["SPY"], encoder=deep)
    deep_path, shallow_path = tmp_path / "deep.safetensors", tmp_path / "shallow.safetensors"
    save_checkpoint(deep_path, deep_policy, config=CONFIG, symbols=["SPY"], step=1)
    save_checkpoint(shallow_path, shallow_policy, config=CONFIG, symbols=["SPY"], step=1)
    unexpected = r"unexpected keys .*encoder\.blocks\.1\.attn\.qkv\.weight"
    with pytest.raises(CheckpointMismatchError, match=unexpected):
        load_checkpoint(deep_path, shallow_policy)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys .*encoder\.blocks\.1\.ln_1\.weight"):
        load_checkpoint(shallow_path, deep_policy)


def test_non_strict_skips_missing_keys_but_loads_the_rest(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    deep = EncoderConfig(n_layers=2, d_model=32, n_heads=4, d_ff=64, out_dim=16, dropout=0.0, pool="mean")
    source = make_policy(["SPY"], seed=0)
    save_checkpoint(path, source, config=CONFIG, symbols=["QQQ"], step=1)
    target = make_policy(["SPY"], seed=1, encoder=deep)
    load_checkpoint(path, target, strict=False)
    assert torch.equal(target.actor.weight_0, source.actor.weight_0)
    assert torch.equal(target.encoder.blocks[0].attn.qkv.weight, source.encoder.blocks[0].attn.qkv.weight)


def test_reordered_symbols_are_a_mismatch(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    source = make_policy(["SPY", "AAPL"])
    save_checkpoint(path, source, config=CONFIG, symbols=source.symbols, step=1)
    with pytest.raises(CheckpointMismatchError, match="different order"):
        load_checkpoint(path, make_policy(["AAPL", "SPY"]))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_error_names_the_file(tmp_path, damage):
    path = tmp_path / "ckpt.safetensors"
    policy = make_policy(["SPY"])
    save_checkpoint(path, policy, config=CONFIG, symbols=policy.symbols, step=1)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00\x01not a checkpoint" * 10,
                      "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="ckpt.safetensors"):
        load_checkpoint(path, policy)
    if damage != "truncate":  # the header of a truncated file is intact; only the tensors are gone
        with pytest.raises(CheckpointError, match="ckpt.safetensors"):
            read_checkpoint_meta(path)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors", make_policy(["SPY"]))


def test_atomic_write_replaces_and_cleans_up(tmp_path):
    path = tmp_path / "sub" / "state.bin"
    atomic_write_bytes(path, b"old")
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"new"  # a failed write leaves the old file intact
    assert [p.name for p in path.parent.iterdir()] == ["state.bin"]
