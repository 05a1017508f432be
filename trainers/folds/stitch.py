"""From the fold x seed test evaluations to the walk-forward's figures: one out-of-sample equity
curve per symbol and seed (the folds' test windows in order), the equal-capital book of all
symbols, a Sharpe interval per stitched curve, the significance of each stitched curve (the
probabilistic Sharpe against 0, a paired test against each buy-and-hold baseline, the agent's
percentile among the stitched random paths), the interquartile mean over seeds x folds with its
interval, the probability that the agent beats each baseline, and the selection statistics of
every fold's own checkpoint choice. Host numpy; the statistics come from
trainers.backtest.uncertainty and trainers.backtest.overfitting.

Stitching: fold k's curve ends at the close of its last test bar, fold k + 1's starts at the close
of its first; the bar between them (and any embargo) is traded by neither, so the stitched curve
leaves it out rather than invent a return for it (`boundaries` names those dates). Each piece
keeps its own bar frequency: a stitched Sharpe is annualised with the pooled frequency, all the
pieces' bars over all their years.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from envs.folds import Fold
from trainers.backtest.evaluation import percentile_among
from trainers.backtest.report import AGENT, BASELINES, BUY_AND_HOLD, MATCHED, RANDOM
from trainers.backtest.metrics import equity_metrics, max_drawdown, sharpe
from trainers.backtest.overfitting import deflated_sharpe_of, probabilistic_sharpe
from trainers.backtest.uncertainty import (Interval, probability_of_improvement_interval, sharpe_difference_test,
                                           sharpe_interval, stratified_bootstrap_iqm)

ROW_METRICS = ("sharpe_annualised", "total_return", "max_drawdown", "exposure", "trades")
BOOK = "book"
"""the equal-capital portfolio of every symbol's account"""
PAIRED = (BUY_AND_HOLD, MATCHED)
"""the baselines tested bar by bar against the agent on the same bars"""
SEED_MEAN = "mean of seeds"
"""the equal-capital portfolio of every seed's agent: the seeds' common out-of-sample figure"""


def stitch(curves: list[np.ndarray]) -> np.ndarray:
    """(sum L_k + 1,) equity of trading the (L_k + 1,) equity curves one after another with the
    money the previous ended with: the product of their gross returns, from the first's capital."""
    return float(curves[0][0]) * np.concatenate([[1.0], np.cumprod(1.0 + stitched_returns(curves))])


def stitched_returns(curves: list[np.ndarray]) -> np.ndarray:
    """(sum L_k,) per-bar returns of (L_k + 1,) equity curves traded one after another; works on
    (..., L_k + 1) stacks of curves alike."""
    return np.concatenate([np.asarray(c[..., 1:], np.float64) / np.asarray(c[..., :-1], np.float64) - 1.0
                           for c in curves], axis=-1)


def pooled_bars_per_year(lengths: list[int], bars_per_year: list[float]) -> float:
    """The bar frequency of pieces of `lengths` bars each measured at its own `bars_per_year`:
    all their bars over all their years."""
    return float(sum(lengths) / sum(n / p for n, p in zip(lengths, bars_per_year)))


def book_curve(curves: list[np.ndarray]) -> np.ndarray | None:
    """The equal-capital, never rebalanced portfolio of (..., L + 1) curves that share one calendar:
    their mean; None when their lengths differ (symbols on different calendars)."""
    if len({c.shape[-1] for c in curves}) != 1:
        return None
    return np.mean(np.stack(curves), axis=0)


