"""The supervised models: each maps an observation dict (the env's, leading dim B) to one raw output
(B,): a logit for the direction target, a standardised log return for the return target.

`mlp`, `lstm` and `gru` are small (about 4.6k, 8.7k and 6.9k parameters at the defaults) and
read the technical window (B, L, F) and the regime vector (B, R); `encoder` is the project's
FeatureEncoder (built from the run's model.encoder settings and the env's observation shapes,
exactly as models.policy builds it) with a linear head, so its state dict is `encoder.<FeatureEncoder
key>` and `head.<key>`, the layout of encoder.safetensors.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from envs.features import NUM_REGIME, NUM_TECHNICAL
from models.encoder import EncoderConfig, FeatureEncoder

MODEL_NAMES = ("mlp", "lstm", "gru", "encoder")


class WindowMLP(nn.Module):
    """A linear map of each bar's F features to `per_bar` numbers (the same for every bar of the
    window), flattened with the regime vector -> two hidden layers with dropout -> one output.
    The per-bar map keeps the model small (~4.6k parameters at L = 24): a plain MLP over the L x F
    flattened window (~19k) fitted noise from its first epoch on the generated AR(1) markets."""

    def __init__(self, lookback: int, hidden: int, per_bar: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.bar = nn.Linear(NUM_TECHNICAL, per_bar)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(lookback * per_bar + NUM_REGIME, hidden), nn.GELU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        bars = self.bar(obs["technical"]).flatten(1)  # (B, L * per_bar)
        return self.net(torch.cat([bars, obs["regime"]], dim=1)).squeeze(-1)


class WindowRNN(nn.Module):
    """An LSTM or GRU over the window's bars, oldest first; its last state and the regime vector
    -> a hidden layer -> one output."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        cell = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
        self.rnn = cell(NUM_TECHNICAL, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden + NUM_REGIME, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        states, _ = self.rnn(obs["technical"])  # (B, L, H)
        return self.head(torch.cat([states[:, -1], obs["regime"]], dim=1)).squeeze(-1)


class EncoderPredictor(nn.Module):
    """models.FeatureEncoder over the whole observation + a linear head to one output."""

    def __init__(self, config: EncoderConfig, obs_shapes: Mapping[str, tuple[int, ...]]) -> None:
        super().__init__()
        self.encoder = FeatureEncoder(config, obs_shapes)
        self.head = nn.Linear(config.out_dim, 1)

    def forward(self, obs: dict[str, Tensor]) -> Tensor:
        return self.head(self.encoder(obs)).squeeze(-1)


def build_model(name: str, *, lookback: int, hidden: int, encoder: EncoderConfig,
                obs_shapes: Mapping[str, tuple[int, ...]]) -> nn.Module:
    """A fresh model called `name` (one of MODEL_NAMES); seed torch's generator first for a
    reproducible init."""
    if name == "mlp":
        return WindowMLP(lookback, hidden)
    if name in ("lstm", "gru"):
        return WindowRNN(name, hidden)
    if name == "encoder":
        return EncoderPredictor(encoder, obs_shapes)
    raise ValueError(f"model {name!r}: unknown; choose from {', '.join(MODEL_NAMES)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
