"""Does the default configuration learn to trade? Train through the trainer's own code, then
backtest the greedy policy on the unseen test split against an oracle and two baselines.

    python bench/learning.py [--quick] [--steps 500000] [--real-steps 150000] [--seeds 1,2,...] [--config FILE]
                             [--checkpoint average,best,ensemble] [--fresh 2]
                             [--bars 3000] [--device auto|cpu|cuda] [--set KEY=VALUE ...] [--json PATH]

Two runs, both with configs/default.toml (plus any --set):
  generated: one market per family (bench/markets.py), whose only edge is in the price path: AR(1)
      daily returns (momentum, mean reversion, weak momentum), a slow trend (bull and bear regimes
      lasting weeks) and the trainer's default generated market (regimes with momentum); no
      informative extra column. The long-only oracle knows the process (and the current regime)
      and holds exactly when the next bar's expected return is positive; it trades in the same env
      with the same costs.
  real: the bundled daily bars (SPX, GOOGL); no oracle is known.
Per symbol: test-split annualised Sharpe of the greedy agent, the oracle, buy-and-hold rebalanced
to the agent's exposure (with its realised exposure), the median of 32 random valid paths and the
agent's percentile among them, and the share of the oracle's Sharpe the agent reached. With several --seeds (training seeds; the markets stay the same), a table per seed and
one of the means over seeds: a 450-bar test split gives one Sharpe a standard error of ~0.75, so
one seed's share of the oracle is rough. With several --checkpoint kinds, each run is backtested
with each (the same training, another choice of weights). With --fresh N (default 2)
each generated run is also backtested on N fresh draws of every market (same process and dates,
other seeds) over all three splits, pooled per symbol: N x 3000 unseen bars, a far steadier share of
the oracle than the one test split. Tables on stderr, JSON on stdout. About
12 minutes per seed on a quiet 2-core CPU (generated and real); --quick is a smoke run.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rich.console import Console
from rich.table import Table

from common import emit
from markets import GENERATED, write_generated
from training import backtest_elsewhere, interval, summarise, train_and_evaluate
from configs.cli import add_device
from configs.train import DEFAULT_CONFIG, resolve
from envs import SPLITS, VecTradingEnv
from ppo_core import cpu_threads
from trainers.backtest.oracle import oracle_sharpe as long_only_oracle_sharpe
from trainers.checkpoints import DEFAULT_CHOICE

ROOT = Path(__file__).resolve().parents[1]
REAL = ("SPX", "GOOGL")
KINDS = ("average", "best", "ensemble")
"""the --checkpoint kinds a run can be backtested with"""


def oracle_sharpe(run_config, data_dir: Path, expected: dict[str, np.ndarray], split: str = "test") -> dict[str, float]:
    """`split`'s annualised Sharpe of the long-only oracle (trainers.backtest.oracle) of each
    generated symbol, given its (T,) expected next-bar returns."""
    env = VecTradingEnv(list(expected), 1, run_config.env.backtest(), data_dir=str(data_dir), split=split, seed=0)
    return long_only_oracle_sharpe(env, expected)


def run(name: str, symbols: list[str], data_dir: Path, steps: int, seed: int, args: argparse.Namespace,
        work: Path, fresh_dirs: list[Path]) -> tuple[dict[str, dict], float, dict[str, list[dict]]]:
    """Train with the default config on `symbols`, evaluate on test with each --checkpoint kind, and
    on every split of each of `fresh_dirs`; ({kind: evaluation payload}, seconds, {kind: payloads of
    the fresh draws, `backtest_elsewhere`'s order})."""
    config = resolve(args.config, args.overrides, cli={
        "run.symbols": symbols, "run.data_dir": str(data_dir), "run.total_steps": steps,
        "run.seed": seed, "run.device": args.device})
    run_dir = work / f"{name}_seed{seed}"
    reports, seconds = train_and_evaluate(config, run_dir, checkpoints=args.checkpoints)
    return reports, seconds, backtest_elsewhere(run_dir, args.checkpoints, fresh_dirs, args.device, seed)


def pooled(segments: list[list[dict]]) -> list[dict]:
    """One row per symbol over several backtests' `summarise` rows (one list per segment, the same
    symbols in each): mean Sharpes, returns, exposures and trades; the share of the oracle as the
    mean agent Sharpe over the mean oracle Sharpe; beating both baselines on the means."""
    out = []
    for rows in zip(*segments, strict=True):
        row = {key: float(np.mean([r[key] for r in rows]))
               for key in ("agent_sharpe", "oracle_sharpe", "matched_bh_sharpe", "matched_bh_exposure",
                           "random_sharpe", "random_percentile", "agent_return", "agent_max_drawdown",
                           "agent_exposure", "agent_trades")}
        row["symbol"] = rows[0]["symbol"]
        row["oracle_share"] = row["agent_sharpe"] / row["oracle_sharpe"] if row["oracle_sharpe"] > 0 else None
        row["beats_matched_and_random"] = (row["agent_sharpe"] > row["matched_bh_sharpe"]
                                           and row["agent_sharpe"] > row["random_sharpe"])
        out.append(row)
    return out


def mean_over_seeds(per_seed: dict[int, list[dict]]) -> list[dict]:
    """Per symbol: means over seeds of the Sharpes and the share, the median and lowest share, the
    IQM of the agent's Sharpe over seeds with its bootstrap interval, and in how many seeds the
    agent beat matched buy-and-hold and random."""
    out = []
    for symbol_rows in zip(*per_seed.values(), strict=True):
        def mean(key):
            values = [r[key] for r in symbol_rows]
            return None if any(v is None for v in values) else float(np.mean(values))
        shares = [r["oracle_share"] for r in symbol_rows]
        out.append({"symbol": symbol_rows[0]["symbol"], "agent_sharpe": mean("agent_sharpe"),
                    "oracle_sharpe": mean("oracle_sharpe"), "oracle_share": mean("oracle_share"),
                    "min_oracle_share": None if None in shares else min(shares),
                    "median_oracle_share": None if None in shares else float(np.median(shares)),
                    "agent_sharpe_iqm": interval([[r["agent_sharpe"]] for r in symbol_rows]),
                    "matched_bh_sharpe": mean("matched_bh_sharpe"), "matched_bh_exposure": mean("matched_bh_exposure"),
                    "random_sharpe": mean("random_sharpe"), "random_percentile": mean("random_percentile"),
                    "agent_return": mean("agent_return"), "agent_max_drawdown": mean("agent_max_drawdown"),
                    "agent_exposure": mean("agent_exposure"),
                    "agent_trades": mean("agent_trades"),
                    "beats_matched_and_random": sum(r["beats_matched_and_random"] for r in symbol_rows)})
    return out


class Plan(NamedTuple):
    """One market set's runs: what trains, where, for how long, and what it is judged against."""

    market: str
    """generated or real"""
    symbols: list[str]
    data_dir: Path
    steps: int
    oracle: dict[str, float]
    """symbol -> the long-only oracle's test Sharpe (generated markets only)"""
    title: str
    fresh_dirs: list[Path]
    """folders of fresh draws of the generated markets (--fresh)"""
    fresh_oracles: list[dict[str, float]]
    """the oracle's Sharpes on each fresh folder's splits, in fresh_dirs x SPLITS order"""


def market_verdict(per_seed: dict[int, list[dict]]) -> dict[str, dict[str, float] | None]:
    """Over seeds (runs) x symbols (tasks): the IQM of the agent's test Sharpe and of its share of
    the oracle, with stratified-bootstrap intervals."""
    seeds = list(per_seed.values())
    shares = [[r["oracle_share"] for r in rows] for rows in seeds]
    return {"agent_sharpe": interval([[r["agent_sharpe"] for r in rows] for rows in seeds]),
            "oracle_share": None if any(None in row for row in shares) else interval(shares)}


def print_table(rows: list[dict], title: str) -> None:
    table = Table(title=title, title_justify="left")
    lowest = "min_oracle_share" in rows[0]
    for column in ("symbol", "agent", "oracle", "share", *(["median share", "lowest share", "agent IQM [95 %]"]
                                                           if lowest else []), "matched B&H",
                   "its exposure", "random median", "agent pct", "return", "max DD", "exposure", "trades"):
        table.add_column(column, justify="right")
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)
    for r in rows:
        table.add_row(r["symbol"], fmt(r["agent_sharpe"], "+.2f"), fmt(r["oracle_sharpe"], "+.2f"),
                      fmt(r["oracle_share"], ".0%"),
                      *([fmt(r["median_oracle_share"], ".0%"), fmt(r["min_oracle_share"], ".0%"),
                         iqm_cell(r["agent_sharpe_iqm"])] if lowest else []), fmt(r["matched_bh_sharpe"], "+.2f"),
                      fmt(r["matched_bh_exposure"], ".0%"), fmt(r["random_sharpe"], "+.2f"),
                      fmt(r["random_percentile"], ".0%"), fmt(r["agent_return"], "+.1%"),
                      fmt(r["agent_max_drawdown"], ".1%"),
                      fmt(r["agent_exposure"], ".0%"), fmt(r["agent_trades"], ".0f"))
    Console(file=sys.stderr, width=None if sys.stderr.isatty() else 160).print(table)


def iqm_cell(value: dict[str, float] | None) -> str:
    return "-" if value is None else f"{value['point']:+.2f} [{value['low']:+.2f}, {value['high']:+.2f}]"


def print_verdict(market: str, verdict: dict[str, dict[str, float] | None]) -> None:
    """One line: the market's IQM over seeds x symbols with intervals."""
    cells = [f"{name} IQM {v['point']:+.2f} [{v['low']:+.2f}, {v['high']:+.2f}]"
             for name, v in verdict.items() if v is not None]
    Console(file=sys.stderr, width=None if sys.stderr.isatty() else 160).print(f"{market}: " + "; ".join(cells) + " (stratified bootstrap 95 %)", markup=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000 * len(GENERATED),
                        help="account-steps on generated markets (default 100,000 per market)")
    parser.add_argument("--real-steps", type=int, default=150_000, help="account-steps on real bars")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 iteration each")
    parser.add_argument("--markets", default="generated,real", help="which runs: generated, real or both")
    parser.add_argument("--bars", type=int, default=3000, help="bars per generated market")
    parser.add_argument("--seeds", default="1", help="comma-separated training seeds, e.g. 1,2,3")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each in its own process with the free cores shared "
                             "among them unless --set run.torch_threads says otherwise")
    add_device(parser)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="the config every run starts from (default configs/default.toml), e.g. "
                             "configs/full_size.toml")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="config override on top of --config (repeatable)")
    parser.add_argument("--checkpoint", default=DEFAULT_CHOICE, dest="checkpoints", metavar="KINDS",
                        help="what the backtest trades, comma-separated: average (the weight average of the "
                             "best checkpoints by validation, trainers.evaluate's default), best (the top one) "
                             "and/or ensemble (the best list as one policy, trainers.evaluate --checkpoint "
                             "ensemble)")
    parser.add_argument("--fresh", type=int, default=2, metavar="N",
                        help="also backtest the generated run on N fresh draws of each market (same process and "
                             "dates, other random seeds), every split of each: N x --bars unseen bars per market, "
                             "a far steadier share of the oracle than one test split (0 = none)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write the generated data and both run directories here (default: a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.steps = args.real_steps = 1
        args.overrides = ["run.envs_per_symbol=4", "run.num_steps=32", *args.overrides]
    markets = set(args.markets.split(","))
    if not markets or markets - {"generated", "real"}:
        parser.error(f"--markets: expected generated, real or both, got {args.markets!r}")
    args.checkpoints = args.checkpoints.split(",")
    if not args.checkpoints or set(args.checkpoints) - set(KINDS):
        parser.error(f"--checkpoint: expected some of {', '.join(KINDS)}, got {','.join(args.checkpoints)!r}")
    try:
        seeds = [int(seed) for seed in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if args.jobs < 1:
        parser.error(f"--jobs: expected a positive count, got {args.jobs}")
    if args.fresh < 0:
        parser.error(f"--fresh: expected a count >= 0, got {args.fresh}")
    if args.jobs > 1 and not resolve(args.config, args.overrides).run.torch_threads:
        args.overrides.append(f"run.torch_threads={cpu_threads(0, args.jobs)}")  # jobs x threads <= cores
    start = time.perf_counter()
    results: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    evaluated: dict[str, dict] = {}  # which checkpoint each run's evaluation used, per kind
    with (contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        work = Path(tmp)
        plans: list[Plan] = []
        if "generated" in markets:
            data_dir = work / "data"
            run_config = resolve(args.config, args.overrides)
            oracle = oracle_sharpe(run_config, data_dir, write_generated(data_dir, args.bars))
            fresh_dirs = [work / f"fresh{r}" for r in range(1, args.fresh + 1)]
            fresh_oracles = [oracle_sharpe(run_config, d, expected, split)
                             for d, expected in ((d, write_generated(d, args.bars, realisation=r))
                                                 for r, d in enumerate(fresh_dirs, start=1))
                             for split in SPLITS]
            plans.append(Plan("generated", list(GENERATED), data_dir, args.steps, oracle,
                              f"generated markets, test split, {args.steps:,} account-steps", fresh_dirs, fresh_oracles))
        if "real" in markets:
            plans.append(Plan("real", list(REAL), ROOT / "data", args.real_steps, {},
                              f"bundled real bars, test split, {args.real_steps:,} account-steps", [], []))
        jobs = [(plan, seed) for plan in plans for seed in seeds]
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(run, *zip(*[(plan.market, plan.symbols, plan.data_dir, plan.steps, seed, args, work,
                                               plan.fresh_dirs) for plan, seed in jobs])))
        by_run = {(plan.market, seed): out for (plan, seed), out in zip(jobs, done)}
        for market, _, _, _, oracle, title, fresh_dirs, fresh_oracles in plans:
            for kind in args.checkpoints:
                key = market if len(args.checkpoints) == 1 else f"{market}/{kind}"
                per_seed, per_seed_fresh = {}, {}
                for seed in seeds:
                    reports, seconds[f"{market}_seed{seed}"], elsewhere = by_run[market, seed]
                    evaluated.setdefault(kind, {})[f"{market}_seed{seed}"] = reports[kind]["checkpoint"]
                    per_seed[seed] = summarise(reports[kind], oracle)
                    print_table(per_seed[seed], f"{title}, {kind} checkpoint, seed {seed}")
                    if fresh_dirs:
                        per_seed_fresh[seed] = pooled([summarise(report, segment_oracle) for report, segment_oracle
                                                       in zip(elsewhere[kind], fresh_oracles, strict=True)])
                fresh_title = (f"fresh draws of the {market} markets ({len(fresh_dirs)} x {', '.join(SPLITS)}; "
                               f"{len(fresh_dirs) * args.bars:,} unseen bars per symbol; share = mean agent "
                               "Sharpe / mean oracle Sharpe)")
                for name, table_title, rows in ((key, title, per_seed), (f"{key}/fresh", fresh_title, per_seed_fresh)):
                    if not rows:
                        continue
                    results[name] = {"per_seed": rows, "mean_over_seeds": mean_over_seeds(rows),
                                     "iqm_over_seeds_and_symbols": market_verdict(rows)}
                    if name != key:
                        for seed, seed_rows in rows.items():
                            print_table(seed_rows, f"{table_title}, {kind} checkpoint, seed {seed}")
                    if len(seeds) > 1:
                        print_table(results[name]["mean_over_seeds"], f"{table_title}, {kind} checkpoint, mean over "
                                    f"seeds {args.seeds} (beats: seeds that beat both baselines)")
                        print_verdict(name, results[name]["iqm_over_seeds_and_symbols"])
    emit({"bench": "learning", "checkpoints": args.checkpoints, "seeds": seeds, "bars": args.bars, "fresh": args.fresh,
          "config": str(args.config), "overrides": args.overrides, "steps": args.steps, "real_steps": args.real_steps,
          "train_and_eval_seconds": {k: round(v, 1) for k, v in seconds.items()},
          "wall_seconds": round(time.perf_counter() - start, 1),
          "markets": {symbol: market.family for symbol, market in GENERATED.items()},
          "evaluated_checkpoints": evaluated, **results}, args.json)

if __name__ == "__main__":
    main()
