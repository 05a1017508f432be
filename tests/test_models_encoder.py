"""FeatureEncoder: shapes, finiteness, batch independence, gradient flow, fused attention, budget."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from envs import DEFAULT_SPEC, EnvConfig, TradingSpec
from models import EncoderConfig, FeatureEncoder
from models import encoder as encoder_module
from models.encoder import batched_attention

SMALL = dict(n_layers=2, d_model=32, n_heads=4, d_ff=64, out_dim=16, dropout=0.0, pool="mean")
SHAPES = DEFAULT_SPEC.obs_shapes
LOOKBACK = SHAPES["technical"][0]


def make_obs(shapes: dict, n: int, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(n, *s, generator=g, dtype=dtype) for k, s in shapes.items()}


@settings(max_examples=15, deadline=None)
@given(batch=st.integers(1, 9), lookback=st.integers(1, 30), n_heads=st.sampled_from([1, 2, 4]),
       out_dim=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_output_shapes_and_finite(batch, lookback, n_heads, out_dim, seed):
    config = EncoderConfig(**{**SMALL, "n_heads": n_heads, "out_dim": out_dim})
    shapes = TradingSpec.from_config(EnvConfig(lookback=lookback)).obs_shapes
    torch.manual_seed(seed)
    encoder = FeatureEncoder(config, shapes)
    obs = make_obs(shapes, batch, seed)
    pooled = encoder(obs)
    sequence = encoder(obs, return_sequence=True)
    assert pooled.shape == (batch, out_dim)
    # one token per bar of the technical window and one per vector key
    assert sequence.shape == (batch, lookback + len(shapes) - 1, config.d_model)
    assert torch.isfinite(pooled).all() and torch.isfinite(sequence).all()


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(2, 8), row=st.integers(0, 7), seed=st.integers(0, 2**16))
def test_batch_independence_in_eval_mode(batch, row, seed):
    row = row % batch
    config = EncoderConfig(**{**SMALL, "dropout": 0.3})
    torch.manual_seed(seed)
    encoder = FeatureEncoder(config, SHAPES).double().eval()
    obs = make_obs(SHAPES, batch, seed, torch.float64)
    other = make_obs(SHAPES, batch, seed + 1, torch.float64)
    # Same row, completely different neighbours.
    mixed = {k: torch.cat([other[k][:row], obs[k][row:row + 1], other[k][row + 1:]]) for k in obs}
    alone = {k: v[row:row + 1] for k, v in obs.items()}
    with torch.no_grad():
        expected = encoder(obs)[row]
        torch.testing.assert_close(encoder(mixed)[row], expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(encoder(alone)[0], expected, rtol=1e-10, atol=1e-10)


def test_gradients_reach_every_parameter():
    config = EncoderConfig(**{**SMALL, "dropout": 0.1})
    torch.manual_seed(0)
    encoder = FeatureEncoder(config, SHAPES).train()
    encoder(make_obs(SHAPES, 6)).square().sum().backward()
    for name, param in encoder.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert param.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_batched_attention_matches_the_fused_kernel():
    """The CPU path's two batched matmuls compute what scaled_dot_product_attention does, values
    and gradients, in float32 and (within bf16's precision) under bf16 autocast."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(5, 4, 29, 16, requires_grad=True) for _ in range(3))
    ours = batched_attention(q, k, v)
    reference = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    grads = torch.autograd.grad(ours.square().sum(), (q, k, v))
    reference_grads = torch.autograd.grad(reference.square().sum(), (q, k, v))
    for got, want in zip(grads, reference_grads):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = batched_attention(q, k, v)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, atol=5e-2, rtol=5e-2)


def test_cpu_encoder_equals_the_fused_kernel_encoder(monkeypatch):
    """Swapping the CPU attention for the fused kernel (CUDA's path) leaves the encoder's output
    unchanged: the two devices run one model."""
    config = EncoderConfig(**SMALL)
    torch.manual_seed(0)
    encoder = FeatureEncoder(config, SHAPES).eval()
    obs = make_obs(SHAPES, 3)
    with torch.no_grad():
        ours = encoder(obs)
        monkeypatch.setattr(encoder_module, "batched_attention",
                            lambda q, k, v, dropout=0.0: F.scaled_dot_product_attention(q, k, v))
        fused = encoder(obs)
    torch.testing.assert_close(ours, fused, atol=1e-5, rtol=1e-5)


