"""The 23 technical and 10 regime features, computed once per symbol on the device
(docs/design.md, "Features and no look-ahead").

Every feature at bar t uses bars <= t only: rolling statistics are differences of cumulative sums
or left-padded windows, EMAs run forward in time. Prices enter only through log prices and ratios,
so multiplying a symbol's prices by a constant changes nothing (up to rounding). Each raw feature
is then normalised with its own trailing statistics (or those of all bars so far, when fewer) and
clipped, never with full-series statistics: z-scored (minus the mean, over the std of the last
NORM_WINDOW bars), or, with `norm="scale"`, the SIGNED features (returns, distances from moving
averages, oscillators: zero means "no trend") only divided by their root mean square over the last
`scale_window` bars, so that their sign survives. Subtracting the trailing mean turns "up, but
less than over the last year" into a negative value: on a slow bull/bear trend market that lost
the current trend's sign on ~30 % of bars (bench/markets.py's TRND, docs/results.md). The first
WARMUP_BARS bars carry unreliable statistics and are not tradable.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from envs.bars import Bars

TECHNICAL_NAMES = (
    "ret_1", "ret_5", "ret_10", "ret_20", "range", "body", "upper_wick", "lower_wick", "gap",
    "volume_z", "rsi_14", "macd", "macd_signal", "macd_hist", "bollinger_pct_b", "bollinger_width",
    "atr_14", "close_sma_20", "close_sma_50", "close_ema_26", "stoch_k", "stoch_d", "realised_vol_20",
)
REGIME_NAMES = (
    "vol_ratio_20_100", "vol_percentile_250", "trend_sma_20_100", "efficiency_20", "momentum_60",
    "up_fraction_20", "volume_ratio_20_100", "volume_trend_5_50", "drawdown_100", "rally_100",
)
SIGNED_NAMES = frozenset((
    "ret_1", "ret_5", "ret_10", "ret_20", "body", "gap", "volume_z", "rsi_14", "macd", "macd_signal",
    "macd_hist", "bollinger_pct_b", "close_sma_20", "close_sma_50", "close_ema_26", "stoch_k", "stoch_d",
    "vol_ratio_20_100", "trend_sma_20_100", "momentum_60", "up_fraction_20", "volume_ratio_20_100",
    "volume_trend_5_50"))
"""features whose zero is meaningful (no move, no trend, balanced): `norm="scale"` keeps their sign"""
FEATURE_NORMS = ("zscore", "scale")
DEFAULT_FEATURE_NORM = "scale"
"""env.feature_norm's default (docs/design.md, Features and no look-ahead)"""
NUM_TECHNICAL = len(TECHNICAL_NAMES)
NUM_REGIME = len(REGIME_NAMES)
WARMUP_BARS = 100
"""bars before the first tradable one: the longest feature window (100 bars)"""
NORM_WINDOW = 250
"""trailing bars behind each feature's z-score"""
DEFAULT_SCALE_WINDOW = 20
"""env.scale_window's default: trailing bars behind the signed features' root mean square under
norm="scale" (docs/results.md, The reward that paid for variance)"""
CLIP = 5.0
"""z-scores are clipped to [-CLIP, CLIP]"""
_EPS = 1e-8
EMA_TOL = 1e-13
"""EMA taps whose weight falls below this share of the newest one are dropped"""


def rolling_mean(x: Tensor, window: int) -> Tensor:
    """Mean of the last `window` values (fewer at the start) along the last dim: (..., T) -> (..., T)."""
    steps = x.shape[-1]
    cums = x.cumsum(-1)
    before = F.pad(cums, (window, 0))[..., :steps]  # cums[t - window], 0 before the start
    count = torch.arange(1, steps + 1, device=x.device).clamp_max(window).to(x.dtype)
    return (cums - before) / count


def rolling_std(x: Tensor, window: int) -> Tensor:
    """Population std of the last `window` values (fewer at the start): (..., T) -> (..., T)."""
    mean = rolling_mean(x, window)
    return (rolling_mean(x * x, window) - mean * mean).clamp_min(0.0).sqrt()