def summarize(payloads: dict[tuple[int, int], dict[str, Any]], folds: list[Fold], seeds: list[int],
              symbols: list[str], seed: int = 0, configurations: int = 1) -> dict[str, Any]:
    """The report's figures from {(fold, seed): evaluation payload with its "random_paths"} covering
    every fold and seed. `configurations`: how many settings the user compared on walk-forwards
    like this one before reporting it (1: none; more deflate the significance)."""
    rows, curves, paths, per_year = [], {}, {}, {}
    for fold in folds:
        for s in seeds:
            payload = payloads[(fold.index, s)]
            fold_curves, fold_paths = {}, {}
            for symbol in symbols:
                per_year[(fold.index, symbol)] = payload["periods"][symbol]["bars_per_year"]
                percentile = payload["baselines"][symbol][RANDOM]["agent_percentile"]
                for name, metrics in payload["results"][symbol].items():
                    rows.append({"fold": fold.index, "seed": s, "symbol": symbol, "strategy": name,
                                 **{key: metrics.get(key) for key in ROW_METRICS},
                                 **({"random_percentile": percentile} if name == AGENT else {})})
                fold_curves[symbol] = {name: np.asarray(curve) for name, curve in payload["equity_curves"][symbol].items()}
                fold_paths[symbol] = np.asarray(payload["random_paths"][symbol])
            book = {name: book_curve([fold_curves[symbol][name] for symbol in symbols]) for name in (AGENT, *BASELINES)}
            book_paths = book_curve([fold_paths[symbol] for symbol in symbols])
            if all(curve is not None for curve in book.values()) and book_paths is not None:
                fold_curves[BOOK], fold_paths[BOOK] = book, book_paths
                per_year[(fold.index, BOOK)] = float(np.mean([per_year[(fold.index, symbol)] for symbol in symbols]))
                for name, curve in book.items():
                    rows.append({"fold": fold.index, "seed": s, "symbol": BOOK, "strategy": name,
                                 **_curve_row(curve, per_year[(fold.index, BOOK)])})
            curves[(fold.index, s)], paths[(fold.index, s)] = fold_curves, fold_paths
    names = [*symbols, *([BOOK] if all(BOOK in c for c in curves.values()) else [])]
    stitched, significance, stamps = {}, {}, {}
    for name in names:
        lengths = [len(curves[(fold.index, seeds[0])][name][AGENT]) - 1 for fold in folds]
        frequency = pooled_bars_per_year(lengths, [per_year[(fold.index, name)] for fold in folds])
        stitched[name] = {str(s): _stitched(name, s, folds, curves, paths, frequency, seed) for s in seeds}
        significance[name] = _significance(name, folds, seeds, curves, paths, frequency, configurations, seed)
        # the book shares its symbols' calendar (book_curve): the first symbol's bars date it
        source = symbols[0] if name == BOOK else name
        pieces = [payloads[(fold.index, seeds[0])]["timestamps"][source] for fold in folds]
        stamps[name] = [*pieces[0], *(stamp for piece in pieces[1:] for stamp in piece[1:])]
    return {"rows": rows, "stitched": stitched, "significance": significance, "timestamps": stamps,
            "boundaries": _boundaries(payloads, folds, seeds[0], symbols),
            "across_seeds_and_folds": _across(rows, folds, seeds, symbols, seed),
            "fold_selection": _fold_selection(payloads, folds, seeds)}


def _curve_row(curve: np.ndarray, bars_per_year: float) -> dict[str, float | None]:
    metrics = equity_metrics(curve, bars_per_year)
    return {"sharpe_annualised": metrics["sharpe_annualised"], "total_return": metrics["total_return"],
            "max_drawdown": metrics["max_drawdown"], "exposure": None, "trades": None}


def _stitched(name: str, seed_value: int, folds: list[Fold], curves: dict, paths: dict, bars_per_year: float,
              seed: int) -> dict[str, Any]:
    """One stitched curve per strategy of symbol (or book) `name`, with its equity; the agent's with
    its interval; the random paths stitched path by path, as their 5-95 % band."""
    out: dict[str, Any] = {}
    for strategy in (AGENT, *BASELINES):
        pieces = [curves[(fold.index, seed_value)][name][strategy] for fold in folds]
        equity = stitch(pieces)
        returns = equity[1:] / equity[:-1] - 1.0
        entry = {"total_return": float(equity[-1] / equity[0] - 1.0),
                 "sharpe_annualised": float(sharpe(returns, bars_per_year)), "max_drawdown": max_drawdown(equity),
                 "fold_lengths": [len(p) - 1 for p in pieces], "bars_per_year": bars_per_year,
                 "equity": equity.tolist()}
        if strategy == AGENT:
            entry["sharpe_interval"] = _interval(sharpe_interval(returns, bars_per_year, seed=seed))
        out[strategy] = entry
    random_paths = stitched_returns([paths[(fold.index, seed_value)][name] for fold in folds])  # (K, T)
    random_equity = float(curves[(folds[0].index, seed_value)][name][AGENT][0]) * np.cumprod(
        np.concatenate([np.ones((len(random_paths), 1)), 1.0 + random_paths], axis=1), axis=1)
    low, high = np.quantile(random_equity, [0.05, 0.95], axis=0)
    out[RANDOM]["band"] = {"paths": len(random_paths), "low": low.tolist(), "high": high.tolist()}
    return out


def _significance(name: str, folds: list[Fold], seeds: list[int], curves: dict, paths: dict,
                  bars_per_year: float, configurations: int, seed: int) -> dict[str, Any]:
    """Per seed and for the mean of the seeds: is the stitched agent curve of `name` better than
    no skill, than each buy-and-hold baseline on the same bars, and than the random paths?"""
    def returns(s: int, strategy: str) -> np.ndarray:
        return stitched_returns([curves[(fold.index, s)][name][strategy] for fold in folds])

    def random_paths(s: int) -> np.ndarray:  # (K, T)
        return stitched_returns([paths[(fold.index, s)][name] for fold in folds])

    per_seed = {str(s): significance_of(returns(s, AGENT), {b: returns(s, b) for b in PAIRED}, random_paths(s),
                                        bars_per_year, configurations, seed) for s in seeds}
    out: dict[str, Any] = {"num_trials": configurations, "per_seed": per_seed}
    if len(seeds) > 1:  # equal capital in every seed's account, rebalanced each bar
        out[SEED_MEAN] = significance_of(np.mean([returns(s, AGENT) for s in seeds], axis=0),
                                         {b: np.mean([returns(s, b) for s in seeds], axis=0) for b in PAIRED},
                                         np.mean([random_paths(s) for s in seeds], axis=0), bars_per_year,
                                         configurations, seed)
    return out