def test_token_order_matters():
    """Positions are added: swapping two bars of the lookback must change the output."""
    config = EncoderConfig(**SMALL)
    torch.manual_seed(0)
    encoder = FeatureEncoder(config, SHAPES).eval()
    obs = make_obs(SHAPES, 2)
    swapped = dict(obs, technical=obs["technical"][:, [1, 0, *range(2, LOOKBACK)]])
    with torch.no_grad():
        assert not torch.allclose(encoder(obs), encoder(swapped), atol=1e-5)


def test_default_size_matches_reference_and_budget():
    design = {key: shape for key, shape in SHAPES.items() if key != "rules"}  # DESIGN's 5 keys, 28 tokens
    encoder = FeatureEncoder(EncoderConfig(pool="mean"), design)
    params = sum(p.numel() for p in encoder.parameters())
    assert params == 3_239_168  # PERF-NOTES' reference encoder (4L-256D-8H, 28 tokens)
    assert abs(encoder.flops_per_sample() - 179.8e6) < 0.05e6  # PERF-NOTES: 179.8 MFLOP per sample
    assert "positions" not in encoder.state_dict()  # derived, not checkpointed
    # the env's spec adds the rules key: one more projection to d_model and one more token
    full = FeatureEncoder(EncoderConfig(pool="mean"), SHAPES)
    full_params = sum(p.numel() for p in full.parameters())
    assert full_params == params + (SHAPES["rules"][0] + 1) * 256 < 5_000_000
    assert full.n_tokens == encoder.n_tokens + 1 == 29


@pytest.mark.parametrize("field, kwargs", [
    ("d_model", dict(d_model=30, n_heads=4)),
    ("n_layers", dict(n_layers=0)),
    ("dropout", dict(dropout=1.0)),
    ("d_ff", dict(d_ff=2.5)),
])
def test_config_validation_names_the_field(field, kwargs):
    with pytest.raises(ValueError, match=f"^{field}:"):
        EncoderConfig(**kwargs)


def test_wrong_observation_shape_names_the_key():
    config = EncoderConfig(**SMALL)
    obs = make_obs(SHAPES, 3)
    obs["regime"] = torch.zeros(3, 9)
    with pytest.raises(ValueError, match="regime"):
        FeatureEncoder(config, SHAPES)(obs)
    del obs["regime"]
    with pytest.raises(KeyError, match="regime"):
        FeatureEncoder(config, SHAPES)(obs)


def test_tokens_follow_the_observation_spec():
    """A new vector key is one more token, with no encoder code or config change."""
    shapes = {**SHAPES, "streak": (2,)}
    encoder = FeatureEncoder(EncoderConfig(**SMALL), shapes)
    sequence = encoder(make_obs(shapes, 3), return_sequence=True)
    assert sequence.shape == (3, LOOKBACK + len(SHAPES), SMALL["d_model"])
    with pytest.raises(ValueError, match="obs_shapes"):
        FeatureEncoder(EncoderConfig(**SMALL), {**SHAPES, "bad": (2, 3, 4)})


def test_mean_last_pool_sees_the_newest_bar_directly():
    """With pool="mean_last" the newest bar's token is an input of the output layer on its own:
    zeroing the out-layer columns that read the mean leaves a function of that token alone."""
    torch.manual_seed(0)
    encoder = FeatureEncoder(EncoderConfig(**{**SMALL, "pool": "mean_last"}), SHAPES).eval()
    assert encoder.out.in_features == 2 * SMALL["d_model"]
    obs = make_obs(SHAPES, 2)
    with torch.no_grad():
        sequence = encoder(obs, return_sequence=True)
        expected = encoder.out(torch.cat([sequence.mean(1), sequence[:, LOOKBACK - 1]], dim=-1))
        torch.testing.assert_close(encoder(obs), expected)
    with pytest.raises(ValueError, match="pool"):
        EncoderConfig(pool="max")
