"""The KL anchor (ppo_core.anchor): KL(initial || current) against torch's reference, 0 at step N and
after, its gradient pulls the policy back toward the initial one, and a learner's update with a
decayed anchor is the update without one; the trainer logs it and checkpoints its reference."""
from __future__ import annotations

import pytest
import torch
from helpers import BATCH, tiny_args
from safetensors.torch import load_file

from ppo_core import KLAnchor, MLPActorCritic, PPOConfig, PPOLearner, RolloutBuffer, kl_divergence
from trainers.ppo import main as train_main
from trainers import checkpoints


def test_kl_divergence_matches_torch_and_ignores_masked_actions():
    generator = torch.Generator().manual_seed(0)
    p_logits, q_logits = torch.randn(2, 64, 5, generator=generator)
    expected = torch.distributions.kl_divergence(torch.distributions.Categorical(logits=p_logits),
                                                 torch.distributions.Categorical(logits=q_logits))
    torch.testing.assert_close(kl_divergence(p_logits.log_softmax(-1), q_logits.log_softmax(-1)), expected)
    mask = torch.rand(64, 5, generator=generator) > 0.4
    mask[:, 0] = True
    masked_p = p_logits.masked_fill(~mask, torch.finfo(torch.float32).min).log_softmax(-1)
    masked_q = q_logits.masked_fill(~mask, torch.finfo(torch.float32).min).log_softmax(-1)
    kl = kl_divergence(masked_p, masked_q)
    assert torch.isfinite(kl).all() and (kl >= -1e-6).all()
    reference = torch.distributions.kl_divergence(
        torch.distributions.Categorical(logits=p_logits.masked_fill(~mask, -float("inf"))),
        torch.distributions.Categorical(logits=q_logits.masked_fill(~mask, -float("inf"))))
    torch.testing.assert_close(kl, reference)


def test_the_coefficient_decays_linearly_to_zero_at_step_n():
    anchor = KLAnchor(0.01, 1000)
    assert anchor.coefficient(0) == 0.01
    assert anchor.coefficient(500) == pytest.approx(0.005)
    assert anchor.coefficient(1000) == 0.0 and anchor.coefficient(5000) == 0.0
    with pytest.raises(ValueError):
        KLAnchor(0.01, 0)


def test_the_anchors_gradient_pulls_the_policy_back_to_the_initial_one():
    torch.manual_seed(0)
    policy = MLPActorCritic(6, 4)
    anchor = KLAnchor(1.0, 10)
    anchor.capture(policy)
    obs = {"obs": torch.randn(256, 6)}
    assert anchor.divergence(policy, obs, None).item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        for p in policy.actor.parameters():
            p.add_(0.5 * torch.randn_like(p))
    start = anchor.divergence(policy, obs, None).item()
    assert start > 1e-3
    distance = lambda: sum((p - r).norm().item() for p, r in zip(policy.actor.parameters(),  # noqa: E731
                                                                   anchor.reference.actor.parameters()))
    before = distance()
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    for _ in range(50):
        optimizer.zero_grad()
        anchor.divergence(policy, obs, None).backward()
        optimizer.step()
    assert anchor.divergence(policy, obs, None).item() < 0.2 * start and distance() < before
    assert all(p.grad is None for p in anchor.reference.parameters())  # the reference stays frozen


def _learner_after_update(anchor_coef: float) -> tuple[list[torch.Tensor], float]:
    torch.manual_seed(1)
    policy = MLPActorCritic(3, 2, hidden=(8,))
    learner = PPOLearner(policy, PPOConfig(kl_anchor=0.5, kl_anchor_steps=100, num_minibatches=2,
                                           update_epochs=2, target_kl=0.0), "cpu")
    learner.anchor.capture(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    buffer = RolloutBuffer(8, 4, {"obs": (3,)}, "cpu")
    generator = torch.Generator().manual_seed(2)
    for t in range(8):
        obs = {"obs": torch.randn(4, 3, generator=generator)}
        with torch.no_grad():
            action, logprob, value = policy.act(obs)
        buffer.insert(t, obs, action, logprob, value, torch.randn(4, generator=generator), torch.zeros(4))
    advantages, returns = torch.randn(8, 4, generator=generator), torch.randn(8, 4, generator=generator)
    stats = learner.update(buffer, advantages, returns, ent_coef=0.0, progress=0.0,
                           generator=torch.Generator().manual_seed(3), anchor_coef=anchor_coef)
    return [p.detach().clone() for p in policy.parameters()], float(stats.steps.anchor_kl)


def test_a_decayed_anchor_changes_nothing_and_an_active_one_is_measured():
    off, kl_off = _learner_after_update(0.0)
    decayed, _ = _learner_after_update(KLAnchor(0.5, 100).coefficient(100))
    on, kl_on = _learner_after_update(0.5)
    assert all(torch.equal(a, b) for a, b in zip(off, decayed))
    assert kl_off == 0.0 and kl_on > 0.0
    assert any(not torch.equal(a, b) for a, b in zip(off, on))


def test_config_refuses_an_anchor_without_steps():
    with pytest.raises(ValueError, match="kl_anchor_steps"):
        PPOConfig(kl_anchor=0.01)
    with pytest.raises(ValueError, match="kl_anchor"):
        PPOConfig(kl_anchor=-1.0)


@pytest.mark.slow
def test_the_trainer_logs_the_anchor_and_a_resume_keeps_its_reference(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train_main(tiny_args(run_dir, 2) + ["--kl-anchor", "0.01", "--kl-anchor-steps", "200"]) == 0
    out = capsys.readouterr()
    assert "KL anchor: 0.01 x KL(initial policy || current)" in out.out + out.err
    first = checkpoints.latest(run_dir)
    reference = checkpoints.load_state(first)["learner"]["anchor"]["reference"]
    trained = load_file(first.weights)
    assert any(not torch.equal(reference[k], trained[k]) for k in reference)  # the start, not the trained policy
    assert train_main(["--resume", str(run_dir), "--total-steps", str(3 * BATCH)]) == 0
    resumed = checkpoints.load_state(checkpoints.latest(run_dir))["learner"]["anchor"]["reference"]
    assert all(torch.equal(reference[k], resumed[k]) for k in reference)
