"""Selection-bias statistics for choosing one of many candidates (checkpoints, tuning trials) by
their returns on the same validation period. Host numpy, float64.

- `pbo`: probability of backtest overfitting by combinatorially symmetric cross-validation (Bailey,
  Borwein, Lopez de Prado and Zhu 2017, "The probability of backtest overfitting").
- `deflated_sharpe`: the deflated Sharpe ratio (Bailey and Lopez de Prado 2014, "The deflated
  Sharpe ratio"): the probability that the chosen candidate's true Sharpe exceeds the best Sharpe
  that N skill-less trials would show by luck.
- `selection_report`: both for a dict name -> (T,) returns, as plain JSON-ready values.
- `probabilistic_sharpe`: the probabilistic Sharpe ratio of one strategy against a benchmark
  Sharpe (Bailey and Lopez de Prado 2012), what the walk-forward tests its stitched curves with.
- `selection_stats` / `checkpoint_selection`: the same for every validation a run recorded
  (trainers.backtest.trials: greedy policy, whole val split, mean over symbols of the per-bar
  equity returns, kept or pruned) or every validation of a study's trials, with the reason when
  they cannot be measured.

Sharpe ratios here are per period (trainers.backtest.metrics.sharpe with periods_per_year = 1),
not annualised: the formulas count periods.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from statistics import NormalDist
from typing import Any, Callable, NamedTuple

import numpy as np

from configs.train import TrainConfig
from envs import DataError

from trainers.backtest.metrics import sharpe, sharpe_from_sums
from trainers.backtest import trials
from trainers.backtest.validation import Validator
from trainers import checkpoints

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


class PBOResult(NamedTuple):
    pbo: float
    """share of the splits whose in-sample best candidate ranks below the out-of-sample median (a
    split exactly at the median counts one half)"""
    logits: np.ndarray
    """(K,) logit of the in-sample best candidate's relative out-of-sample rank, one per split"""
    num_splits: int
    """K = C(S, S/2) in-sample / out-of-sample splits"""


class DSRResult(NamedTuple):
    dsr: float
    """probability that the chosen candidate's true Sharpe exceeds `expected_max_sharpe`"""
    sharpe: float
    """the chosen candidate's per-period Sharpe"""
    expected_max_sharpe: float
    """per-period Sharpe the best of `num_trials` skill-less candidates reaches by luck"""
    sharpe_variance: float
    """variance of the candidates' per-period Sharpe ratios"""
    num_trials: int
    skewness: float
    kurtosis: float
    """of the chosen return series; non-excess (3 for normal returns)"""
    num_periods: int


