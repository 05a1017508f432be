"""ppo_loss and explained_variance against hand computations."""
import math

import pytest
import torch

from ppo_core import explained_variance, ppo_loss

RATIOS = [1.5, 0.5, 1.1, 0.7, 1.5]
ADVANTAGES = [1.0, 1.0, -1.0, -1.0, -1.0]
OLD_VALUES = [0.0, 0.0, 0.0, 0.0, 0.0]
NEW_VALUES = [0.5, -0.1, 0.1, 1.0, 0.0]
RETURNS = [1.0, 1.0, -1.0, 0.0, 0.1]
ENTROPY = [0.5, 0.6, 0.7, 0.8, 0.9]


def run(clip_vloss=True, norm_adv=False, ratios=RATIOS, advantages=ADVANTAGES, ent_coef=0.01):
    t = lambda x: torch.tensor(x, dtype=torch.float64)
    new_logprobs = t([math.log(r) for r in ratios]).requires_grad_()
    old_logprobs = torch.zeros(len(ratios), dtype=torch.float64)
    loss, metrics = ppo_loss(new_logprobs, old_logprobs, t(advantages), t(NEW_VALUES[:len(ratios)]),
                             t(OLD_VALUES[:len(ratios)]), t(RETURNS[:len(ratios)]), t(ENTROPY[:len(ratios)]),
                             clip_coef=0.2, vf_coef=0.5, ent_coef=ent_coef, clip_vloss=clip_vloss,
                             norm_adv=norm_adv)
    return loss, metrics, new_logprobs


def test_clipped_surrogate_on_both_sides_of_the_clip_range():
    # per sample -min(r A, clip(r) A):
    #   r=1.5, A=+1 -> clipped at 1.2 -> -1.2     r=0.5, A=+1 -> unclipped -> -0.5
    #   r=1.1, A=-1 -> inside          ->  1.1     r=0.7, A=-1 -> clipped at 0.8 -> 0.8
    #   r=1.5, A=-1 -> unclipped (pessimistic)   -> 1.5
    _, metrics, _ = run()
    assert metrics.policy_loss.item() == pytest.approx((-1.2 - 0.5 + 1.1 + 0.8 + 1.5) / 5)
    assert metrics.clip_fraction.item() == pytest.approx(4 / 5)
    kl = sum((r - 1) - math.log(r) for r in RATIOS) / 5
    assert metrics.approx_kl.item() == pytest.approx(kl)


def test_clipped_samples_get_no_policy_gradient():
    loss, _, new_logprobs = run()
    loss.backward()
    grad = new_logprobs.grad
    # d/dlogp of -A r is -A r / B for unclipped samples, 0 where the clipped term is the max
    expected = [0.0, -1.0 * 0.5 / 5, 1.1 / 5, 0.0, 1.5 / 5]
    torch.testing.assert_close(grad, torch.tensor(expected, dtype=torch.float64))


def test_value_loss_clipped_and_unclipped():
    # unclipped squared errors: .25 1.21 1.21 1 .01; with the value change clipped to +-0.2
    # (0.5 -> 0.2, 1.0 -> 0.2): .64 1.21 1.21 .04 .01; the loss takes the elementwise max.
    _, clipped, _ = run(clip_vloss=True)
    _, unclipped, _ = run(clip_vloss=False)
    assert clipped.value_loss.item() == pytest.approx(0.5 * (0.64 + 1.21 + 1.21 + 1.0 + 0.01) / 5)
    assert unclipped.value_loss.item() == pytest.approx(0.5 * (0.25 + 1.21 + 1.21 + 1.0 + 0.01) / 5)


def test_total_loss_combines_terms_with_entropy_bonus():
    loss, m, _ = run(ent_coef=0.01)
    assert m.entropy.item() == pytest.approx(0.7)
    assert loss.item() == pytest.approx(m.policy_loss.item() + 0.5 * m.value_loss.item() - 0.01 * 0.7)
    loss_more_entropy, _, _ = run(ent_coef=0.1)
    assert loss_more_entropy.item() == pytest.approx(loss.item() - 0.09 * 0.7)


