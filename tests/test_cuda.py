"""The GPU path end to end (skipped without a CUDA device; bench/gpu_suite.sh runs them): the device
profile, a whole trainer iteration under each AMP mode with the first ratio exactly 1, the fused
attention kernel against the CPU's batched matmuls, and the env's step on the device."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import ppo_core
import ppo_core.learner
from configs.train import DEFAULT_CONFIG, resolve
from envs import VecTradingEnv
from models import EncoderConfig, FeatureEncoder
from trainers.run.build import open_session

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[1]
TINY = ["run.symbols=['SPX', 'GOOGL']", f"run.data_dir='{ROOT / 'data'}'", "run.envs_per_symbol=8",
        "run.num_steps=16", "run.device='cuda'", "env.episode_length=40", "run.total_steps=2560",
        "run.eval_every=0"]


def test_the_device_profile_on_cuda_is_fp16_full_encoder_and_final_obs_always():
    config = resolve(DEFAULT_CONFIG, ["run.device='cuda'"])
    assert (config.ppo.amp, config.run.encoder_preset, config.run.final_obs) == ("fp16", "full", "always")


@pytest.mark.parametrize("amp", ["fp16", "bf16", "off"])
def test_a_cuda_iteration_starts_at_ratio_one_under_every_amp_mode(tmp_path, monkeypatch, amp):
    seen = []
    loss = ppo_core.learner.ppo_loss
    monkeypatch.setattr(ppo_core.learner, "ppo_loss",
                        lambda new, old, *a, **k: seen.append((new.detach().clone(), old.clone())) or loss(new, old, *a, **k))
    session = open_session(resolve(DEFAULT_CONFIG, TINY + [f"ppo.amp='{amp}'"]), tmp_path / "run")
    try:
        result = session.iterate()
    finally:
        session.close()
    new, old = seen[0]
    assert new.device.type == "cuda"
    if amp == "off":
        torch.testing.assert_close(new, old, rtol=0, atol=1e-5)
    else:
        assert torch.equal(new, old)
    assert result.update.epochs_run >= 1
    assert all(torch.isfinite(p).all() for p in session.policy.parameters())


def test_the_fused_cuda_attention_matches_the_cpu_encoder():
    torch.manual_seed(0)
    shapes = {"technical": (24, 23), "position": (4,)}
    encoder = FeatureEncoder(EncoderConfig(n_layers=2, d_model=64, n_heads=4, d_ff=128, out_dim=32, dropout=0.0),
                             shapes).eval()
    obs = {k: torch.randn(16, *shape) for k, shape in shapes.items()}
    with torch.no_grad():
        cpu = encoder(obs)
        gpu = encoder.cuda()({k: v.cuda() for k, v in obs.items()})
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)


def test_the_env_steps_on_the_device():
    env = VecTradingEnv(["SPX", "GOOGL"], 64, device="cuda", data_dir=str(ROOT / "data"), seed=0)
    obs, _ = env.reset(seed=0)
    assert all(value.device.type == "cuda" for value in obs.values())
    for _ in range(5):
        masks = env.action_masks()
        actions = torch.multinomial(masks.float(), 1).squeeze(-1)
        obs, reward, terminated, truncated, info = env.step(actions)
    assert reward.device.type == "cuda" and torch.isfinite(reward).all()
    assert info["equity"].device.type == "cuda" and (info["equity"] > 0).all()


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_the_trainers_optimizer_step_never_waits_for_the_device(tmp_path, amp):
    """The real policy (encoder, grouped heads, masks) through one PPO step with torch's sync debug
    mode raising on any device-to-host synchronisation."""
    session = open_session(resolve(DEFAULT_CONFIG, TINY + [f"ppo.amp='{amp}'"]), tmp_path / "run")
    try:
        result = session.iterate()  # fills the buffer and allocates the optimizer's state
        buffer, cfg = session.buffer, session.config.ppo
        advantages, returns = ppo_core.compute_gae(buffer.rewards, buffer.values, buffer.dones,
                                                   result.rollout.last_values, cfg.gamma, cfg.gae_lambda)
        minibatch = next(buffer.minibatches(advantages, returns, 4, num_groups=2, generator=session.generator))
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            session.learner._step(minibatch, ent_coef=0.01, clip_coef=0.2, num_groups=2)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    finally:
        session.close()