def pbo(returns: np.ndarray, num_blocks: int = 16) -> PBOResult:
    """Probability of backtest overfitting of selecting the best-Sharpe column of (T, N) `returns`.

    T is cut into `num_blocks` (S, even) contiguous blocks of near-equal length. Each choice of S/2
    blocks is one in-sample set (the rest out-of-sample): the candidate with the best in-sample
    Sharpe gets its out-of-sample rank r in 1..N (N best; ties share their mean rank), w = r / (N + 1)
    and logit = ln(w / (1 - w)). PBO is the share of the C(S, S/2) splits with logit < 0, a split
    with logit exactly 0 (the chosen candidate at the out-of-sample median, which an odd N makes
    common) counting one half, so that skill-less candidates give PBO 1/2 for every N.
    """
    returns = _check_matrix(returns)
    num_periods, num_candidates = returns.shape
    if num_blocks < 2 or num_blocks % 2:
        raise ValueError(f"num_blocks must be even and >= 2, got {num_blocks}")
    if num_periods < 2 * num_blocks:
        raise ValueError(f"{num_periods} periods are too few for {num_blocks} blocks: each block needs "
                         f"at least 2 periods (T >= {2 * num_blocks}); lower num_blocks or add periods")
    # per-block sums give every split's Sharpe by matrix products instead of re-slicing the data
    blocks = np.array_split(returns, num_blocks)
    sums = np.stack([b.sum(0) for b in blocks])                           # (S, N)
    squares = np.stack([(b * b).sum(0) for b in blocks])                  # (S, N)
    counts = np.array([len(b) for b in blocks], dtype=np.float64)        # (S,)
    combos = list(itertools.combinations(range(num_blocks), num_blocks // 2))
    in_sample = np.zeros((len(combos), num_blocks))                       # (K, S)
    in_sample[np.repeat(np.arange(len(combos)), num_blocks // 2), np.ravel(combos)] = 1.0
    is_sharpe = sharpe_from_sums(in_sample @ sums, in_sample @ squares, (in_sample @ counts)[:, None])
    oos = 1.0 - in_sample
    oos_sharpe = sharpe_from_sums(oos @ sums, oos @ squares, (oos @ counts)[:, None])  # (K, N)
    best = is_sharpe.argmax(axis=1)                                        # (K,)
    chosen = np.take_along_axis(oos_sharpe, best[:, None], axis=1)        # (K, 1)
    below = (oos_sharpe < chosen).sum(1)
    ties = (oos_sharpe == chosen).sum(1) - 1
    rank = 1.0 + below + 0.5 * ties
    w = rank / (num_candidates + 1)
    logits = np.log(w / (1.0 - w))
    # compared on ranks, which are exact multiples of 1/2, not on the rounded logits
    median = (num_candidates + 1) / 2.0
    overfit = np.mean(rank < median) + 0.5 * np.mean(rank == median)
    return PBOResult(pbo=float(overfit), logits=logits, num_splits=len(combos))


def expected_max_sharpe(num_trials: int, sharpe_variance: float) -> float:
    """E[max Sharpe] of `num_trials` independent skill-less trials whose Sharpe ratios have variance
    `sharpe_variance` (the false-strategy theorem, Euler-Mascheroni approximation):
    sqrt(V) x ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e)))."""
    if num_trials < 2:
        raise ValueError(f"num_trials must be >= 2 (a single trial has no selection bias), got {num_trials}")
    if sharpe_variance < 0:
        raise ValueError(f"sharpe_variance must be >= 0, got {sharpe_variance}")
    quantiles = ((1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / num_trials)
                 + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (num_trials * math.e)))
    return math.sqrt(sharpe_variance) * quantiles


def deflated_sharpe(returns: np.ndarray, chosen: int, num_trials: int | None = None) -> DSRResult:
    """Deflated Sharpe ratio of column `chosen` of (T, N) `returns`: the probabilistic Sharpe ratio
    Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)) against the benchmark
    SR0 = expected_max_sharpe(num_trials, variance of the N columns' Sharpe ratios).
    `num_trials` defaults to N; pass more when other trials were run but are not in `returns`."""
    returns = _check_matrix(returns)
    num_periods, num_candidates = returns.shape
    if not 0 <= chosen < num_candidates:
        raise ValueError(f"chosen must index one of the {num_candidates} columns, got {chosen}")
    trials = num_candidates if num_trials is None else num_trials
    if trials < num_candidates:
        raise ValueError(f"num_trials {trials} is below the {num_candidates} candidates given")
    sharpes = sharpe(returns)
    return deflated_sharpe_of(returns[:, chosen], trials, float(sharpes.var(ddof=1)))


class PSRResult(NamedTuple):
    probability: float
    """Phi(z): the probability that the true per-period Sharpe exceeds `benchmark`"""
    sharpe: float
    """the series' per-period Sharpe"""
    benchmark: float
    skewness: float
    kurtosis: float
    """of the series; non-excess (3 for normal returns)"""
    num_periods: int


def probabilistic_sharpe(series: np.ndarray, benchmark: float = 0.0) -> PSRResult:
    """The probabilistic Sharpe ratio of one (T,) per-period return series against a per-period
    `benchmark` Sharpe (Bailey and Lopez de Prado 2012, "The Sharpe ratio efficient frontier"):
    Phi((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2)). Against 0 it is one
    minus the one-sided p-value of "no skill"; it assumes one strategy was looked at (several:
    deflated_sharpe_of)."""
    series = np.asarray(series, dtype=np.float64)
    num_periods = len(series)
    if num_periods < 3 or not np.isfinite(series).all():
        raise ValueError(f"need at least 3 finite periods, got {num_periods}")
    centred = series - series.mean()
    std = centred.std()
    skewness = float(np.mean(centred ** 3) / std ** 3) if std > 0 else 0.0
    kurtosis = float(np.mean(centred ** 4) / std ** 4) if std > 0 else 3.0
    sr = float(sharpe(series))
    spread = 1.0 - skewness * sr + (kurtosis - 1.0) / 4.0 * sr * sr
    if spread <= 0:
        raise ValueError(f"the series' moments (Sharpe {sr:.3f}, skewness {skewness:.2f}, kurtosis "
                         f"{kurtosis:.2f}) give a non-positive Sharpe variance; too few or degenerate "
                         "periods")
    z = (sr - benchmark) * math.sqrt(num_periods - 1) / math.sqrt(spread)
    return PSRResult(probability=_NORMAL.cdf(z), sharpe=sr, benchmark=benchmark, skewness=skewness,
                     kurtosis=kurtosis, num_periods=num_periods)


def deflated_sharpe_of(series: np.ndarray, num_trials: int, sharpe_variance: float) -> DSRResult:
    """Deflated Sharpe ratio of one (T,) per-period return series chosen among `num_trials` trials
    whose per-period Sharpe ratios have variance `sharpe_variance` (see deflated_sharpe): the
    probabilistic Sharpe against expected_max_sharpe(num_trials, sharpe_variance)."""
    benchmark = expected_max_sharpe(num_trials, sharpe_variance)
    psr = probabilistic_sharpe(series, benchmark)
    return DSRResult(dsr=psr.probability, sharpe=psr.sharpe, expected_max_sharpe=benchmark,
                     sharpe_variance=sharpe_variance, num_trials=num_trials, skewness=psr.skewness,
                     kurtosis=psr.kurtosis, num_periods=psr.num_periods)


def selection_report(returns: dict[str, np.ndarray], num_blocks: int = 16, chosen: str | None = None,
                     num_trials: int | None = None) -> dict[str, Any]:
    """PBO and the deflated Sharpe of choosing among name -> (T,) per-period returns (all over the
    same T periods). `chosen` defaults to the best Sharpe over the whole period (PBO is always that
    of picking the best Sharpe); `num_trials` to the number of candidates. Returns JSON-ready
    values: pbo, dsr, chosen, chosen_sharpe, expected_max_sharpe, sharpe_variance, num_candidates,
    num_trials, num_periods, num_blocks, num_splits, logit_median."""
    names = list(returns)
    lengths = {name: np.shape(series) for name, series in returns.items()}
    if any(len(shape) != 1 for shape in lengths.values()) or len(set(lengths.values())) > 1:
        raise ValueError(f"every candidate needs a 1-D return series over the same periods, got shapes "
                         f"{lengths}")
    matrix = _check_matrix(np.stack([np.asarray(returns[name], dtype=np.float64) for name in names], axis=1)
                           if names else np.zeros((0, 0)))
    if chosen is not None and chosen not in returns:
        raise ValueError(f"chosen {chosen!r} is not among the candidates {names}")
    index = int(sharpe(matrix).argmax()) if chosen is None else names.index(chosen)
    overfit = pbo(matrix, num_blocks)
    deflated = deflated_sharpe(matrix, index, num_trials)
    return {
        "pbo": overfit.pbo, "dsr": deflated.dsr, "chosen": names[index], "chosen_sharpe": deflated.sharpe,
        "expected_max_sharpe": deflated.expected_max_sharpe, "sharpe_variance": deflated.sharpe_variance,
        "num_candidates": len(names), "num_trials": deflated.num_trials, "num_periods": matrix.shape[0],
        "num_blocks": num_blocks, "num_splits": overfit.num_splits,
        "logit_median": float(np.median(overfit.logits)),
    }


def _check_matrix(returns: np.ndarray) -> np.ndarray:
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 2:
        raise ValueError(f"returns must be (T periods, N candidates), got shape {returns.shape}")
    if returns.shape[1] < 2:
        raise ValueError(f"need at least 2 candidates to measure selection bias, got {returns.shape[1]} "
                         f"(returns shape {returns.shape})")
    if returns.shape[0] < 3:
        raise ValueError(f"need at least 3 periods, got {returns.shape[0]} (returns shape {returns.shape})")
    if not np.isfinite(returns).all():
        raise ValueError("returns hold NaN or Inf")
    return returns


# ---- applied to a run's kept checkpoints (trainers.evaluate) and a study's trials (trainers.tune) ----
NUM_BLOCKS = 16
"""CSCV blocks of the val period (C(16, 8) = 12,870 splits); needs at least 2 bars per block"""


def selection_stats(returns: dict[str, np.ndarray], chosen: str,
                    num_trials: int | None = None) -> dict[str, Any]:
    """selection_report of choosing `chosen` among name -> (T,) per-bar returns (`num_trials`
    defaults to the number of candidates), or {"skipped": why, "num_candidates": n} when there are
    fewer than 2 candidates, too few bars for NUM_BLOCKS blocks, or degenerate returns."""
    count = len(returns)
    if count < 2:
        return {"skipped": f"{count} candidate{'s' * (count != 1)}; selection bias needs at least 2",
                "num_candidates": count}
    bars = min(len(series) for series in returns.values())
    if bars < 2 * NUM_BLOCKS:
        return {"skipped": f"{bars} val bars are too few for {NUM_BLOCKS} CSCV blocks of at least 2 bars "
                           f"(need {2 * NUM_BLOCKS})", "num_candidates": count}
    try:
        return selection_report(returns, NUM_BLOCKS, chosen=chosen, num_trials=num_trials)
    except ValueError as err:  # e.g. NaN returns, or moments that give no Sharpe variance
        return {"skipped": str(err), "num_candidates": count}


def describe(stats: dict[str, Any], what: str) -> str:
    """One console line: PBO and the deflated Sharpe of the chosen candidate, or why skipped."""
    if "skipped" in stats:
        return f"selection bias over {what}: skipped ({stats['skipped']})"
    return (f"selection bias over {stats['num_candidates']} {what} (val split, per-bar returns, "
            f"{stats['num_blocks']} blocks): PBO {stats['pbo']:.2f} (the chance that the in-sample best is below "
            f"the out-of-sample median; ties count one half; 0.5 = no better than luck); deflated Sharpe of "
            f"{stats['chosen']} {stats['dsr']:.2f} (the probability that its per-bar Sharpe "
            f"{stats['chosen_sharpe']:+.3f} beats {stats['expected_max_sharpe']:+.3f}, the best of "
            f"{stats['num_trials']} skill-less trials; skill is claimed at 0.95)")


def checkpoint_selection(run_dir: Path, config: TrainConfig, members: list[checkpoints.Checkpoint], chosen: str,
                         validator: Callable[[], Validator]) -> dict[str, Any]:
    """Selection statistics of the weights trainers.evaluate trades (`members`: one checkpoint, or
    an ensemble's), named `chosen`, among every validation the run recorded (trials.read: kept or
    pruned). A choice that is not itself a recorded validation (the weight average, an ensemble,
    a weights file) is backtested on the run's val split by the Validator `validator()` builds and
    counts as one more trial."""
    record = trials.read(run_dir)
    if record is None:
        return {"skipped": f"{Path(run_dir) / trials.VALIDATIONS_FILE} does not exist (validation off, or a run "
                           "written before every validation was recorded); the kept checkpoints alone would "
                           "understate the selection", "num_candidates": 0}
    returns = {checkpoints.at_step(run_dir, int(step)).weights.stem: row
               for step, row in zip(record.steps, record.returns)}
    if chosen not in returns:
        try:
            judge = validator()
        except DataError as err:  # e.g. the run's own bars moved since it trained
            return {"skipped": f"{chosen} needs a backtest on the run's val split, whose bars cannot be read: {err}",
                    "num_candidates": len(returns)}
        actor = checkpoints.load_policy(config, members, judge.symbols, judge.env.trading_spec, judge.env.device)
        returns[chosen] = judge.backtest(actor).returns
    stats = selection_stats(returns, chosen)
    stats["num_validations"] = len(record.steps)
    return stats
