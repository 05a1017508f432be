"""models.transfer: function-preserving growth, copy-and-extend scale, symbol add/drop, refusals."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from envs import DEFAULT_SPEC
from models import EncoderConfig, MultiSymbolPolicy, PolicyConfig
from models.transfer import TransferError, blend_encoder, transfer_weights

ENC = EncoderConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, out_dim=16, dropout=0.0, pool="mean")
BASE = PolicyConfig(encoder=ENC, actor_hidden=(24, 12), critic_hidden=(24, 12))
SYMBOLS = ["AAA", "BBB", "CCC"]
E = 4  # accounts per symbol in the test batches


def trained(config: PolicyConfig = BASE, symbols: list[str] = SYMBOLS) -> MultiSymbolPolicy:
    """A policy whose weights look trained: every tensor moved well away from its init, so the
    actor's small output gain cannot hide a changed function."""
    torch.manual_seed(0)
    policy = MultiSymbolPolicy(symbols, config, DEFAULT_SPEC).eval()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return policy


def grown(config: PolicyConfig, symbols: list[str], source: MultiSymbolPolicy, strategy: str,
          **kwargs) -> tuple[MultiSymbolPolicy, object]:
    torch.manual_seed(1)
    model = MultiSymbolPolicy(symbols, config, DEFAULT_SPEC).eval()
    report = transfer_weights(source.state_dict(), source.symbols, source.config, DEFAULT_SPEC.obs_shapes,
                              DEFAULT_SPEC.num_actions, model, strategy, **kwargs)
    return model, report


def obs(num_symbols: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(num_symbols * E, *s, generator=g) for k, s in DEFAULT_SPEC.obs_shapes.items()}


def rows(batch: dict[str, torch.Tensor], picks: list[int]) -> dict[str, torch.Tensor]:
    """The E rows of each symbol index in `picks`, symbol-major."""
    index = torch.cat([torch.arange(s * E, (s + 1) * E) for s in picks])
    return {k: v[index] for k, v in batch.items()}


GROWTHS = {
    "actor_hidden": replace(BASE, actor_hidden=(40, 20)),
    "critic_hidden": replace(BASE, critic_hidden=(30, 12)),
    "d_ff": replace(BASE, encoder=replace(ENC, d_ff=64)),
    "n_layers": replace(BASE, encoder=replace(ENC, n_layers=3)),
    "out_dim": replace(BASE, encoder=replace(ENC, out_dim=24)),
    "all": replace(BASE, actor_hidden=(40, 20), critic_hidden=(30, 16),
                   encoder=replace(ENC, d_ff=48, n_layers=2, out_dim=20)),
}


@pytest.mark.parametrize("name", GROWTHS)
def test_zero_pad_growth_keeps_logits_and_values(name):
    source = trained()
    model, report = grown(GROWTHS[name], SYMBOLS, source, "zero_pad")
    batch = obs(len(SYMBOLS))
    with torch.no_grad():
        logits, values = source(batch)
        new_logits, new_values = model(batch)
    assert torch.allclose(new_logits, logits, atol=1e-5), name
    assert torch.allclose(new_values, values, atol=1e-5), name
    assert any(t.action in ("extended", "new") for t in report.tensors)


def test_zero_pad_growth_is_not_trivially_identical_under_copy_and_extend():
    """The zero_pad test above can fail: the same growth with random extensions moves the outputs."""
    source = trained()
    model, _ = grown(GROWTHS["critic_hidden"], SYMBOLS, source, "copy_and_extend")
    batch = obs(len(SYMBOLS))
    with torch.no_grad():
        assert not torch.allclose(model(batch)[1], source(batch)[1], atol=1e-5)


def test_copy_and_extend_copies_the_block_and_extends_at_a_tenth_of_the_std():
    source = trained()
    model, report = grown(replace(BASE, encoder=replace(ENC, d_ff=256)), SYMBOLS, source, "copy_and_extend")
    old = source.encoder.blocks[0].mlp.fc.weight  # (d_ff, D)
    new = model.encoder.blocks[0].mlp.fc.weight
    assert torch.equal(new[:32], old)
    ratio = float(new[32:].detach().std()) / (0.1 * float(old.detach().std()))
    assert 0.5 < ratio < 2.0
    wide = model.encoder.blocks[0].mlp.proj.weight  # (D, d_ff): new input columns, random too
    assert torch.equal(wide[:, :32], source.encoder.blocks[0].mlp.proj.weight)
    assert float(wide[:, 32:].detach().abs().max()) > 0
    actions = {t.key: t.action for t in report.tensors}
    assert actions["encoder.blocks.0.mlp.fc.weight"] == "extended"
    assert actions["encoder.blocks.0.ln_1.weight"] == "copied"


