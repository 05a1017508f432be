"""Every validation of a run is a trial: RUN_DIR/validations.npz records each one's per-bar
returns, kept or pruned, so the selection statistics (trainers.backtest.overfitting) count every
candidate the run looked at, not the few that pruning left.

The file holds `steps` (V,) int64 account-steps, `scores` (V,) float64 mean validation Sharpes and
`returns` (V, L) float64 per-bar returns (ValidationResult.returns, the mean over the validated
symbols). It is rewritten atomically after each validation; a step validated again (a resume that
replays iterations after the last checkpoint) replaces its row, and rows of steps a resume from an
older checkpoint never revisits stay: they were looked at, so they still count.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ppo_core.files import atomic_write_bytes

VALIDATIONS_FILE = "validations.npz"


class ValidationRecord(NamedTuple):
    steps: np.ndarray
    """(V,) int64 account-step of each validation, ascending"""
    scores: np.ndarray
    """(V,) mean validation Sharpe (the selection score; NaN when undefined)"""
    returns: np.ndarray
    """(V, L) per-bar val returns"""


def read(run_dir: Path) -> ValidationRecord | None:
    """The run's record, or None when it has none (validation off, or a run older than the record)."""
    path = Path(run_dir) / VALIDATIONS_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            record = ValidationRecord(data["steps"].astype(np.int64), data["scores"].astype(np.float64),
                                      data["returns"].astype(np.float64))
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"{path}: unreadable validation record ({err}); it holds every validation's val "
                         "returns, so the selection statistics cannot be computed without it") from err
    if record.returns.ndim != 2 or len(record.steps) != len(record.returns) or len(record.scores) != len(record.steps):
        raise ValueError(f"{path}: inconsistent shapes steps {record.steps.shape}, scores {record.scores.shape}, "
                         f"returns {record.returns.shape}")
    return record


def record(run_dir: Path, step: int, score: float, returns: np.ndarray) -> ValidationRecord:
    """Add (or replace) the validation at `step` with its score and (L,) returns; the new record."""
    returns = np.asarray(returns, dtype=np.float64)
    old = read(run_dir)
    if old is not None and old.returns.shape[1] != len(returns):
        raise ValueError(f"{Path(run_dir) / VALIDATIONS_FILE}: validations have {old.returns.shape[1]} val bars, "
                         f"the one at step {step:,} has {len(returns)}; the val split changed within one run")
    keep = np.ones(0, dtype=bool) if old is None else old.steps != step
    steps = np.append(np.empty(0, np.int64) if old is None else old.steps[keep], step)
    scores = np.append(np.empty(0) if old is None else old.scores[keep], score)
    rows = [returns[None]] if old is None else [old.returns[keep], returns[None]]
    order = np.argsort(steps, kind="stable")
    new = ValidationRecord(steps[order], scores[order], np.concatenate(rows)[order])
    buffer = io.BytesIO()
    np.savez(buffer, steps=new.steps, scores=new.scores, returns=new.returns)
    atomic_write_bytes(Path(run_dir) / VALIDATIONS_FILE, buffer.getvalue())
    return new
