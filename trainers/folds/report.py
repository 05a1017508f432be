"""The walk-forward report: rich tables on the console, RUN_DIR/walkforward.json, and one PNG per
symbol (and the book) of the stitched out-of-sample curves with the fold boundaries."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from trainers.backtest import tearsheet as ts  # noqa: E402
from trainers.backtest.report import AGENT, BASELINES, BUY_AND_HOLD, MATCHED, RANDOM, equity_figure, write_json  # noqa: E402
from trainers.folds.stitch import PAIRED, SEED_MEAN  # noqa: E402

REPORT_FILE = "walkforward.json"
PAGE_FILE = "walkforward.html"


def print_report(report: dict[str, Any], console: Console) -> None:
    """Per fold and symbol the agent beside the baselines (mean over seeds), the stitched curves,
    and the statistics over seeds x folds."""
    rows = report["summary"]["rows"]
    table = Table(title="test windows: Sharpe/yr (mean over seeds), agent return / drawdown / exposure / trades",
                  title_justify="left")
    for column in ("fold", "symbol", "agent", *BASELINES, "return", "max DD", "exposure", "trades"):
        table.add_column(column, justify="right")
    keys = sorted({(r["fold"], r["symbol"]) for r in rows}, key=lambda k: (k[0], k[1] == "book", k[1]))
    for fold, symbol in keys:
        def mean(strategy: str, key: str) -> float | None:
            values = [r[key] for r in rows if (r["fold"], r["symbol"], r["strategy"]) == (fold, symbol, strategy)
                      and r[key] is not None]
            return float(np.mean(values)) if values else None
        table.add_row(str(fold), symbol, *[_fmt(mean(s, "sharpe_annualised"), "{:+.2f}") for s in (AGENT, *BASELINES)],
                      _fmt(mean(AGENT, "total_return"), "{:+.1%}"), _fmt(mean(AGENT, "max_drawdown"), "{:.1%}"),
                      _fmt(mean(AGENT, "exposure"), "{:.0%}"), _fmt(mean(AGENT, "trades"), "{:.0f}"))
    console.print(table)

    stitched = Table(title="stitched out-of-sample curves (agent; Sharpe/yr with its stationary-bootstrap 95 % interval)",
                     title_justify="left")
    for column in ("symbol", "seed", "Sharpe/yr", "95 % interval", "return", "max DD", "B&H Sharpe"):
        stitched.add_column(column, justify="right")
    for name, per_seed in report["summary"]["stitched"].items():
        for seed, strategies in per_seed.items():
            agent, interval = strategies[AGENT], strategies[AGENT]["sharpe_interval"]
            stitched.add_row(name, seed, f"{agent['sharpe_annualised']:+.2f}",
                             f"[{interval['low']:+.2f}, {interval['high']:+.2f}]", f"{agent['total_return']:+.1%}",
                             f"{agent['max_drawdown']:.1%}", f"{strategies[BUY_AND_HOLD]['sharpe_annualised']:+.2f}")
    console.print(stitched)

    across = report["summary"]["across_seeds_and_folds"]
    stats = Table(title=f"over {len(across['runs'])} seeds x {len(across['tasks'])} fold-symbol tasks: IQM of the "
                        "test Sharpe/yr (stratified bootstrap 95 %) and P(agent > baseline)", title_justify="left")
    for column in ("strategy", "IQM Sharpe", "95 % interval", "P(agent > it)", "95 % interval"):
        stats.add_column(column, justify="right")
    for strategy, iqm in across["iqm_sharpe"].items():
        improvement = across["probability_of_improvement"].get(strategy)
        stats.add_row(strategy, f"{iqm['point']:+.2f}", f"[{iqm['low']:+.2f}, {iqm['high']:+.2f}]",
                      *((f"{improvement['point']:.2f}", f"[{improvement['low']:.2f}, {improvement['high']:.2f}]")
                        if improvement else ("", "")))
    console.print(stats)
    print_significance(report, console)
    selections = report["summary"]["fold_selection"]
    cells = [f"fold {c['fold']} seed {c['seed']}: " + (f"PBO {c['pbo']:.2f}, deflated Sharpe {c['dsr']:.2f} of "
             f"{c['num_trials']}" if "dsr" in c else f"skipped ({c.get('skipped', 'no selection')})") for c in selections]
    console.print("each fold's checkpoint choice among its validations (PBO: ties count one half): " + "; ".join(cells),
                  markup=False)


def significance_rows(report: dict[str, Any]) -> list[tuple[str, ...]]:
    """Per curve (symbol, book) and seed (and the mean of the seeds): Sharpe/yr, P(skill), each
    paired test, the random percentile; formatted cells (console and HTML alike)."""
    rows = []
    for name, tests in report["summary"]["significance"].items():
        entries = [*tests["per_seed"].items(), *([(SEED_MEAN, tests[SEED_MEAN])] if SEED_MEAN in tests else [])]
        for seed, test in entries:
            skill = test["no_skill"]
            rows.append((name, seed, f"{test['sharpe_annualised']:+.2f}",
                         f"{skill['probability']:.2f}" if "probability" in skill else "-",
                         *(f"{test['paired'][b]['difference']:+.2f} (p {test['paired'][b]['p_value']:.2f})"
                           for b in PAIRED),
                         f"{test['random']['agent_percentile']:.0%} of {test['random']['paths']}"))
    return rows


SIGNIFICANCE_COLUMNS = ("curve", "seed", "Sharpe/yr", "P(skill)", *(f"vs {b}" for b in PAIRED), "vs random paths")


def print_significance(report: dict[str, Any], console: Console) -> None:
    """The stitched curves' tests: no skill, each buy-and-hold on the same bars, the random paths."""
    trials = report.get("configurations", 1)
    table = Table(title="is the stitched out-of-sample agent better? P(Sharpe > 0)"
                        + (f" deflated over {trials} configurations" if trials > 1 else "")
                        + "; paired bootstrap p-value of the Sharpe/yr difference (agent - baseline); "
                          "percentile among the stitched random valid paths", title_justify="left")
    for column in SIGNIFICANCE_COLUMNS:
        table.add_column(column, justify="right")
    for row in significance_rows(report):
        table.add_row(*row)
    console.print(table)
    console.print("P(skill) >= 0.95 or a p-value <= 0.05 is evidence at the 5 % level; the stitched curves leave out "
                  "the bar between consecutive test windows, which no fold trades", markup=False)


