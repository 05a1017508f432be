"""Shared transformer feature encoder: an observation dict -> one feature vector per account.

Tokens follow the observation spec's keys in order: a (bars, features) sequence key (the
technical window, 24 bars) gives one token per bar, a vector key (sl_probs, position, portfolio,
regime) gives one token; each key has its own linear projection to d_model. Fixed sinusoidal
positions, pre-LN blocks (attention as batched matmuls on CPU, the fused kernel on CUDA), a final LayerNorm,
mean pooling (by default with the newest bar's token beside the mean), a linear output. The
observation shapes come from the env's TradingSpec, never from this config.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from models.init import init_linear_


@dataclass
class EncoderConfig:
    n_layers: int = 4
    """transformer blocks"""
    d_model: int = 256
    """token width D; must be divisible by n_heads"""
    n_heads: int = 8
    """attention heads; head size is d_model / n_heads"""
    d_ff: int = 1024
    """hidden width of each block's feed-forward layer"""
    dropout: float = 0.1
    """dropout on embeddings, attention weights and residual branches, in train mode only. PPO
    runs the policy in eval mode for rollouts and updates alike, so it never applies there; it is
    for supervised use of the encoder"""
    out_dim: int = 256
    """width of the pooled feature vector handed to the per-symbol heads"""
    pool: Literal["mean", "mean_last"] = "mean_last"
    """mean = the mean of every token's final state (DESIGN's); mean_last = that mean concatenated
    with the final state of the newest bar's token, so the latest bar reaches the heads undiluted by
    the other tokens (bench/learning.py: the signal sits in the last bar)"""

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_ff", "out_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model: {self.d_model} is not divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout!r}")
        if self.pool not in ("mean", "mean_last"):
            raise ValueError(f"pool: must be 'mean' or 'mean_last', got {self.pool!r}")


def count_tokens(obs_shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Tokens per observation: the length of each (bars, features) key plus one per vector key."""
    for key, shape in obs_shapes.items():
        if len(shape) not in (1, 2) or min(shape) < 1:
            raise ValueError(f"obs_shapes[{key!r}]: expected (features,) or (bars, features), got {shape}")
    return sum(shape[0] if len(shape) == 2 else 1 for shape in obs_shapes.values())


def sinusoidal_positions(n_tokens: int, d_model: int) -> Tensor:
    """(T, D) fixed positions of "Attention Is All You Need": sin on even, cos on odd channels."""
    position = torch.arange(n_tokens, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(n_tokens, d_model)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: d_model // 2])
    return table


class SelfAttention(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        assert config.d_model % config.n_heads == 0
        self.n_heads = config.n_heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, D = x.shape
        q, k, v = rearrange(self.qkv(x), "b t (three h s) -> three b h t s", three=3, h=self.n_heads)
        dropout = self.dropout if self.training else 0.0
        # Not causal: every token sees the whole window (features are already causal in time).
        if x.device.type == "cuda":
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)  # (B, nh, T, hs)
        else:
            y = batched_attention(q, k, v, dropout)
        return self.resid_drop(self.proj(rearrange(y, "b h t s -> b t (h s)")))


def batched_attention(q: Tensor, k: Tensor, v: Tensor, dropout: float = 0.0) -> Tensor:
    """Softmax attention of (B, nh, T, hs) queries, keys and values as two batched matmuls over
    all B x nh heads, the softmax in float32 whatever autocast gives the matmuls.

    On CPU this beats `scaled_dot_product_attention`'s flash kernel for short windows: that kernel
    tiles each of the B x nh (T, T) problems on its own, and its bf16 backward ran ~8x slower than
    its fp32 one (docs/results.md, "The update's speed"). CUDA keeps the fused kernel.
    """
    scores = torch.matmul(q, k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, nh, T, T)
    weights = F.dropout(scores.float().softmax(dim=-1), dropout).to(v.dtype)
    return torch.matmul(weights, v)  # (B, nh, T, hs)


class FeedForward(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, config.d_ff)
        self.proj = nn.Linear(config.d_ff, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = FeedForward(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class FeatureEncoder(nn.Module):
    """obs dict with leading dim B -> (B, out_dim), or (B, T, D) tokens with return_sequence=True.

    `obs_shapes` (key -> per-row shape, in token order) is the env spec's `obs_shapes`.
    """

    def __init__(self, config: EncoderConfig, obs_shapes: Mapping[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.config = config
        self.obs_shapes = {key: tuple(shape) for key, shape in obs_shapes.items()}
        self.n_tokens = count_tokens(self.obs_shapes)
        self.proj = nn.ModuleDict({key: nn.Linear(shape[-1], config.d_model)
                                   for key, shape in self.obs_shapes.items()})
        # Derived from the config, so kept out of the state dict (and out of checkpoints).
        self.register_buffer("positions", sinusoidal_positions(self.n_tokens, config.d_model),
                             persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        first_shape = next(iter(self.obs_shapes.values()))
        if config.pool == "mean_last" and len(first_shape) != 2:
            raise ValueError("pool: 'mean_last' needs a (bars, features) key first in the observation spec")
        self.newest = first_shape[0] - 1  # with mean_last: the newest bar, last token of that key
        pooled = config.d_model * (2 if config.pool == "mean_last" else 1)
        self.out = nn.Linear(pooled, config.out_dim)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # LayerNorms keep PyTorch's identity init (weight 1, bias 0).
        if isinstance(module, nn.Linear):
            init_linear_(module, "xavier_uniform")

    def forward(self, obs: dict[str, Tensor], return_sequence: bool = False) -> Tensor:
        self._check(obs)
        # a sequence key projects to (B, L, D); a vector key to one (B, 1, D) token
        tokens = [self.proj[key](obs[key]) if len(shape) == 2 else self.proj[key](obs[key]).unsqueeze(1)
                  for key, shape in self.obs_shapes.items()]
        x = self.drop(torch.cat(tokens, dim=1) + self.positions)  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)  # (B, T, D)
        if return_sequence:
            return x
        pooled = x.mean(dim=1)  # (B, D)
        if self.config.pool == "mean_last":
            pooled = torch.cat([pooled, x[:, self.newest]], dim=-1)  # (B, 2D)
        return self.out(pooled)  # (B, out_dim)

    def flops_per_sample(self) -> int:
        """Forward FLOPs (2 per multiply-add) of one observation, counting matmuls only."""
        cfg, t, d = self.config, self.n_tokens, self.config.d_model
        per_token = 2 * (3 * d * d + d * d + 2 * d * cfg.d_ff) + 2 * 2 * t * d  # qkv, proj, mlp, attn
        embed = 2 * d * sum(math.prod(shape) for shape in self.obs_shapes.values())
        return cfg.n_layers * t * per_token + embed + 2 * self.out.in_features * cfg.out_dim

    def _check(self, obs: dict[str, Tensor]) -> None:
        missing = [k for k in self.obs_shapes if k not in obs]
        if missing:
            raise KeyError(f"FeatureEncoder: observation lacks keys {missing} "
                           f"(expected {list(self.obs_shapes)})")
        batch = obs[next(iter(self.obs_shapes))].shape[0]
        for key, shape in self.obs_shapes.items():
            if tuple(obs[key].shape) != (batch, *shape):
                raise ValueError(f"FeatureEncoder: obs[{key!r}] has shape {tuple(obs[key].shape)}, "
                                 f"expected {(batch, *shape)} (B, ...) with B = {batch}")