def significance_of(agent: np.ndarray, paired: dict[str, np.ndarray], random_paths: np.ndarray,
                    bars_per_year: float, configurations: int = 1, seed: int = 0) -> dict[str, Any]:
    """The tests of one out-of-sample (T,) agent return series: the probabilistic Sharpe against 0
    (deflated when `configurations` > 1 were compared: their skill-less Sharpe ratios would vary by
    the estimator's own variance, 1 / T per bar), a paired stationary-bootstrap test of the Sharpe
    difference against each (T,) series of `paired` on the same bars, and the agent's percentile
    among (K, T) random paths' Sharpe ratios."""
    out: dict[str, Any] = {"bars": len(agent), "sharpe_annualised": float(sharpe(agent, bars_per_year))}
    try:
        if configurations > 1:
            result = deflated_sharpe_of(agent, configurations, 1.0 / len(agent))
            out["no_skill"] = {"probability": result.dsr, "benchmark_per_bar": result.expected_max_sharpe,
                               "test": f"deflated Sharpe over {configurations} configurations"}
        else:
            psr = probabilistic_sharpe(agent)
            out["no_skill"] = {"probability": psr.probability, "benchmark_per_bar": 0.0,
                               "test": "probabilistic Sharpe against 0"}
    except ValueError as err:
        out["no_skill"] = {"skipped": str(err)}
    out["paired"] = {}
    for name, other in paired.items():
        test = sharpe_difference_test(agent, other, bars_per_year, seed=seed)
        out["paired"][name] = {"difference": test.difference, "low": test.low, "high": test.high,
                               "p_value": test.p_value, "method": test.method}
    random_sharpes = sharpe(random_paths.T, bars_per_year)
    out["random"] = {"paths": len(random_paths), "agent_percentile": percentile_among(out["sharpe_annualised"],
                                                                                      random_sharpes),
                     "sharpe_median": float(np.median(random_sharpes)),
                     "sharpe_p05": float(np.quantile(random_sharpes, 0.05)),
                     "sharpe_p95": float(np.quantile(random_sharpes, 0.95))}
    return out


def _boundaries(payloads: dict, folds: list[Fold], seed_value: int, symbols: list[str]) -> list[dict[str, Any]]:
    """Per consecutive folds and symbol: the last test bar of one and the first of the next; the
    step between them is in no fold's test window and not in the stitched curves."""
    out = []
    for before, after in zip(folds, folds[1:]):
        first, second = payloads[(before.index, seed_value)]["periods"], payloads[(after.index, seed_value)]["periods"]
        out.append({"folds": [before.index, after.index],
                    "last_bar": {symbol: first[symbol]["last"] for symbol in symbols},
                    "next_first_bar": {symbol: second[symbol]["first"] for symbol in symbols}})
    return out


def _fold_selection(payloads: dict, folds: list[Fold], seeds: list[int]) -> list[dict[str, Any]]:
    """Each fold x seed run's own checkpoint choice among its validations: PBO and the deflated
    Sharpe (evaluation.json's selection), or why they were skipped."""
    out = []
    for fold in folds:
        for s in seeds:
            selection = payloads[(fold.index, s)].get("selection", {})
            out.append({"fold": fold.index, "seed": s,
                        **{key: selection[key] for key in ("pbo", "dsr", "chosen", "num_trials", "skipped")
                           if key in selection}})
    return out


def _across(rows: list[dict], folds: list[Fold], seeds: list[int], symbols: list[str], seed: int) -> dict:
    """IQM of the test Sharpe over seeds (runs) x fold-symbol pairs (tasks), with the stratified
    bootstrap interval, and P(agent > baseline) with its interval, per strategy."""
    tasks = [(fold.index, symbol) for fold in folds for symbol in symbols]

    def scores(strategy: str) -> np.ndarray:  # (R seeds, K tasks)
        table = {(r["seed"], r["fold"], r["symbol"]): r["sharpe_annualised"] for r in rows if r["strategy"] == strategy}
        return np.array([[table[(s, k, symbol)] for k, symbol in tasks] for s in seeds], dtype=np.float64)

    agent = scores(AGENT)
    out: dict[str, Any] = {"tasks": [f"fold {k} {symbol}" for k, symbol in tasks], "runs": seeds,
                           "iqm_sharpe": {AGENT: _interval(stratified_bootstrap_iqm(agent, seed=seed))},
                           "probability_of_improvement": {}}
    for baseline in BASELINES:
        other = scores(baseline)
        out["iqm_sharpe"][baseline] = _interval(stratified_bootstrap_iqm(other, seed=seed))
        out["probability_of_improvement"][baseline] = _interval(
            probability_of_improvement_interval(agent, other, seed=seed))
    return out


def _interval(interval: Interval) -> dict[str, Any]:
    return {"point": interval.point, "low": interval.low, "high": interval.high,
            "confidence": interval.confidence, "method": interval.method}