def write_report(run_dir: Path, report: dict[str, Any]) -> list[Path]:
    """RUN_DIR/walkforward.json, walkforward.html (the tear sheet) and walkforward_<name>.png per
    symbol and the book; the paths."""
    write_json(Path(run_dir) / REPORT_FILE, report)
    paths = [Path(run_dir) / REPORT_FILE, Path(run_dir) / PAGE_FILE]
    write_page(paths[1], report)
    for name in report["summary"]["stitched"]:
        path = Path(run_dir) / f"walkforward_{name}.png"
        fig = equity_figure(f"{name}: stitched out-of-sample equity", stitched_curves(report, name),
                            boundaries=fold_boundaries(report))
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def stitched_curves(report: dict[str, Any], name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each seed's stitched agent curve and the first seed's baselines, over their dates."""
    stamps = np.asarray(report["summary"]["timestamps"][name], dtype=np.int64)
    per_seed = report["summary"]["stitched"][name]
    curves = {f"agent, seed {seed}": (stamps, np.asarray(s[AGENT]["equity"])) for seed, s in per_seed.items()}
    first_seed, first = next(iter(per_seed.items()))
    for baseline in (BUY_AND_HOLD, MATCHED):
        label = baseline if baseline == BUY_AND_HOLD else f"{baseline} (seed {first_seed})"
        curves[label] = (stamps, np.asarray(first[baseline]["equity"]))
    return curves


def fold_boundaries(report: dict[str, Any]) -> list[tuple[str, int]]:
    """(label, ns timestamp) of each fold's first test day."""
    return [(f"fold {f['index']}", int(np.datetime64(f["test_start"], "ns").astype(np.int64))) for f in report["folds"]]


def write_page(path: Path, report: dict[str, Any]) -> None:
    """walkforward.html: the folds and the purge, per curve the stitched equity with the random
    paths' band and the fold boundaries, drawdown and rolling Sharpe, its statistics; then the
    statistics over seeds x folds and each fold's checkpoint selection."""
    summary = report["summary"]
    folds = ts.table(("fold", "train from", "validation from", "test from", "test to (exclusive)"),
                     [(f["index"], f["train_start"], f["val_start"], f["test_start"], f["test_end"]) for f in report["folds"]])
    sections = [folds, ts.paragraph(report.get("purge", "")),
                ts.paragraph(f"seeds {', '.join(map(str, report['seeds']))}; {report['steps_per_fold']:,} account-steps "
                             f"per fold and seed; configurations compared: {report.get('configurations', 1)}")]
    significance = significance_rows(report)
    for name, per_seed in summary["stitched"].items():
        stamps = np.asarray(summary["timestamps"][name], dtype=np.int64)
        first = next(iter(per_seed.values()))
        band = first[RANDOM]["band"]
        curves = stitched_curves(report, name)
        equity = {label: equity for label, (_, equity) in curves.items()}
        sections += [f"<h2>{ts.esc(name)}: stitched out of sample</h2>",
                     ts.equity_section(f"{name}: stitched equity", stamps, equity,
                                       (f"random valid, 5-95 % of {band['paths']} stitched paths (first seed)",
                                        np.asarray(band["low"]), np.asarray(band["high"])), fold_boundaries(report)),
                     ts.risk_section(f"{name}: drawdown and rolling Sharpe", stamps, equity, first[AGENT]["bars_per_year"]),
                     ts.table(("seed", "Sharpe/yr", "95 % interval", "return", "max DD", "B&H Sharpe/yr"),
                              [(seed, f"{s[AGENT]['sharpe_annualised']:+.2f}",
                                f"[{s[AGENT]['sharpe_interval']['low']:+.2f}, {s[AGENT]['sharpe_interval']['high']:+.2f}]",
                                f"{s[AGENT]['total_return']:+.1%}", f"{s[AGENT]['max_drawdown']:.1%}",
                                f"{s[BUY_AND_HOLD]['sharpe_annualised']:+.2f}") for seed, s in per_seed.items()]),
                     ts.table(SIGNIFICANCE_COLUMNS, [row for row in significance if row[0] == name])]
    sections.append(ts.meanings("Sharpe interval", "P(skill)", "paired p-value", "random percentile"))
    across = summary["across_seeds_and_folds"]
    sections += ["<h2>Over seeds x folds</h2>",
                 ts.table(("strategy", "IQM Sharpe/yr", "95 % interval", "P(agent > it)", "95 % interval"),
                          [(strategy, f"{iqm['point']:+.2f}", f"[{iqm['low']:+.2f}, {iqm['high']:+.2f}]",
                            *((f"{p['point']:.2f}", f"[{p['low']:.2f}, {p['high']:.2f}]")
                              if (p := across["probability_of_improvement"].get(strategy)) else ("", "")))
                           for strategy, iqm in across["iqm_sharpe"].items()]),
                 ts.meanings("IQM"),
                 "<h2>Each fold's checkpoint selection</h2>",
                 ts.table(("fold", "seed", "PBO", "deflated Sharpe", "trials"),
                          [(c["fold"], c["seed"], *((f"{c['pbo']:.2f}", f"{c['dsr']:.2f}", c["num_trials"]) if "dsr" in c
                                                    else (c.get("skipped", "-"), "", ""))) for c in summary["fold_selection"]]),
                 ts.meanings("PBO", "deflated Sharpe")]
    ts.write_page(path, f"Walk-forward: {', '.join(report['summary']['stitched'])}", sections)


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
