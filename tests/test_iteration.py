"""The one PPO iteration every caller shares: the ratio starts at 1 whatever the encoder settings,
and an action added to the table reaches env, policy, buffer, update and config."""
from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import ppo_core.learner
from configs.train import DEFAULT_CONFIG, resolve
from envs import DEFAULT_ACTIONS, Action
from trainers.run.build import open_session

ROOT = Path(__file__).resolve().parents[1]
TINY = ["run.symbols=['SPX', 'GOOGL']", f"run.data_dir='{ROOT / 'data'}'", "run.envs_per_symbol=4",
        "run.num_steps=8", "run.device='cpu'", "run.torch_threads=1", "env.episode_length=20",
        "model.actor_hidden=[16]", "model.critic_hidden=[16]", "run.total_steps=640"]
CUSTOM = ["run.encoder_preset='custom'", "model.encoder.n_layers=1", "model.encoder.d_model=16",
          "model.encoder.n_heads=2", "model.encoder.d_ff=32", "model.encoder.out_dim=16",
          "model.encoder.dropout=0.3"]


@pytest.mark.parametrize("settings", [
    pytest.param(["run.encoder_preset='small'", "ppo.amp='off'"], id="small"),
    pytest.param(["run.encoder_preset='full'", "ppo.amp='off'"], id="full", marks=pytest.mark.slow),
    pytest.param(CUSTOM + ["ppo.amp='off'"], id="custom-dropout-0.3"),
    pytest.param(["run.encoder_preset='small'", "ppo.amp='bf16'"], id="small-bf16"),
    pytest.param(["run.encoder_preset='small'", "ppo.amp='fp16'"], id="small-fp16"),
])
def test_ratio_is_one_before_the_first_gradient_step(tmp_path, monkeypatch, settings):
    """The update's first minibatch sees the log-probs the rollout recorded: rollout and update
    run the same network (dropout in train mode would make them differ by ~dropout). In float32
    the two passes differ only by GEMM blocking (rollout and minibatch row counts differ); under
    AMP the learner recomputes them at its own precision, so the ratio is exactly 1."""
    seen = []
    loss = ppo_core.learner.ppo_loss

    def recording_loss(new_logprob, old_logprob, *args, **kwargs):
        seen.append((new_logprob.detach().clone(), old_logprob.clone()))
        return loss(new_logprob, old_logprob, *args, **kwargs)

    monkeypatch.setattr(ppo_core.learner, "ppo_loss", recording_loss)
    session = open_session(resolve(DEFAULT_CONFIG, TINY + settings), tmp_path / "run")
    try:
        session.iterate()
    finally:
        session.close()
    new, old = seen[0]
    ratio = (new - old).exp()
    if "ppo.amp='off'" in settings:
        torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=1e-5)
    else:
        assert torch.equal(ratio, torch.ones_like(ratio))
    assert len(seen) > 1  # later minibatches follow gradient steps, so they may differ


def test_an_eighth_action_is_one_row_of_the_table(tmp_path):
    """SELL_QUARTER added to the table only: the env masks and fills it, the policy's heads and
    the buffer's masks grow to 8, a PPO update runs, and the run's config.toml keeps it."""
    quarter = Action("SELL_QUARTER", "sell", sell_fraction=0.25)
    config = resolve(DEFAULT_CONFIG, TINY + ["run.encoder_preset='small'"])
    config = replace(config, env=replace(config.env, actions=(*DEFAULT_ACTIONS, quarter)))
    session = open_session(config, tmp_path / "run")
    try:
        spec = session.env.trading_spec
        assert spec.num_actions == 8 and spec.action_id("SELL_QUARTER") == 7
        assert session.policy.actor.dims[-1] == 8 and session.buffer.masks.shape[-1] == 8
        before = [p.detach().clone() for p in session.policy.parameters()]
        result = session.iterate()
        session.save()
        executed = session.stats.summary().executed_share()["SELL_QUARTER"]
    finally:
        session.close()
    assert all(torch.isfinite(torch.tensor(v)) for v in result.scalars().values())
    assert any(not torch.equal(a, b) for a, b in zip(before, session.policy.parameters()))
    assert executed > 0  # the sampled policy chose it while holding, and the env executed it
    masks = session.buffer.masks[..., 7]
    assert masks.any() and not masks.all()  # valid only while holding
    written = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert written["env"]["actions"][-1] == {"name": "SELL_QUARTER", "kind": "sell", "buy_fraction": 0.0,
                                             "sell_fraction": 0.25}
