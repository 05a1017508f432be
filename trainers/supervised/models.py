"""The supervised models: each maps an observation dict (the env's, leading dim B) and the symbol of
each row (B,) to one raw output (B,): a logit for the direction target, a standardised log return
for the return target. A shared body reads the observation; the output is that symbol's own linear
head over the body's features (`SymbolHeads`), as the policy keeps one head per symbol over a shared
encoder: markets with opposite dynamics (momentum and mean reversion) fitted in one call keep their
opposite relations instead of averaging them away.

`mlp`, `lstm` and `gru` are small (about 4.6k, 8.7k and 6.9k parameters at the defaults) and
read the technical window (B, L, F) and the regime vector (B, R); `encoder` is the project's
FeatureEncoder (built from the run's model.encoder settings and the env's observation shapes,
exactly as models.policy builds it) with per-symbol linear heads, so its state dict is
`encoder.<FeatureEncoder key>` and `head.weight` (S, D), `head.bias` (S,): the layout of
encoder.safetensors.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from envs.features import NUM_REGIME, NUM_TECHNICAL
from models.encoder import EncoderConfig, FeatureEncoder

MODEL_NAMES = ("mlp", "lstm", "gru", "encoder")


class SymbolHeads(nn.Module):
    """S linear outputs over shared (B, D) features; row b reads its symbol's: (B,)."""

    def __init__(self, width: int, num_symbols: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(width)  # nn.Linear's default init, per head
        self.weight = nn.Parameter(torch.empty(num_symbols, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_symbols).uniform_(-bound, bound))

    def forward(self, features: Tensor, symbol: Tensor) -> Tensor:
        """(B, D) features, (B,) long symbol ids -> (B,)."""
        return torch.einsum("bd,bd->b", features, self.weight[symbol]) + self.bias[symbol]


class WindowMLP(nn.Module):
    """A linear map of each bar's F features to `per_bar` numbers (the same for every bar of the
    window), flattened with the regime vector -> two hidden layers with dropout -> one output.
    The per-bar map keeps the model small (~4.6k parameters at L = 24): a plain MLP over the L x F
    flattened window (~19k) fitted noise from its first epoch on the generated AR(1) markets."""

    def __init__(self, lookback: int, hidden: int, num_symbols: int, per_bar: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.bar = nn.Linear(NUM_TECHNICAL, per_bar)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(lookback * per_bar + NUM_REGIME, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU())
        self.head = SymbolHeads(hidden, num_symbols)

    def forward(self, obs: dict[str, Tensor], symbol: Tensor) -> Tensor:
        bars = self.bar(obs["technical"]).flatten(1)  # (B, L * per_bar)
        return self.head(self.net(torch.cat([bars, obs["regime"]], dim=1)), symbol)


class WindowRNN(nn.Module):
    """An LSTM or GRU over the window's bars, oldest first; its last state and the regime vector
    -> a hidden layer -> one output."""

    def __init__(self, kind: str, hidden: int, num_symbols: int) -> None:
        super().__init__()
        cell = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = cell(NUM_TECHNICAL, hidden, batch_first=True)
        self.mix = nn.Sequential(nn.Linear(hidden + NUM_REGIME, hidden), nn.GELU())
        self.head = SymbolHeads(hidden, num_symbols)

    def forward(self, obs: dict[str, Tensor], symbol: Tensor) -> Tensor:
        states, _ = self.rnn(obs["technical"])  # (B, L, H)
        return self.head(self.mix(torch.cat([states[:, -1], obs["regime"]], dim=1)), symbol)


class EncoderPredictor(nn.Module):
    """models.FeatureEncoder over the whole observation + one linear head per symbol."""

    def __init__(self, config: EncoderConfig, obs_shapes: Mapping[str, tuple[int, ...]], num_symbols: int) -> None:
        super().__init__()
        self.encoder = FeatureEncoder(config, obs_shapes)
        self.head = SymbolHeads(config.out_dim, num_symbols)

    def forward(self, obs: dict[str, Tensor], symbol: Tensor) -> Tensor:
        return self.head(self.encoder(obs), symbol)


def build_model(name: str, *, lookback: int, hidden: int, encoder: EncoderConfig,
                obs_shapes: Mapping[str, tuple[int, ...]], num_symbols: int) -> nn.Module:
    """A fresh model called `name` (one of MODEL_NAMES) with one output head per symbol; seed
    torch's generator first for a reproducible init. num_symbols = 1 (every row symbol 0) is the
    pooled model: one relation for all symbols."""
    if name == "mlp":
        return WindowMLP(lookback, hidden, num_symbols)
    if name in ("lstm", "gru"):
        return WindowRNN(name, hidden, num_symbols)
    if name == "encoder":
        return EncoderPredictor(encoder, obs_shapes, num_symbols)
    raise ValueError(f"model {name!r}: unknown; choose from {', '.join(MODEL_NAMES)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
