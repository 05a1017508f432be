"""Training one supervised model: minibatches of the fit rows, early stopping on the stop rows.

The direction target trains with binary cross-entropy on the logit. The return target trains with a
Huber loss on the log return divided by its root mean square over the fit rows (`scale`); its
probability that the price rises is sigmoid(1.702 x prediction / spread), where `spread` is the
root-mean-square residual of the standardised prediction on the stop rows: 1.702 x makes the
logistic match the normal CDF within 0.01, so this is P(r > 0) for a normal error of that spread
(a calibrated probit, not a fitted one). Both losses are computed on the stop rows after every
epoch; the weights of the best epoch are kept, and training ends `patience` epochs without a
better one. Everything a fit depends on (rows, targets, seed) is an argument, so the same
arguments give the same weights.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.supervised.data import Examples

TARGETS = ("direction", "return")
PROBIT = 1.702
"""sigmoid(1.702 x) is the normal CDF Phi(x) to within 0.01"""
EVAL_CHUNK = 2048


@dataclass(frozen=True)
class FitSettings:
    target: str = "direction"
    """direction (BCE on up / down) or return (Huber on the standardised log return)"""
    max_epochs: int = 30
    patience: int = 4
    """epochs without a lower stop-rows loss before training ends"""
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target: must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for name in ("max_epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: must be > 0, got {self.lr}")


@dataclass
class Fitted:
    """A trained model and what turns its output into a probability."""

    model: nn.Module
    target: str
    scale: float
    """return target: RMS of the fit rows' log returns (the model predicts r / scale); direction: 1"""
    spread: float
    """return target: RMS residual of the standardised prediction on the stop rows; direction: 1"""
    epochs: int
    best_epoch: int
    stop_loss: float
    fit_rows: int
    stop_rows: int

    def outputs(self, obs: dict[str, Tensor], symbol: Tensor) -> Tensor:
        """Raw model outputs (B,) float32 of observations (B, ...) of symbols (B,), without grad,
        in eval mode, in chunks."""
        self.model.eval()
        size = symbol.shape[0]
        with torch.no_grad():
            return torch.cat([self.model({k: v[i:i + EVAL_CHUNK] for k, v in obs.items()},
                                         symbol[i:i + EVAL_CHUNK]).float()
                              for i in range(0, size, EVAL_CHUNK)]) if size else torch.zeros(0)

    def probabilities(self, obs: dict[str, Tensor], symbol: Tensor) -> np.ndarray:
        """(B,) float64: the probability that the price is higher `horizon` bars on."""
        out = self.outputs(obs, symbol).double()
        if self.target == "return":
            out = PROBIT * out / self.spread
        return torch.sigmoid(out).cpu().numpy()


def _loss(output: Tensor, target: Tensor, kind: str) -> Tensor:
    if kind == "direction":
        return F.binary_cross_entropy_with_logits(output, target)
    return F.smooth_l1_loss(output, target)


def fit(model: nn.Module, examples: Examples, fit_rows: np.ndarray, stop_rows: np.ndarray,
        settings: FitSettings, seed: int) -> Fitted:
    """Train `model` on `fit_rows` of `examples` (labelled rows only) with early stopping on
    `stop_rows`; returns it with the best epoch's weights."""
    if len(fit_rows) == 0 or len(stop_rows) == 0:
        raise ValueError(f"fit: needs fit and stop rows, got {len(fit_rows)} and {len(stop_rows)}")
    kind = settings.target
    raw = examples.target(kind)
    if np.isnan(raw[fit_rows]).any() or np.isnan(raw[stop_rows]).any():
        raise ValueError("fit: a fit or stop row has no label (its bar t + horizon is past the data)")
    scale = float(np.sqrt(np.mean(raw[fit_rows] ** 2))) if kind == "return" else 1.0
    scale = max(scale, 1e-12)
    device = next(iter(examples.obs.values())).device
    model = model.to(device)
    targets = torch.as_tensor(raw / scale, dtype=torch.float32, device=device)
    fit_index = torch.as_tensor(fit_rows, dtype=torch.long, device=device)
    symbols = torch.as_tensor(examples.symbol, dtype=torch.long, device=device)
    stop_inputs = examples.take(stop_rows)
    stop_target = targets[torch.as_tensor(stop_rows, dtype=torch.long, device=device)]
    generator = torch.Generator(device="cpu").manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    fitted = Fitted(model=model, target=kind, scale=scale, spread=1.0, epochs=0, best_epoch=0,
                    stop_loss=math.inf, fit_rows=len(fit_rows), stop_rows=len(stop_rows))
    best_state, since_best = copy.deepcopy(model.state_dict()), 0
    for epoch in range(1, settings.max_epochs + 1):
        model.train()
        order = fit_index[torch.randperm(len(fit_index), generator=generator).to(device)]
        for start in range(0, len(order), settings.batch_size):
            rows = order[start:start + settings.batch_size]
            obs = {k: v.index_select(0, rows) for k, v in examples.obs.items()}
            loss = _loss(model(obs, symbols[rows]), targets[rows], kind)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        stop_loss = float(_loss(fitted.outputs(*stop_inputs), stop_target, kind))
        fitted.epochs = epoch
        if stop_loss < fitted.stop_loss:
            fitted.stop_loss, fitted.best_epoch, since_best = stop_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
            if since_best >= settings.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    if kind == "return":
        residual = fitted.outputs(*stop_inputs) - stop_target
        fitted.spread = max(float(residual.double().square().mean().sqrt()), 1e-6)
    return fitted
