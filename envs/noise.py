"""Counter-based Gaussian noise: a pure function of integer keys, so a rollout buffer that stores
the key (8 bytes) instead of the noisy observation can rebuild it bit for bit in the update.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# splitmix64's finaliser constants, as the signed int64 values of the same bits
_MIX_1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX_2 = 0x94D049BB133111EB - (1 << 64)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_UNIT = 1.0 / (1 << 24)


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic: it copies the sign bit)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: Tensor) -> Tensor:
    """splitmix64's finaliser: every output bit depends on every input bit (int64 wraps on overflow)."""
    x = (x ^ _shift_right(x, 30)) * _MIX_1
    x = (x ^ _shift_right(x, 27)) * _MIX_2
    return x ^ _shift_right(x, 31)


def hashed_normal(keys: Tensor, counters: Tensor) -> Tensor:
    """Standard normal float32 samples, one per (key, counter) pair: keys (N,) int64 broadcast
    against counters (C,) int64 -> (N, C). Equal inputs give equal outputs on every device; distinct
    pairs give independent-looking draws (Box-Muller on two 24-bit uniforms of one 64-bit hash)."""
    bits = _mix(keys[:, None] * _GOLDEN + _mix(counters)[None, :])
    u1 = (_shift_right(bits, 40).float() + 0.5) * _UNIT  # (0, 1): the log stays finite
    u2 = ((_shift_right(bits, 16) & 0xFFFFFF).float() + 0.5) * _UNIT
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