def rolling_windows(x: Tensor, window: int) -> Tensor:
    """The last `window` values at each t, left-padded with x[..., 0]: (..., T) -> (..., T, window)."""
    padded = torch.cat([x[..., :1].expand(*x.shape[:-1], window - 1), x], dim=-1)
    return padded.unfold(-1, window, 1)


def lagged(x: Tensor, lag: int) -> Tensor:
    """x[t - lag], with x[0] before the start: (..., T) -> (..., T)."""
    return torch.cat([x[..., :1].expand(*x.shape[:-1], lag), x[..., :-lag]], dim=-1)


def ema(x: Tensor, span: int | Tensor) -> Tensor:
    """Causal exponential moving average (alpha = 2 / (span + 1), started at x[..., 0]) along the
    last dim: (..., T) -> (..., T). `span` may be a tensor broadcasting against x[..., 0] (several
    spans in one pass).

    The recurrence s[t] = s[t-1] + alpha (x[t] - s[t-1]) with s[-1] = x[0] unrolls into
    sum_k alpha (1 - alpha)^k x[t - k] over x left-padded with x[0] forever, so it is one
    convolution with the kernel truncated where (1 - alpha)^k < EMA_TOL: no loop over time.
    """
    alpha = (2.0 / (torch.as_tensor(span, dtype=x.dtype, device=x.device) + 1)).expand(x.shape[:-1])
    decay = 1.0 - alpha
    taps = math.ceil(math.log(EMA_TOL) / math.log(float(decay.max()))) if float(decay.max()) > 0 else 1
    lags = torch.arange(taps - 1, -1, -1, dtype=x.dtype, device=x.device)  # oldest tap first
    kernel = alpha[..., None] * decay[..., None] ** lags  # (..., K)
    rows = x.reshape(-1, x.shape[-1])  # (R, T)
    padded = torch.cat([rows[:, :1].expand(-1, taps - 1), rows], dim=-1)  # (R, T + K - 1)
    out = F.conv1d(padded[None], kernel.reshape(-1, 1, taps), groups=rows.shape[0])  # (1, R, T)
    return out.reshape(x.shape)


def trailing_zscore(x: Tensor, window: int = NORM_WINDOW) -> Tensor:
    """(x - trailing mean) / trailing std, clipped to [-CLIP, CLIP]: (..., T) -> (..., T)."""
    return ((x - rolling_mean(x, window)) / (rolling_std(x, window) + _EPS)).clamp(-CLIP, CLIP)


def trailing_scale(x: Tensor, window: int) -> Tensor:
    """x / trailing root mean square, clipped to [-CLIP, CLIP]: (..., T) -> (..., T); keeps the sign."""
    return (x / (rolling_mean(x * x, window).clamp_min(0.0).sqrt() + _EPS)).clamp(-CLIP, CLIP)


def normalise(x: Tensor, names: tuple[str, ...], norm: str, scale_window: int = DEFAULT_SCALE_WINDOW) -> Tensor:
    """(F, T) raw features named `names` -> (T, F) float32: every one z-scored ("zscore"), or the
    SIGNED_NAMES scaled by their trailing `scale_window` bars and the rest z-scored ("scale")."""
    if norm not in FEATURE_NORMS:
        raise ValueError(f"norm: expected one of {', '.join(FEATURE_NORMS)}, got {norm!r}")
    out = trailing_zscore(x)
    if norm == "scale":
        signed = torch.tensor([name in SIGNED_NAMES for name in names], device=x.device)
        out = torch.where(signed[:, None], trailing_scale(x, scale_window), out)
    return out.T.contiguous().float()