def test_advantage_normalisation_per_minibatch():
    # A = 1..4: mean 2.5, unbiased std sqrt(5/3) -> A_n = (-1.5, -0.5, 0.5, 1.5) / sqrt(5/3)
    ratios = [1.1, 1.0, 1.0, 1.0]
    _, m, _ = run(norm_adv=True, ratios=ratios, advantages=[1.0, 2.0, 3.0, 4.0])
    a_n = [a / math.sqrt(5 / 3) for a in (-1.5, -0.5, 0.5, 1.5)]
    assert m.policy_loss.item() == pytest.approx(-sum(r * a for r, a in zip(ratios, a_n)) / 4)
    # normalisation makes the loss invariant to an affine change of the advantages
    _, shifted, _ = run(norm_adv=True, ratios=ratios, advantages=[13.0, 23.0, 33.0, 43.0])
    assert shifted.policy_loss.item() == pytest.approx(m.policy_loss.item())


def test_broadcast_shapes_are_rejected():
    b = torch.zeros(4)
    with pytest.raises(ValueError, match="new_values"):
        ppo_loss(b, b, b, b[:, None], b, b, b, clip_coef=0.2, vf_coef=0.5, ent_coef=0.0,
                 clip_vloss=True, norm_adv=False)


def test_explained_variance():
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(returns, returns).item() == pytest.approx(1.0)
    assert explained_variance(torch.full((4,), 2.5), returns).item() == pytest.approx(0.0)
    # residuals 2.5 - returns have the same variance as the returns -> 0, not 1
    assert explained_variance(returns * 2 - 2.5, returns).item() == pytest.approx(0.0)
    assert math.isnan(explained_variance(returns, torch.ones(4)).item())


def test_advantages_standardised_per_group():
    """adv_groups=2 on a group-major minibatch: each half is standardised on its own. With all
    ratios 1 the policy loss is -mean(normalised advantages), and the gradient on each sample's
    log-prob is -(its normalised advantage) / B."""
    advantages = [1.0, 2.0, 3.0, 100.0, 300.0, 200.0]
    t = lambda x: torch.tensor(x, dtype=torch.float64)
    new_logprobs = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(6, dtype=torch.float64)
    loss, _ = ppo_loss(new_logprobs, zeros, t(advantages), zeros, zeros, zeros, zeros, clip_coef=0.2,
                       vf_coef=0.0, ent_coef=0.0, clip_vloss=False, norm_adv=True, adv_groups=2)
    loss.backward()
    expected = torch.tensor([-1.0, 0.0, 1.0, -1.0, 1.0, 0.0], dtype=torch.float64)  # std 1 per half
    torch.testing.assert_close(-new_logprobs.grad * 6, expected, rtol=1e-6, atol=1e-6)


def test_one_sample_per_group_standardises_the_whole_minibatch():
    """A 1-sample group has no spread: the minibatch (here one sample per group) is standardised
    whole, so the loss stays finite and equals the ungrouped one."""
    advantages = torch.tensor([1.0, 4.0, -2.0], dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    losses = []
    for groups in (3, 1):
        new_logprobs = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        loss, _ = ppo_loss(new_logprobs, zeros, advantages, zeros, zeros, zeros, zeros, clip_coef=0.2,
                           vf_coef=0.0, ent_coef=0.0, clip_vloss=False, norm_adv=True, adv_groups=groups)
        loss.backward()
        losses.append((loss.detach(), new_logprobs.grad))
    assert torch.isfinite(losses[0][0]) and torch.isfinite(losses[0][1]).all()
    expected = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    torch.testing.assert_close(-losses[0][1] * 3, expected)
    torch.testing.assert_close(losses[0][1], losses[1][1])
