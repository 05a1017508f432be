"""Observation noise a rollout buffer can store as one integer: every observation's noise is the
contiguous slice of a fixed pool of standard normals that starts at a random offset, so the
update rebuilds it bit for bit with one gather (as cheap as gathering the lookback window itself).
"""
from __future__ import annotations

import torch
from torch import Tensor

POOL_SIZE = 1 << 22
"""standard normals in the pool (16 MB of float32); two observations' slices overlap with
probability ~2 x width / POOL_SIZE (0.03 % at the default width), and then only shifted"""


class NoisePool:
    """A fixed pool of standard normals drawn once from `seed`; slices of `width` values."""

    def __init__(self, width: int, seed: int, device: torch.device, size: int = POOL_SIZE) -> None:
        if not 0 < width <= size:
            raise ValueError(f"width: must be in 1..{size}, got {width}")
        generator = torch.Generator(device=device).manual_seed(seed)
        pool = torch.randn(size, generator=generator, device=device)
        self.num_offsets = size - width + 1
        self._slices = pool.as_strided((self.num_offsets, width), (1, 1))  # row o = pool[o : o + width]

    def offsets(self, count: int, generator: torch.Generator) -> Tensor:
        """(count,) int64 random slice offsets."""
        return torch.randint(0, self.num_offsets, (count,), generator=generator, device=self._slices.device)

    def slices(self, offsets: Tensor) -> Tensor:
        """(B,) offsets -> (B, width) float32 standard normals."""
        return self._slices.index_select(0, offsets)
