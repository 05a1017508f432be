"""envs.features.ema (one convolution) against the recurrence that defines it."""
from __future__ import annotations

import torch
from hypothesis import given, settings, strategies as st

from envs.features import ema


def recurrence(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """s[t] = s[t-1] + alpha (x[t] - s[t-1]), s[-1] = x[0]: the EMA's definition, bar by bar."""
    out, state = torch.empty_like(x), x[..., 0]
    for t in range(x.shape[-1]):
        state = state + alpha * (x[..., t] - state)
        out[..., t] = state
    return out


@settings(max_examples=30, deadline=None)
@given(length=st.integers(1, 700), span=st.floats(1.0, 60.0), seed=st.integers(0, 2**16))
def test_ema_matches_the_recurrence(length: int, span: float, seed: int) -> None:
    x = 100 + torch.randn(length, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(seed)).cumsum(0)
    torch.testing.assert_close(ema(x, span), recurrence(x, torch.tensor(2 / (span + 1), dtype=x.dtype)),
                               rtol=0, atol=1e-9)


def test_several_spans_in_one_pass_match_one_at_a_time() -> None:
    x = torch.randn(3, 400, dtype=torch.float64).cumsum(-1)
    spans = torch.tensor([2.0, 12.0, 26.0], dtype=torch.float64)
    together = ema(x, spans)
    for row, span in enumerate(spans):
        torch.testing.assert_close(together[row], recurrence(x[row], 2 / (span + 1)), rtol=0, atol=1e-9)
