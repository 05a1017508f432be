"""Classification metrics of up / down probabilities, in numpy (no sklearn, no scipy).

`labels` are 0/1 floats (1 = the price rose), `probs` the predicted probability of a rise.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-7
"""probabilities are clipped to [EPS, 1 - EPS] for the log loss"""


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` (N,), ties sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # the first position of each run of equal values, and one past the end
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney U statistic / (positives x negatives), ties
    count one half); None when only one class is present."""
    labels = np.asarray(labels) > 0.5
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    ranks = average_ranks(np.asarray(probs, dtype=np.float64))
    u = ranks[labels].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def f1_score(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the rise class, predicting a rise when prob > threshold; 0 when nothing is predicted
    or nothing rose."""
    labels = np.asarray(labels) > 0.5
    predicted = np.asarray(probs) > threshold
    true_pos = int((labels & predicted).sum())
    denominator = int(predicted.sum()) + int(labels.sum())
    return 2.0 * true_pos / denominator if denominator else 0.0


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy (natural log) of the clipped probabilities."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0 - EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def accuracy(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(probs) > threshold) == (np.asarray(labels) > 0.5)))


def classification_metrics(labels: np.ndarray, probs: np.ndarray, majority: int) -> dict[str, float | None]:
    """AUC, F1, log loss, accuracy, the accuracy of always predicting `majority` (the train split's
    majority class) and their difference, on N labelled bars."""
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) == 0:
        return {"bars": 0, "auc": None, "f1": None, "log_loss": None, "accuracy": None,
                "majority_accuracy": None, "accuracy_edge": None, "up_share": None}
    base = float(np.mean((labels > 0.5) == bool(majority)))
    acc = accuracy(labels, probs)
    return {"bars": int(len(labels)), "auc": roc_auc(labels, probs), "f1": f1_score(labels, probs),
            "log_loss": log_loss(labels, probs), "accuracy": acc, "majority_accuracy": base,
            "accuracy_edge": acc - base, "up_share": float(np.mean(labels > 0.5))}
