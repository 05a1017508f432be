"""Shared transformer feature encoder: an observation dict -> one feature vector per account.

Tokens: one per bar of the technical lookback (24) plus one per auxiliary key (4), each projected
to d_model by its own linear layer, plus fixed sinusoidal positions. Pre-LN blocks with fused
attention (`scaled_dot_product_attention`), a final LayerNorm, mean pooling, a linear output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.init import init_linear_

AUX_KEYS = ("sl_probs", "position", "portfolio", "regime")
OBS_KEYS = ("technical", *AUX_KEYS)


@dataclass
class EncoderConfig:
    lookback: int = 24
    """bars of technical history per observation; one token per bar"""
    technical_features: int = 23
    """features per bar in obs["technical"] (lookback, technical_features)"""
    sl_probs_dim: int = 3
    """width of obs["sl_probs"], the auxiliary model probabilities; one token"""
    position_dim: int = 5
    """width of obs["position"] (entry vs close, size, unrealised PnL, hold time, side); one token"""
    portfolio_dim: int = 8
    """width of obs["portfolio"] (equity, exposure, Sharpe, Sortino, ...); one token"""
    regime_dim: int = 10
    """width of obs["regime"] (volatility, trend, momentum, volume regimes); one token"""
    n_layers: int = 4
    """transformer blocks"""
    d_model: int = 256
    """token width D; must be divisible by n_heads"""
    n_heads: int = 8
    """attention heads; head size is d_model / n_heads"""
    d_ff: int = 1024
    """hidden width of each block's feed-forward layer"""
    dropout: float = 0.1
    """dropout on embeddings, attention weights and residual branches (train mode only)"""
    out_dim: int = 256
    """width of the pooled feature vector handed to the per-symbol heads"""

    def __post_init__(self) -> None:
        for name in ("lookback", "technical_features", "sl_probs_dim", "position_dim", "portfolio_dim",
                     "regime_dim", "n_layers", "d_model", "n_heads", "d_ff", "out_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model: {self.d_model} is not divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout: must be in [0, 1), got {self.dropout!r}")

    @property
    def aux_dims(self) -> dict[str, int]:
        """Width of each auxiliary observation key, in token order."""
        return {"sl_probs": self.sl_probs_dim, "position": self.position_dim,
                "portfolio": self.portfolio_dim, "regime": self.regime_dim}

    @property
    def n_tokens(self) -> int:
        return self.lookback + len(AUX_KEYS)

    def obs_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-row shape of every observation key (the env's single_observation_space)."""
        return {"technical": (self.lookback, self.technical_features),
                **{k: (d,) for k, d in self.aux_dims.items()}}

    def flops_per_sample(self) -> int:
        """Forward FLOPs (2 per multiply-add) of one observation, counting matmuls only."""
        t, d = self.n_tokens, self.d_model
        per_token = 2 * (3 * d * d + d * d + 2 * d * self.d_ff) + 2 * 2 * t * d  # qkv, proj, mlp, attn
        embed = 2 * d * (self.lookback * self.technical_features + sum(self.aux_dims.values()))
        return self.n_layers * t * per_token + embed + 2 * d * self.out_dim


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
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        # Not causal: every token sees the whole window (features are already causal in time).
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, D)  # (B, T, D)
        return self.resid_drop(self.proj(y))


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
    """obs dict with leading dim B -> (B, out_dim), or (B, T, D) tokens with return_sequence=True."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.technical_proj = nn.Linear(config.technical_features, config.d_model)
        self.aux_proj = nn.ModuleDict({k: nn.Linear(d, config.d_model) for k, d in config.aux_dims.items()})
        # Derived from the config, so kept out of the state dict (and out of checkpoints).
        self.register_buffer("positions", sinusoidal_positions(config.n_tokens, config.d_model),
                             persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.out = nn.Linear(config.d_model, config.out_dim)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # LayerNorms keep PyTorch's identity init (weight 1, bias 0).
        if isinstance(module, nn.Linear):
            init_linear_(module, "xavier_uniform")

    def forward(self, obs: dict[str, Tensor], return_sequence: bool = False) -> Tensor:
        self._check(obs)
        technical = self.technical_proj(obs["technical"])  # (B, L, D)
        aux = torch.stack([self.aux_proj[k](obs[k]) for k in AUX_KEYS], dim=1)  # (B, 4, D)
        x = self.drop(torch.cat([technical, aux], dim=1) + self.positions)  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)  # (B, T, D)
        if return_sequence:
            return x
        return self.out(x.mean(dim=1))  # (B, out_dim)

    def _check(self, obs: dict[str, Tensor]) -> None:
        missing = [k for k in OBS_KEYS if k not in obs]
        if missing:
            raise KeyError(f"FeatureEncoder: observation lacks keys {missing} (expected {list(OBS_KEYS)})")
        batch = obs["technical"].shape[0]
        for key, shape in self.config.obs_shapes().items():
            if tuple(obs[key].shape) != (batch, *shape):
                raise ValueError(f"FeatureEncoder: obs[{key!r}] has shape {tuple(obs[key].shape)}, "
                                 f"expected {(batch, *shape)} (B, ...) with B = {batch}")
