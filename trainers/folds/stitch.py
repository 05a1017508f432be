"""From the fold x seed test evaluations to the walk-forward's figures: one out-of-sample equity
curve per symbol and seed (the folds' test windows in order), the equal-capital book of all
symbols, a Sharpe interval per stitched curve, the interquartile mean over seeds x folds with its
interval, the probability that the agent beats each baseline, and the deflated Sharpe counting
every fold x seed as a trial. Host numpy; the statistics come from trainers.backtest.uncertainty
and trainers.backtest.overfitting."""
from __future__ import annotations

from typing import Any

import numpy as np

from envs.folds import Fold
from trainers.backtest.metrics import equity_metrics, max_drawdown, sharpe
from trainers.backtest.overfitting import deflated_sharpe_of
from trainers.backtest.uncertainty import (Interval, probability_of_improvement_interval, sharpe_interval,
                                           stratified_bootstrap_iqm)

AGENT = "agent (greedy)"
BASELINES = ("buy & hold", "matched buy & hold", "random valid")
"""what the agent is compared with; `matched` is buy-and-hold at the agent's own average exposure"""
ROW_METRICS = ("sharpe_annualised", "total_return", "max_drawdown", "exposure", "trades")
BOOK = "book"
"""the equal-capital portfolio of every symbol's account"""


def strategy_name(name: str) -> str:
    """evaluation.json's row names with the exposure-matched row under one name."""
    return "matched buy & hold" if name.startswith("buy & hold x ") else name


def stitch(curves: list[np.ndarray]) -> np.ndarray:
    """(sum L_k + 1,) equity of trading the (L_k + 1,) equity curves one after another with the
    money the previous ended with: the product of their gross returns, from the first's capital."""
    returns = np.concatenate([np.asarray(c[1:], np.float64) / np.asarray(c[:-1], np.float64) for c in curves])
    return float(curves[0][0]) * np.concatenate([[1.0], np.cumprod(returns)])


def book_curve(curves: list[np.ndarray]) -> np.ndarray | None:
    """The equal-capital, never rebalanced portfolio of (L + 1,) curves that share one calendar:
    their mean; None when their lengths differ (symbols on different calendars)."""
    if len({len(c) for c in curves}) != 1:
        return None
    return np.mean(np.stack(curves), axis=0)


def summarize(payloads: dict[tuple[int, int], dict[str, Any]], folds: list[Fold], seeds: list[int],
              symbols: list[str], seed: int = 0) -> dict[str, Any]:
    """The report's figures from {(fold, seed): evaluation payload} covering every fold and seed."""
    rows, curves, per_year = [], {}, {}
    for fold in folds:
        for s in seeds:
            payload = payloads[(fold.index, s)]
            fold_curves = {}
            for symbol in symbols:
                per_year[symbol] = payload["periods"][symbol]["bars_per_year"]
                for name, metrics in payload["results"][symbol].items():
                    rows.append({"fold": fold.index, "seed": s, "symbol": symbol, "strategy": strategy_name(name),
                                 **{key: metrics.get(key) for key in ROW_METRICS}})
                fold_curves[symbol] = {strategy_name(name): np.asarray(curve) for name, curve in
                                       payload["equity_curves"][symbol].items()}
            book = {name: book_curve([fold_curves[symbol][name] for symbol in symbols])
                    for name in (AGENT, *BASELINES)}
            if all(curve is not None for curve in book.values()):
                fold_curves[BOOK] = book
                book_per_year = float(np.mean([per_year[symbol] for symbol in symbols]))
                for name, curve in book.items():
                    rows.append({"fold": fold.index, "seed": s, "symbol": BOOK, "strategy": name,
                                 **_curve_row(curve, book_per_year)})
            curves[(fold.index, s)] = fold_curves
    if all(BOOK in c for c in curves.values()):
        per_year[BOOK] = float(np.mean([per_year[symbol] for symbol in symbols]))
    names = [*symbols, *([BOOK] if BOOK in per_year else [])]
    stitched = {name: {str(s): _stitched(name, s, folds, curves, per_year[name], seed) for s in seeds}
                for name in names}
    return {"rows": rows, "stitched": stitched, "across_seeds_and_folds": _across(rows, folds, seeds, symbols, seed),
            "deflated_sharpe": _deflated(names[-1], folds, seeds, curves)}


def _curve_row(curve: np.ndarray, bars_per_year: float) -> dict[str, float]:
    metrics = equity_metrics(curve, bars_per_year)
    return {"sharpe_annualised": metrics["sharpe_annualised"], "total_return": metrics["total_return"],
            "max_drawdown": metrics["max_drawdown"], "exposure": None, "trades": None}


def _stitched(name: str, seed_value: int, folds: list[Fold], curves: dict, bars_per_year: float,
              seed: int) -> dict[str, Any]:
    """One stitched curve per strategy of symbol (or book) `name`; the agent's with its interval."""
    out: dict[str, Any] = {}
    for strategy in (AGENT, *BASELINES):
        pieces = [curves[(fold.index, seed_value)][name][strategy] for fold in folds]
        equity = stitch(pieces)
        returns = equity[1:] / equity[:-1] - 1.0
        entry = {"total_return": float(equity[-1] / equity[0] - 1.0),
                 "sharpe_annualised": float(sharpe(returns, bars_per_year)), "max_drawdown": max_drawdown(equity),
                 "fold_lengths": [len(p) - 1 for p in pieces]}
        if strategy == AGENT:
            entry["sharpe_interval"] = _interval(sharpe_interval(returns, bars_per_year, seed=seed))
            entry["equity"] = equity.tolist()
        out[strategy] = entry
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


def _deflated(name: str, folds: list[Fold], seeds: list[int], curves: dict) -> dict[str, Any]:
    """Deflated Sharpe of each seed's stitched `name` agent curve, every fold x seed test window
    counted as a trial (their per-bar Sharpe ratios give the variance)."""
    pieces = {(k.index, s): curves[(k.index, s)][name][AGENT] for k in folds for s in seeds}
    trial_sharpes = [float(sharpe(c[1:] / c[:-1] - 1.0)) for c in pieces.values()]
    variance = float(np.var(trial_sharpes, ddof=1)) if len(trial_sharpes) > 1 else 0.0
    out: dict[str, Any] = {"of": name, "num_trials": len(trial_sharpes), "per_seed": {}}
    if len(trial_sharpes) < 2:
        out["skipped"] = "a single fold x seed: no selection among trials to deflate"
        return out
    for s in seeds:
        equity = stitch([pieces[(k.index, s)] for k in folds])
        try:
            result = deflated_sharpe_of(equity[1:] / equity[:-1] - 1.0, len(trial_sharpes), variance)
            out["per_seed"][str(s)] = {"dsr": result.dsr, "sharpe_per_bar": result.sharpe,
                                       "expected_max_sharpe_per_bar": result.expected_max_sharpe}
        except ValueError as err:
            out["per_seed"][str(s)] = {"skipped": str(err)}
    return out


def _interval(interval: Interval) -> dict[str, Any]:
    return {"point": interval.point, "low": interval.low, "high": interval.high,
            "confidence": interval.confidence, "method": interval.method}
