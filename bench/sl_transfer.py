"""Experimental: does the supervised half help the RL agent? The weight-initialisation seed's guarded
SL-to-RL protocol, measured over seeds.

    python bench/sl_transfer.py [--steps 100000] [--seeds 1,2,3] [--markets generated,real]
                                [--models mlp,lstm,gru,encoder] [--anchor 0.01] [--anchor-share 0.2]
                                [--quick] [--device auto|cpu|cuda] [--set KEY=VALUE ...]
                                [--json PATH] [--keep DIR]

Per market set (the learning bench's generated markets, one per family; the bundled real bars SPX, GOOGL):
  1. `python -m trainers.pretrain` fits the supervised models on the train split (early-stopped on
     validation) and writes copies of the bars with causal, out-of-sample sl_prob columns and the
     supervised encoder (encoder.safetensors).
  2. Six arms, each trained with configs/default.toml for --steps account-steps and every seed:
     A random init, B the SL encoder (--init-encoder-from, alpha 1), C a 50/50 hybrid (alpha 0.5);
     each with sl_probs constant (0.5: the original files) and with the out-of-sample sl_probs
     (pretrain's copies). B and C add the KL anchor (--anchor x KL(initial || current), decaying
     to 0 over the first --anchor-share of the steps), as the seed plans it.
  3. Per arm: the chosen checkpoint's validation Sharpe and the greedy agent's test Sharpe, each as
     the IQM over seeds x symbols with a stratified-bootstrap 95 % interval, and the probability
     that the arm's test Sharpe beats arm A's (constant sl_probs) on the same seed and symbol.
The supervised metrics (AUC, log loss, the signal's backtest Sharpe per model and split) are printed
beside, because the seed's lesson is that good classification metrics can still lose money.
Tables on stderr, JSON on stdout. Six runs per seed and market: budget steps accordingly.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from common import emit
from markets import GENERATED, write_generated
from training import interval, summarise, train_and_evaluate
from configs.cli import add_device
from configs.train import DEFAULT_CONFIG, resolve
from trainers.backtest.uncertainty import probability_of_improvement
from trainers.run.transfer import TransferRequest

ROOT = Path(__file__).resolve().parents[1]
REAL = ("SPX", "GOOGL")
INITS = {"A random": None, "B SL encoder": 1.0, "C hybrid 50/50": 0.5}
"""arm -> encoder blend alpha (None: the fresh init)"""
SL_PROBS = ("constant", "out-of-sample")
BASELINE = "A random | constant"


def pretrain(symbols: list[str], data_dir: Path, out_dir: Path, args: argparse.Namespace) -> dict:
    """Run trainers.pretrain as a user would; its pretrain.json."""
    command = [sys.executable, "-m", "trainers.pretrain", "--symbols", ",".join(symbols), "--data-dir",
               str(data_dir), "--models", args.models, "--out-dir", str(out_dir), *(["--device", args.device] if args.device else []),
               *(x for kv in args.overrides for x in ("--set", kv)), *(["--epochs", "2", "--refits", "2"]
                                                                       if args.quick else [])]
    done = subprocess.run(command, cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr)
    if done.returncode != 0:
        sys.exit(f"trainers.pretrain failed (exit {done.returncode}) on {data_dir}")
    return json.loads((out_dir / "pretrain.json").read_text())


def arm_config(symbols: list[str], data_dir: Path, seed: int, alpha: float | None, args: argparse.Namespace):
    """The default config for one arm and seed; the KL anchor on for transferred encoders."""
    anchor = {} if alpha is None or args.anchor <= 0 else {
        "ppo.kl_anchor": args.anchor, "ppo.kl_anchor_steps": max(int(args.anchor_share * args.steps), 1)}
    return resolve(DEFAULT_CONFIG, args.overrides, cli={
        "run.symbols": symbols, "run.data_dir": str(data_dir), "run.total_steps": args.steps,
        "run.seed": seed, "run.device": args.device, **anchor})


def run_market(name: str, symbols: list[str], data_dir: Path, seeds: list[int], args: argparse.Namespace,
               work: Path) -> dict:
    """Pretrain, then every arm x seed; per-arm statistics."""
    sl_dir = work / f"{name}_sl"
    supervised = pretrain(symbols, data_dir, sl_dir, args)
    runs: dict[str, dict[int, dict]] = {}
    for init, alpha in INITS.items():
        for probs in SL_PROBS:
            arm = f"{init} | {probs}"
            runs[arm] = {}
            for seed in seeds:
                config = arm_config(symbols, sl_dir if probs == "out-of-sample" else data_dir, seed, alpha, args)
                transfer = None if alpha is None else TransferRequest(encoder_source=sl_dir, encoder_blend=alpha)
                run_dir = work / f"{name}_{arm.split()[0]}_{probs}_seed{seed}"
                # the single best: its validation Sharpe is the arm's val score
                reports, seconds = train_and_evaluate(config, run_dir, ("best",), transfer)
                report = reports["best"]
                runs[arm][seed] = {"val_sharpe": report["checkpoint"]["val_sharpe"],
                                   "test": {r["symbol"]: r["agent_sharpe"] for r in summarise(report, {})},
                                   "seconds": round(seconds, 1)}
    return {"supervised": supervised, "runs": runs, "arms": arm_statistics(runs, seeds, symbols)}


def arm_statistics(runs: dict[str, dict[int, dict]], seeds: list[int], symbols: list[str]) -> dict[str, dict]:
    """Per arm: IQM [interval] of validation and test Sharpe over seeds x symbols, and P(arm > A)."""
    base = np.array([[runs[BASELINE][s]["test"][sym] for sym in symbols] for s in seeds])
    out = {}
    for arm, per_seed in runs.items():
        test = np.array([[per_seed[s]["test"][sym] for sym in symbols] for s in seeds])
        val = [[per_seed[s]["val_sharpe"]] for s in seeds if per_seed[s]["val_sharpe"] is not None]
        out[arm] = {"test_sharpe": interval(test.tolist()), "test_mean": float(test.mean()),
                    "val_sharpe": interval(val) if len(val) == len(seeds) else None,
                    "val_mean": float(np.mean(val)) if val else None,
                    "p_beats_A": None if arm == BASELINE or len(seeds) < 2 else
                    probability_of_improvement(test, base)}
    return out


def print_supervised(market: str, supervised: dict, console: Console) -> None:
    """One row per model and split of pretrain.json: AUC, F1, log loss, accuracy against the majority
    class and the signal's backtest Sharpe; the always-long baseline's Sharpe beside."""
    table = Table(title=f"{market}: supervised models (trainers.pretrain)", title_justify="left")
    for column in ("model", "split", "AUC", "F1", "log loss", "accuracy", "majority", "backtest Sharpe"):
        table.add_column(column, justify="right")
    rows = [(name, model["splits"]) for name, model in supervised["models"].items()]
    rows += [(name, baseline["splits"]) for name, baseline in supervised.get("baselines", {}).items()]
    for name, splits in rows:
        for split, metrics in splits.items():
            c = metrics.get("classification", {})
            table.add_row(name, split, *(_fmt(c.get(k), ".3f") for k in ("auc", "f1", "log_loss", "accuracy",
                                                                          "majority_accuracy")),
                          _fmt(metrics.get("backtest", {}).get("sharpe")))
    console.print(table)


def print_arms(market: str, arms: dict[str, dict], console: Console) -> None:
    table = Table(title=f"{market}: RL arms, IQM over seeds x symbols [95 %]", title_justify="left")
    for column in ("arm", "val Sharpe", "test Sharpe", "test mean", "P(test > A)"):
        table.add_column(column, justify="right")
    for arm, stats in arms.items():
        table.add_row(arm, _cell(stats["val_sharpe"], stats["val_mean"]), _cell(stats["test_sharpe"], stats["test_mean"]),
                      _fmt(stats["test_mean"]), _fmt(stats["p_beats_A"]))
    console.print(table)


def _cell(iqm: dict | None, mean: float | None) -> str:
    if iqm is None:
        return _fmt(mean)
    return f"{iqm['point']:+.2f} [{iqm['low']:+.2f}, {iqm['high']:+.2f}]"


def _fmt(value, spec: str = "+.2f") -> str:
    return "-" if value is None else format(value, spec) if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="account-steps per RL run")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated training seeds")
    parser.add_argument("--markets", default="generated,real", help="generated, real or both")
    parser.add_argument("--models", default="mlp,lstm,gru,encoder", help="trainers.pretrain --models")
    parser.add_argument("--anchor", type=float, default=0.01, help="KL anchor weight for arms B and C (0 = off)")
    parser.add_argument("--anchor-share", type=float, default=0.2, help="share of --steps the anchor decays over")
    parser.add_argument("--bars", type=int, default=3000, help="bars per generated market")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 iteration per arm, tiny pretraining")
    add_device(parser)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the data and run directories here")
    args = parser.parse_args()
    if args.quick:
        args.steps = 1
        args.overrides = ["run.envs_per_symbol=4", "run.num_steps=32", *args.overrides]
    markets = args.markets.split(",")
    if not markets or set(markets) - {"generated", "real"}:
        parser.error(f"--markets: expected generated, real or both, got {args.markets!r}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    console = Console(file=sys.stderr, width=None if sys.stderr.isatty() else 160)
    start, results = time.perf_counter(), {}
    with (contextlib.nullcontext(str(args.keep)) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        work = Path(tmp)
        for market in markets:
            if market == "generated":
                data_dir, symbols = work / "data", list(GENERATED)
                write_generated(data_dir, args.bars)
            else:
                data_dir, symbols = ROOT / "data", list(REAL)
            results[market] = run_market(market, symbols, data_dir, seeds, args, work)
            print_supervised(market, results[market]["supervised"], console)
            print_arms(market, results[market]["arms"], console)
    emit({"bench": "sl_transfer", "experimental": True, "seeds": seeds, "steps": args.steps,
          "models": args.models, "anchor": args.anchor, "anchor_share": args.anchor_share,
          "overrides": args.overrides, "wall_seconds": round(time.perf_counter() - start, 1), **results}, args.json)


if __name__ == "__main__":
    main()
