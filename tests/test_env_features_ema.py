"""envs.features.ema (one convolution) against the recurrence that defines it."""
from __future__ import annotations

from pathlib import Path

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


def test_features_of_the_bundled_bars_equal_the_bar_by_bar_ema(monkeypatch) -> None:
    """compute_features with the convolution equals compute_features with the recurrence (the
    implementation before it) on every bundled real symbol, to float32 rounding."""
    import envs.features as features
    from envs.market_data import load_market

    data = Path(__file__).resolve().parents[1] / "data"
    symbols = sorted(p.stem for p in data.glob("*.parquet"))
    assert symbols, "no bundled bars"
    for symbol, bars in load_market(symbols, str(data)).items():
        fast = features.compute_features(bars)
        with monkeypatch.context() as patch:
            patch.setattr(features, "ema", lambda x, span: recurrence(
                x, 2 / (torch.as_tensor(span, dtype=x.dtype) + 1)))  # span: scalar or one per row
            slow = features.compute_features(bars)
        for got, expected in zip(fast, slow, strict=True):
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4, msg=symbol)