def test_d_model_growth_under_copy_and_extend_and_interpolate_keeps_the_old_channels():
    source = trained()
    config = replace(BASE, encoder=replace(ENC, d_model=32))
    for strategy in ("copy_and_extend", "interpolate"):
        model, _ = grown(config, SYMBOLS, source, strategy)
        qkv_old = source.encoder.blocks[0].attn.qkv.weight.unflatten(0, (3, 2, 8))  # (3, nh, hs, D)
        qkv_new = model.encoder.blocks[0].attn.qkv.weight.unflatten(0, (3, 2, 16))
        assert torch.equal(qkv_new[:, :, :8, :16], qkv_old), strategy  # each head's channels in place


def test_zero_pad_refuses_a_wider_d_model_and_says_why():
    with pytest.raises(TransferError, match="LayerNorm"):
        grown(replace(BASE, encoder=replace(ENC, d_model=32)), SYMBOLS, trained(), "zero_pad")


def test_interpolate_new_units_are_midpoints():
    source = trained()
    model, _ = grown(replace(BASE, actor_hidden=(26, 12)), SYMBOLS, source, "interpolate")
    old, new = source.actor.weight_0, model.actor.weight_0  # (S, in, out)
    assert torch.equal(new[..., :24], old)
    assert torch.allclose(new[..., 24], 0.5 * (old[..., 0] + old[..., 1]))
    assert torch.allclose(new[..., 25], 0.5 * (old[..., 1] + old[..., 2]))


@pytest.mark.parametrize("heads", ["mean", "fresh"])
def test_adding_symbols_keeps_existing_symbols_outputs(heads):
    source = trained()
    symbols = ["NEW1", "CCC", "AAA", "NEW2", "BBB"]  # kept symbols at other positions
    model, report = grown(BASE, symbols, source, "copy_and_extend", new_symbol_heads=heads)
    assert report.symbols_added == ["NEW1", "NEW2"]
    batch = obs(len(symbols))
    kept = [symbols.index(s) for s in SYMBOLS]
    with torch.no_grad():
        old_logits, old_values = source(rows(batch, kept))
        new_logits, new_values = model(batch)
    new_rows = torch.cat([torch.arange(s * E, (s + 1) * E) for s in kept])
    # allclose, not equal: batches of other sizes may round differently in the encoder's matmuls
    assert torch.allclose(new_logits[new_rows], old_logits, atol=1e-6)
    assert torch.allclose(new_values[new_rows], old_values, atol=1e-6)
    if heads == "mean":
        assert torch.allclose(model.critic.weight_0[0], source.critic.weight_0.mean(0))


def test_removing_a_symbol_keeps_the_others_outputs():
    source = trained()
    model, report = grown(BASE, ["CCC", "AAA"], source, "copy_and_extend")
    assert report.symbols_dropped == ["BBB"]
    batch = obs(2)
    with torch.no_grad():
        new_logits, new_values = model(batch)
        reference = MultiSymbolPolicy(["CCC", "AAA"], BASE, DEFAULT_SPEC).eval()
        reference.load_state_dict(source.state_dict_for(["CCC", "AAA"]))
        ref_logits, ref_values = reference(batch)
    assert torch.equal(new_logits, ref_logits)
    assert torch.equal(new_values, ref_values)


def test_observation_shape_change_is_refused_with_the_reason():
    source = trained()
    old_shapes = {**DEFAULT_SPEC.obs_shapes, "technical": (48, DEFAULT_SPEC.obs_shapes["technical"][1])}
    model = MultiSymbolPolicy(SYMBOLS, BASE, DEFAULT_SPEC)
    with pytest.raises(TransferError, match="observation or action shapes differ.*technical"):
        transfer_weights(source.state_dict(), SYMBOLS, BASE, old_shapes, DEFAULT_SPEC.num_actions, model,
                         "copy_and_extend")


def test_head_depth_change_is_refused():
    with pytest.raises(TransferError, match="number of head layers"):
        grown(replace(BASE, actor_hidden=(24, 12, 6)), SYMBOLS, trained(), "zero_pad")


def test_report_lines_and_json(tmp_path):
    _, report = grown(GROWTHS["all"], ["AAA", "DDD"], trained(), "zero_pad")
    lines = report.lines()
    assert lines[0].startswith("transfer (zero_pad)")
    assert any("dropped" in line for line in lines)
    report.write(tmp_path / "transfer.json")
    data = json.loads((tmp_path / "transfer.json").read_text())
    assert data["symbols_added"] == ["DDD"] and data["symbols_dropped"] == ["BBB", "CCC"]
    assert {t["action"] for t in data["tensors"]} >= {"copied", "extended", "new"}


