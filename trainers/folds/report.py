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

from trainers.backtest.report import write_json  # noqa: E402
from trainers.backtest.evaluation import AGENT, BASELINES, BUY_AND_HOLD  # noqa: E402
from trainers.folds.stitch import PAIRED, SEED_MEAN  # noqa: E402

REPORT_FILE = "walkforward.json"


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


def print_significance(report: dict[str, Any], console: Console) -> None:
    """The stitched curves' tests: no skill, each buy-and-hold on the same bars, the random paths."""
    summary = report["summary"]
    trials = report.get("configurations", 1)
    table = Table(title="is the stitched out-of-sample agent better? P(Sharpe > 0)"
                        + (f" deflated over {trials} configurations" if trials > 1 else "")
                        + "; paired bootstrap p-value of the Sharpe/yr difference (agent - baseline); "
                          "percentile among the stitched random valid paths", title_justify="left")
    for column in ("curve", "seed", "Sharpe/yr", "P(skill)", *(f"vs {b}" for b in PAIRED), "vs random paths"):
        table.add_column(column, justify="right")
    for name, tests in summary["significance"].items():
        entries = [*tests["per_seed"].items(), *([(SEED_MEAN, tests[SEED_MEAN])] if SEED_MEAN in tests else [])]
        for seed, test in entries:
            skill = test["no_skill"]
            table.add_row(name, seed, f"{test['sharpe_annualised']:+.2f}",
                          f"{skill['probability']:.2f}" if "probability" in skill else "-",
                          *(f"{test['paired'][b]['difference']:+.2f} (p {test['paired'][b]['p_value']:.2f})"
                            for b in PAIRED),
                          f"{test['random']['agent_percentile']:.0%} of {test['random']['paths']}")
    console.print(table)
    console.print("P(skill) >= 0.95 or a p-value <= 0.05 is evidence at the 5 % level; the stitched curves leave out "
                  "the bar between consecutive test windows, which no fold trades", markup=False)


def write_report(run_dir: Path, report: dict[str, Any]) -> list[Path]:
    """RUN_DIR/walkforward.json and walkforward_<name>.png per symbol and the book; the paths."""
    write_json(Path(run_dir) / REPORT_FILE, report)
    paths = [Path(run_dir) / REPORT_FILE]
    for name, per_seed in report["summary"]["stitched"].items():
        path = Path(run_dir) / f"walkforward_{name}.png"
        plot_stitched(path, name, per_seed, report["folds"])
        paths.append(path)
    return paths


def plot_stitched(path: Path, name: str, per_seed: dict[str, Any], folds: list[dict[str, Any]]) -> None:
    """Each seed's stitched agent curve over out-of-sample bars, a line at every fold boundary."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    lengths: list[int] = []
    for seed, strategies in per_seed.items():
        ax.plot(strategies[AGENT]["equity"], label=f"agent, seed {seed}", linewidth=1.2)
        lengths = strategies[AGENT]["fold_lengths"]
    for k, boundary in enumerate(np.cumsum([0, *lengths[:-1]])):
        ax.axvline(boundary, color="grey", linestyle=":", linewidth=0.8)
        ax.text(boundary, ax.get_ylim()[1], f" fold {k}: {folds[k]['test_start']}", fontsize=7, va="top")
    ax.set_title(f"{name}: stitched out-of-sample equity (test windows of {len(lengths)} folds)")
    ax.set_xlabel("out-of-sample bar")
    ax.set_ylabel("equity")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
