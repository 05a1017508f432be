"""MultiSymbolPolicy: masking, entropy, act/evaluate agreement, symbol-major layout, budgets."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import DEFAULT_SPEC
from models import EncoderConfig, MultiSymbolPolicy, PolicyConfig

SMALL = EncoderConfig(n_layers=1, d_model=32, n_heads=4, d_ff=64, out_dim=16, dropout=0.1, pool="mean")
A = DEFAULT_SPEC.num_actions
HOLD = DEFAULT_SPEC.hold_id


def make_policy(num_symbols: int, seed: int = 0, **kwargs) -> MultiSymbolPolicy:
    torch.manual_seed(seed)
    config = PolicyConfig(encoder=SMALL, actor_hidden=(24, 12), critic_hidden=(24, 12), **kwargs)
    return MultiSymbolPolicy([f"SYM{s}" for s in range(num_symbols)], config, DEFAULT_SPEC).eval()


def make_obs(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, *s, generator=g) for k, s in DEFAULT_SPEC.obs_shapes.items()}


def random_mask(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, A, generator=g) < 0.5
    mask[:, HOLD] = True  # HOLD is always valid
    return mask


def sharpen(policy: MultiSymbolPolicy) -> None:
    """Larger actor output weights so the distribution is far from uniform (tests bite harder)."""
    with torch.no_grad():
        policy.actor.weight_2.mul_(300.0)


@settings(max_examples=15, deadline=None)
@given(symbols=st.integers(1, 4), per_symbol=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_masked_probability_zero_and_entropy_over_valid_actions(symbols, per_symbol, seed):
    policy = make_policy(symbols, seed)
    sharpen(policy)
    n = symbols * per_symbol
    obs, mask = make_obs(n, seed), random_mask(n, seed)
    with torch.no_grad():
        masked_logits, _ = policy(obs, mask)
        raw_logits, _ = policy(obs)
        _, entropy, _ = policy.evaluate(obs, torch.zeros(n, dtype=torch.long), mask)
    probs = masked_logits.softmax(-1)
    assert (probs[~mask] == 0).all()
    for row in range(n):  # independent reference: renormalise over the valid actions only
        p = raw_logits[row, mask[row]].double().softmax(-1)
        expected = -(p * p.log()).sum()
        assert math.isclose(entropy[row].item(), expected.item(), rel_tol=1e-4, abs_tol=1e-5)
        torch.testing.assert_close(probs[row, mask[row]].double(), p, rtol=1e-4, atol=1e-6)


def test_masking_under_bf16_autocast():
    policy = make_policy(2)
    sharpen(policy)
    obs, mask = make_obs(8), random_mask(8, 1)
    mask[:] = False  # the hardest case: only HOLD valid
    mask[:, HOLD] = True
    mask[::2, DEFAULT_SPEC.action_id("BUY_LARGE")] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert policy.actor(torch.zeros(2, 1, 16)).dtype == torch.bfloat16  # the heads really run in bf16
        logits, value = policy(obs, mask)
        actions, logprob, _ = policy.act(obs, mask)
        new_logprob, entropy, _ = policy.evaluate(obs, actions, mask)
    assert logits.dtype == logprob.dtype == entropy.dtype == value.dtype == torch.float32
    assert (logits.softmax(-1)[~mask] == 0).all()
    assert mask.gather(1, actions[:, None]).all()
    assert torch.isfinite(entropy).all() and torch.isfinite(new_logprob).all()
    assert (entropy[1::2] == 0).all()  # a single valid action has zero entropy, exactly
    torch.testing.assert_close(new_logprob, logprob)


@settings(max_examples=15, deadline=None)
@given(symbols=st.integers(1, 4), per_symbol=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_act_logprob_equals_evaluate_and_sampling_respects_mask(symbols, per_symbol, seed):
    policy = make_policy(symbols, seed)
    n = symbols * per_symbol
    obs, mask = make_obs(n, seed), random_mask(n, seed)
    torch.manual_seed(seed)
    for _ in range(20):
        actions, logprob, value = policy.act(obs, mask)
        assert actions.dtype == torch.long and actions.shape == (n,)
        assert mask.gather(1, actions[:, None]).all(), "sampled a masked action"
        new_logprob, _, new_value = policy.evaluate(obs, actions, mask)
        torch.testing.assert_close(new_logprob, logprob, rtol=0, atol=0)
        torch.testing.assert_close(new_value, value, rtol=0, atol=0)
    torch.testing.assert_close(policy.value(obs), value, rtol=0, atol=0)


def test_deterministic_act_is_argmax_over_valid_actions():
    policy = make_policy(2)
    sharpen(policy)
    obs, mask = make_obs(6), random_mask(6, 3)
    with torch.no_grad():
        raw, _ = policy(obs)
    expected = raw.masked_fill(~mask, -math.inf).argmax(-1)
    assert torch.equal(policy.act(obs, mask, deterministic=True)[0], expected)


def test_gradients_are_finite_and_reach_every_parameter_through_evaluate():
    policy = make_policy(3).train()
    obs, mask = make_obs(9), random_mask(9, 0)
    logprob, entropy, value = policy.evaluate(obs, torch.zeros(9, dtype=torch.long), mask)
    (logprob.sum() - entropy.sum() + value.square().sum()).backward()
    for name, param in policy.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_rows_are_symbol_major():
    """Row n must be row n's features through symbol n // E's heads, and land back in row n."""
    symbols, per_symbol = 3, 4
    policy = make_policy(symbols)
    sharpen(policy)
    obs = make_obs(symbols * per_symbol)
    with torch.no_grad():
        logits, value = policy(obs)
        features = policy.encoder(obs)  # (N, D), no grouping involved
        for n in range(symbols * per_symbol):
            every_group = features[n].expand(symbols, 1, -1)  # (S, 1, D): row n through all heads
            torch.testing.assert_close(logits[n], policy.actor(every_group)[n // per_symbol, 0])
            torch.testing.assert_close(value[n], policy.critic(every_group)[n // per_symbol, 0, 0])


def test_batch_not_divisible_by_symbols_is_a_clear_error():
    policy = make_policy(3)
    with pytest.raises(ValueError, match="not divisible by 3 symbols"):
        policy.act(make_obs(7))


def test_bad_mask_and_bad_symbols_raise():
    policy = make_policy(2)
    with pytest.raises(ValueError, match="action_mask"):
        policy(make_obs(4), torch.ones(4, A))
    with pytest.raises(ValueError, match="duplicates"):
        MultiSymbolPolicy(["SPY", "SPY"], PolicyConfig(encoder=SMALL), DEFAULT_SPEC)
    with pytest.raises(ValueError, match="^init:"):
        PolicyConfig(init="lecun")


def test_parameter_budgets_at_143_symbols():
    policy = MultiSymbolPolicy([f"S{i}" for i in range(143)], PolicyConfig(encoder=EncoderConfig(pool="mean")),
                               DEFAULT_SPEC)
    counts = policy.count_parameters()
    actor = (256 * 256 + 256) + (256 * 128 + 128) + (128 * A + A)
    critic = (256 * 256 + 256) + (256 * 128 + 128) + (128 * 1 + 1)
    assert counts["heads_per_symbol"] == actor + critic < 10_000_000 / 10
    assert counts["encoder"] < 5_000_000
    assert counts["total"] == sum(p.numel() for p in policy.parameters())
    assert counts["sharing_saving"] > 0.60
    separate = 143 * (counts["encoder"] + actor + critic)
    assert math.isclose(counts["sharing_saving"], 1 - counts["total"] / separate)


def test_cpu_inference_chunks_give_the_same_outputs():
    policy = make_policy(3)
    obs, mask = make_obs(3 * 5), random_mask(15, 2)
    with torch.no_grad():
        policy.cpu_inference_chunk = None
        logits, value = policy(obs, mask)
        policy.cpu_inference_chunk = 4  # 15 rows -> chunks of 4, 4, 4, 3 that straddle symbols
        chunked_logits, chunked_value = policy(obs, mask)
    torch.testing.assert_close(chunked_logits, logits, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked_value, value, rtol=1e-6, atol=1e-6)


def test_flops_per_sample_counts_the_encoder_and_one_symbols_heads():
    """Heads add 2 x in x out per layer of one actor and one critic, whatever the symbol count."""
    config = PolicyConfig(encoder=EncoderConfig(n_layers=1, d_model=32, n_heads=4, d_ff=64, out_dim=48,
                                                pool="mean"),
                          actor_hidden=(40, 20), critic_hidden=(24,))
    one, three = (MultiSymbolPolicy([f"S{i}" for i in range(n)], config, DEFAULT_SPEC) for n in (1, 3))
    heads = 2 * (48 * 40 + 40 * 20 + 20 * DEFAULT_SPEC.num_actions) + 2 * (48 * 24 + 24 * 1)
    assert one.flops_per_sample() == three.flops_per_sample() == one.encoder.flops_per_sample() + heads