def test_encoder_blend_ends_are_exact():
    source = trained()
    fresh = MultiSymbolPolicy(SYMBOLS, BASE, DEFAULT_SPEC)
    fresh_state = {k: v.clone() for k, v in fresh.encoder.state_dict().items()}
    transferred = source.state_dict()
    blend_encoder(fresh, transferred, 0.0)
    assert all(torch.equal(v, fresh_state[k]) for k, v in fresh.encoder.state_dict().items())
    blend_encoder(fresh, transferred, 1.0)
    assert all(torch.equal(v, transferred[f"encoder.{k}"]) for k, v in fresh.encoder.state_dict().items())


# --- the trainer: --init-from and a --resume with another architecture -------------------------

def tiny_run(run_dir, *extra: str, steps: int = 128) -> list[str]:
    """synthetic symbols, 2 accounts each, 32 steps per iteration, a custom tiny encoder"""
    (run_dir.parent / "no_data").mkdir(exist_ok=True)  # an empty data folder: synthetic markets
    return ["--symbols", "AAA,BBB", "--data-dir", str(run_dir.parent / "no_data"), "--envs-per-symbol", "2",
            "--seed", "1", "--device", "cpu", "--run-dir", str(run_dir), "--total-steps", str(steps),
            "--set", "run.encoder_preset=custom", "--set", "model.encoder.n_layers=1",
            "--set", "model.encoder.d_model=16", "--set", "model.encoder.n_heads=2",
            "--set", "model.encoder.d_ff=32", "--set", "model.encoder.out_dim=16",
            "--set", "model.encoder.dropout=0.0", "--set", "model.actor_hidden=[16]",
            "--set", "model.critic_hidden=[16]", "--set", "run.num_steps=32", "--set", "env.episode_length=20",
            "--set", "run.eval_every=0", "--set", "run.torch_threads=1", *extra]


@pytest.mark.slow
def test_resume_with_a_grown_architecture_needs_a_strategy_then_trains_on(tmp_path, capsys):
    from trainers import checkpoints
    from trainers.ppo import main
    run_dir = tmp_path / "run"
    assert main(tiny_run(run_dir)) == 0
    grow = ["--set", "model.encoder.d_ff=48", "--set", "model.encoder.n_layers=2", "--set", "model.actor_hidden=[24]"]
    capsys.readouterr()
    assert main(tiny_run(run_dir, *grow, steps=256) + ["--resume", str(run_dir)]) == 2
    assert "--transfer-strategy" in capsys.readouterr().err
    assert main(tiny_run(run_dir, *grow, "--transfer-strategy", "zero_pad", steps=256)
                + ["--resume", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "transfer (zero_pad" in out and "optimizer state" in out
    assert checkpoints.latest(run_dir).step == 256
    report = json.loads((run_dir / "transfer.json").read_text())
    assert report["strategy"] == "zero_pad"


@pytest.mark.slow
def test_init_from_moves_weights_to_new_symbols_and_refuses_another_lookback(tmp_path, capsys):
    from trainers import checkpoints
    from trainers.ppo import main
    source = tmp_path / "source"
    assert main(tiny_run(source)) == 0
    target = tmp_path / "target"
    assert main(tiny_run(target, "--init-from", str(source)) + ["--symbols", "BBB,CCC"]) == 0
    report = json.loads((target / "transfer.json").read_text())
    assert report["symbols_added"] == ["CCC"] and report["symbols_dropped"] == ["AAA"]
    assert checkpoints.latest(target).step == 128  # a fresh run: counters from 0
    capsys.readouterr()
    other = tmp_path / "other"
    assert main(tiny_run(other, "--init-from", str(source), "--set", "env.lookback=12")) == 2
    assert "observation or action shapes differ" in capsys.readouterr().err
    assert not other.exists()


@pytest.mark.slow
def test_init_encoder_from_blends_only_the_encoder(tmp_path):
    from trainers import checkpoints
    from trainers.ppo import main
    source = tmp_path / "source"
    assert main(tiny_run(source)) == 0
    target = tmp_path / "target"
    assert main(tiny_run(target, "--init-encoder-from", str(source), "--encoder-blend", "0.5")) == 0
    report = json.loads((target / "transfer.json").read_text())
    assert any("alpha 0.5" in note for note in report["notes"])
    assert checkpoints.latest(target).step == 128
