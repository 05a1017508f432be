"""The evaluation's HTML tear sheet (RUN_DIR/report_<split>.html, trainers.backtest.tearsheet):
per symbol the equity of the agent and every baseline with the random paths' band, drawdown and
rolling Sharpe, the metrics table, the agent's interval and place among the random paths, monthly
returns; then the selection statistics of the checkpoint choice."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainers.backtest import tearsheet as ts
from trainers.backtest.report import AGENT, BUY_AND_HOLD, MATCHED, RANDOM, random_band


def selection_section(selection: dict[str, Any]) -> str:
    """The checkpoint choice's PBO and deflated Sharpe over every validation, or why skipped."""
    if "skipped" in selection:
        return "<h2>Checkpoint selection</h2>" + ts.paragraph(f"skipped: {selection['skipped']}")
    rows = [("chosen", selection["chosen"]), ("trials (validations, and the choice when it was not one)",
                                              selection["num_trials"]),
            ("PBO", f"{selection['pbo']:.2f}"), ("deflated Sharpe", f"{selection['dsr']:.2f}"),
            ("chosen val Sharpe per bar", f"{selection['chosen_sharpe']:+.3f}"),
            ("best of the skill-less trials, per bar", f"{selection['expected_max_sharpe']:+.3f}"),
            ("val bars", selection["num_periods"])]
    return ("<h2>Checkpoint selection (val split)</h2>" + ts.table(("statistic", "value"), rows)
            + ts.meanings("PBO", "deflated Sharpe"))


def symbol_section(title: str, symbol: str, rows: dict[str, dict[str, float | None]], curves: dict[str, np.ndarray],
                   period: dict[str, Any], baselines: dict[str, dict[str, float]], timestamps_ns: np.ndarray,
                   random_paths: np.ndarray) -> str:
    """One symbol's backtest (trainers.backtest.evaluation.symbol_results' pieces): curves with the
    random paths' band, drawdown and rolling Sharpe, the metrics, the agent's interval and place
    among the random paths, the matched exposure, monthly returns."""
    stamps = np.asarray(timestamps_ns, dtype=np.int64)
    curves = {name: np.asarray(curve) for name, curve in curves.items()}
    shown = {(f"{RANDOM} (median path)" if name == RANDOM else name): curve for name, curve in curves.items()}
    interval, random, matched = period["agent_sharpe"], baselines[RANDOM], baselines[MATCHED]
    statistics = [
        ("agent Sharpe/yr, 95 % interval", f"{interval['point']:+.2f} [{interval['low']:+.2f}, {interval['high']:+.2f}]"),
        ("random valid paths: median Sharpe/yr [5 %, 95 %]",
         f"{random['sharpe_median']:+.2f} [{random['sharpe_p05']:+.2f}, {random['sharpe_p95']:+.2f}] of {random['paths']}"),
        ("agent's percentile among them", f"{random['agent_percentile']:.0%}"),
        ("matched buy & hold: fraction, realised exposure, agent's",
         f"{matched['fraction']:.1%}, {matched['realised_exposure']:.1%}, {matched['agent_exposure']:.1%}")]
    return (f"<h2>{ts.esc(title)}</h2>"
            + ts.equity_section(f"{symbol}: equity", stamps, shown, random_band(random_paths))
            + ts.risk_section(f"{symbol}: drawdown and rolling Sharpe", stamps,
                              {name: curves[name] for name in (AGENT, BUY_AND_HOLD, MATCHED)}, period["bars_per_year"])
            + ts.metrics_table(rows)
            + ts.table(("statistic", "value"), statistics)
            + ts.meanings("Sharpe interval", "random percentile", "matched buy & hold")
            + "<h3>Agent's monthly returns</h3>" + ts.monthly_returns(stamps, curves[AGENT]))


def write_evaluation_page(path: Path, payload: dict[str, Any], random_paths: dict[str, np.ndarray]) -> None:
    """RUN_DIR/report_<split>.html of an evaluation payload and its (K, L + 1) random paths per symbol."""
    checkpoint = payload["checkpoint"]
    intro = ts.paragraph(f"run {payload['run_dir']}, data {payload['data_dir']}; {checkpoint['note']}")
    sections = [intro]
    for symbol, rows in payload["results"].items():
        period = payload["periods"][symbol]
        title = f"{symbol}: {payload['split']} split, {period['first']} .. {period['last']} ({period['bars']} bars)"
        sections.append(symbol_section(title, symbol, rows, payload["equity_curves"][symbol], period,
                                       payload["baselines"][symbol], payload["timestamps"][symbol],
                                       random_paths[symbol]))
    sections.append(selection_section(payload["selection"]))
    ts.write_page(path, f"Evaluation: {payload['split']} split", sections)
