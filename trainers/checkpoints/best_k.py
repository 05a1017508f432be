"""Model selection bookkeeping: the best-k validation scores and early stopping, as plain values.

The trainer feeds one score per validation (the mean validation Sharpe over symbols) and gets a
Verdict back: whether the step enters the best-k list (so its checkpoint must be kept), whether it
improved on the early-stopping reference, and why to stop, if it should. No tensors, no files:
trainers.checkpoints.files turns the list into files, and tests drive this class with scripted
scores.

Early stopping follows Keras' EarlyStopping: a score counts as an improvement only when it beats
the reference (the last improving score) by more than `min_delta`, and only an improvement moves
the reference, so a slow creep of small gains still runs out of patience.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple


class Scored(NamedTuple):
    """One validation: the account-step it ran at and its score (mean validation Sharpe)."""

    step: int
    score: float


class Verdict(NamedTuple):
    """What one validation means for the run."""

    kept: bool
    """the step entered the best-k list: its checkpoint must be written and kept"""
    improved: bool
    """the score beat the early-stopping reference by more than min_delta"""
    stop: str
    """why training should stop now ("" = train on)"""


class BestK:
    """Top-`keep_best` scores (best first) and the early-stopping state of one run.

    `patience` > 0 stops after that many validations in a row without an improvement of more than
    `min_delta`; a finite `target` stops as soon as a score reaches it. A NaN score is recorded
    as a validation without improvement and never enters the list.
    """

    def __init__(self, keep_best: int, patience: int = 0, min_delta: float = 0.0,
                 target: float = math.inf) -> None:
        if keep_best < 0 or patience < 0 or not min_delta >= 0 or math.isnan(target):
            raise ValueError(f"BestK: keep_best {keep_best} and patience {patience} must be >= 0, "
                             f"min_delta {min_delta} >= 0, target {target} a number")
        self.keep_best, self.patience, self.min_delta, self.target = keep_best, patience, min_delta, target
        self.best: list[Scored] = []
        """the kept validations, highest score first (ties: the earlier step first)"""
        self.top: Scored | None = None
        """the highest score so far, whether or not keep_best keeps checkpoints"""
        self.reference = -math.inf
        """score of the last improvement; the next one must beat it by more than min_delta"""
        self.since_improvement = 0
        """validations since the last improvement"""
        self.validations = 0

    def record(self, step: int, score: float) -> Verdict:
        """Add the validation at `step` and say what it means."""
        self.validations += 1
        valid = not math.isnan(score)
        if valid and (self.top is None or score > self.top.score):
            self.top = Scored(step, score)
        room = len(self.best) < self.keep_best
        kept = valid and self.keep_best > 0 and (room or score > self.best[-1].score)
        if kept:
            self.best = sorted([*self.best, Scored(step, score)], key=lambda s: (-s.score, s.step))
            self.best = self.best[:self.keep_best]
        improved = valid and score > self.reference + self.min_delta
        if improved:
            self.reference, self.since_improvement = score, 0
        else:
            self.since_improvement += 1
        stop = ""
        if valid and score >= self.target:
            stop = (f"mean validation Sharpe {score:+.3f} reached run.early_stop_target_sharpe = "
                    f"{self.target:+.3f}")
        elif self.patience and self.since_improvement >= self.patience:
            stop = (f"no gain of more than {self.min_delta:g} in mean validation Sharpe for "
                    f"{self.since_improvement} validations (run.early_stop_patience = {self.patience})")
            if self.top is not None:
                stop += f"; best {self.top.score:+.3f} at step {self.top.step:,}"
        return Verdict(kept=kept, improved=improved, stop=stop)

    def restart_patience(self) -> None:
        """Give a run that early stopping ended a fresh patience window (resumed with more steps)."""
        self.since_improvement = 0

    def forget(self, steps: set[int]) -> None:
        """Drop these steps from the best list (their checkpoint files are gone)."""
        self.best = [s for s in self.best if s.step not in steps]

    def state_dict(self) -> dict[str, Any]:
        """Plain values only (the trainer state is read with torch.load(weights_only=True))."""
        return {"best": [[s.step, s.score] for s in self.best],
                "top": None if self.top is None else [self.top.step, self.top.score],
                "reference": self.reference, "since_improvement": self.since_improvement,
                "validations": self.validations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a saved board; the settings stay this board's own (they may change on resume), so
        a smaller keep_best drops the lowest kept scores."""
        self.best = [Scored(int(step), float(score)) for step, score in state["best"]][:self.keep_best]
        self.top = None if state["top"] is None else Scored(int(state["top"][0]), float(state["top"][1]))
        self.reference = float(state["reference"])
        self.since_improvement = int(state["since_improvement"])
        self.validations = int(state["validations"])