def raw_features(bars: Bars, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Unnormalised technical (23, T) and regime (10, T) features, float64 on `device`."""
    def series(values) -> Tensor:
        return torch.as_tensor(values, dtype=torch.float64, device=device)

    open_, high, low, close = (series(getattr(bars, n)) for n in ("open", "high", "low", "close"))
    log_close = close.log()
    log_volume = series(bars.volume).log1p()
    ret_1 = log_close - lagged(log_close, 1)
    prev_close = lagged(close, 1)

    up, down = ret_1.clamp_min(0.0), (-ret_1).clamp_min(0.0)
    up_mean, down_mean = rolling_mean(up, 14), rolling_mean(down, 14)
    rsi = torch.where(up_mean + down_mean > 0, up_mean / (up_mean + down_mean + 1e-300), 0.5) - 0.5
    ema_12, ema_26 = ema(torch.stack([close, close]), torch.tensor([12.0, 26.0]))
    macd = (ema_12 - ema_26) / close
    macd_signal = ema(macd, 9)
    bb_mean, bb_std = rolling_mean(log_close, 20), rolling_std(log_close, 20)
    gaps = torch.maximum((high - prev_close).abs(), (low - prev_close).abs())
    true_range = torch.maximum(high - low, gaps)
    low_14 = rolling_windows(low, 14).amin(-1)
    high_14 = rolling_windows(high, 14).amax(-1)
    span_14 = high_14 - low_14
    stoch_k = torch.where(span_14 > 0, (close - low_14) / span_14.clamp_min(1e-300), 0.5) - 0.5
    vol_20 = rolling_std(ret_1, 20)

    technical = torch.stack([
        ret_1, log_close - lagged(log_close, 5), log_close - lagged(log_close, 10),
        log_close - lagged(log_close, 20),
        (high - low) / close, (close - open_) / open_,
        (high - torch.maximum(open_, close)) / close, (torch.minimum(open_, close) - low) / close,
        (open_ / prev_close).log(),
        (log_volume - rolling_mean(log_volume, 20)) / (rolling_std(log_volume, 20) + _EPS),
        rsi, macd, macd_signal, macd - macd_signal,
        (log_close - bb_mean) / (2 * bb_std + _EPS), 4 * bb_std,
        rolling_mean(true_range / close, 14),
        log_close - rolling_mean(log_close, 20), log_close - rolling_mean(log_close, 50),
        log_close - ema_26.log(),
        stoch_k, rolling_mean(stoch_k, 3), vol_20,
    ])

    vol_100 = rolling_std(ret_1, 100)
    recent_vols = rolling_windows(vol_20, 250)
    path_20 = rolling_mean(ret_1.abs(), 20) * 20
    regime = torch.stack([
        (vol_20 + _EPS).log() - (vol_100 + _EPS).log(),
        (recent_vols <= vol_20[..., None]).to(close.dtype).mean(-1),
        rolling_mean(log_close, 20) - rolling_mean(log_close, 100),
        (log_close - lagged(log_close, 20)).abs() / (path_20 + _EPS),
        log_close - lagged(log_close, 60),
        rolling_mean((ret_1 > 0).to(close.dtype), 20) - 0.5,
        rolling_mean(log_volume, 20) - rolling_mean(log_volume, 100),
        rolling_mean(log_volume, 5) - rolling_mean(log_volume, 50),
        log_close - rolling_windows(log_close, 100).amax(-1),
        log_close - rolling_windows(log_close, 100).amin(-1),
    ])
    return technical, regime


def compute_features(bars: Bars, device: torch.device | str = "cpu",
                     norm: str = DEFAULT_FEATURE_NORM,
                     scale_window: int = DEFAULT_SCALE_WINDOW) -> tuple[Tensor, Tensor]:
    """Normalised technical (T, 23) and regime (T, 10) features, float32 on `device`; no NaN.
    `norm`: "zscore" or "scale", `scale_window`: bars behind "scale"'s root mean square (see
    `normalise`)."""
    technical, regime = raw_features(bars, device)
    return (normalise(technical, TECHNICAL_NAMES, norm, scale_window),
            normalise(regime, REGIME_NAMES, norm, scale_window))
