"""Which head init and actor output gain learn best? Short runs over init strategies x actor output
gains x seeds on the learning benchmark's generated markets, through the trainer's own code.

    python bench/init_ablation.py [--quick] [--steps 60000] [--seeds 3] [--eval-every N]
        [--inits default,xavier_uniform,he_uniform,orthogonal] [--gains 0.01,0.1,1.0]
        [--device auto|cpu|cuda] [--set KEY=VALUE ...] [--json PATH]

Every run is configs/default.toml (plus any --set) with model.init and model.actor_out_gain swept,
on bench/learning.py's generated markets (one per family, bench/markets.py), driven by
Session.iterate and Session.validate (the greedy policy on the val split every --eval-every
account-steps and at the end). Per configuration,
over seeds 1..K: the best mean validation Sharpe, the policy entropy of the last update (nats), and
the variance over iterations of the update's mean pre-clip gradient norm; each as mean, sample std
and min..max. The row of configs/default.toml's own init and gain is marked. "default" init is
nn.Linear's and ignores every gain, so it runs once, not once per gain. Table on stderr, JSON on
stdout; --quick is a smoke run (1 iteration of a tiny batch per run).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from common import device_or_exit, emit
from configs.cli import add_device
from configs.train import DEFAULT_CONFIG, resolve
from markets import GENERATED, write_generated
from models.init import STRATEGIES
from ppo_core import NonFiniteLossError
from trainers.run.build import open_session

SWEPT = ("model.init", "model.actor_out_gain")
METRICS = ("best_val_sharpe", "entropy", "grad_norm_var")
"""per-run values summarised over seeds"""


def run_one(init: str, gain: float | None, seed: int, data_dir: Path, args: argparse.Namespace,
            work: Path) -> dict:
    """Train one configuration for args.steps account-steps; its per-run metrics (None where the run
    produced none) and `error` when an update went non-finite or the entropy guard gave up."""
    cli = {"run.symbols": list(GENERATED), "run.data_dir": str(data_dir), "run.total_steps": args.steps,
           "run.seed": seed, "run.device": args.device, "run.eval_every": args.eval_every,
           "model.init": init}
    if gain is not None:
        cli["model.actor_out_gain"] = gain
    config = resolve(DEFAULT_CONFIG, args.overrides, cli=cli)
    entropies: list[float] = []
    grad_norms: list[float] = []
    error = None
    start = time.perf_counter()
    # the trainer's console output (setup lines, validation lines) is not this bench's report
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        session = open_session(config, work / f"{init}-{gain}-{seed}")
        try:
            while session.iteration < session.num_iterations:
                try:
                    result = session.iterate()
                except NonFiniteLossError as err:
                    error = f"iteration {session.iteration + 1}: {err}"
                    break
                entropies.append(result.update.steps.entropy)
                grad_norms.append(result.update.steps.grad_norm)
                if result.collapse is not None:
                    error = str(result.collapse)
                    break
                if session.validation_due() and session.validate().stop:
                    break  # early stopping, when --set enables it, ends the run as in the trainer
        finally:
            session.close()
    top = session.best_k.top
    return {"seed": seed, "steps": session.global_step, "iterations": session.iteration,
            "best_val_sharpe": top.score if top else None, "best_step": top.step if top else None,
            "entropy": entropies[-1] if entropies else None,
            "grad_norm_var": statistics.pvariance(grad_norms) if len(grad_norms) > 1 else None,
            "grad_norm_mean": statistics.fmean(grad_norms) if grad_norms else None,
            "seconds": round(time.perf_counter() - start, 1), "error": error}


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def spread(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean, sample std (0 for one value), min and max of the values that exist, and how many."""
    present = [v for v in values if v is not None]
    if not present:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return {"n": len(present), "mean": statistics.fmean(present), "std": std,
            "min": min(present), "max": max(present)}


def print_table(rows: list[dict], title: str, caption: str) -> None:
    table = Table(title=escape(title), caption=escape(caption), title_justify="left", caption_justify="left")
    for column in ("init", "actor gain", "best val Sharpe", "entropy (nats)", "grad-norm var", "runs"):
        table.add_column(column, justify="right")
    def cell(s: dict, spec: str) -> str:
        if s["mean"] is None:
            return "-"
        return escape(f"{s['mean']:{spec}} ± {s['std']:{spec.lstrip('+')}} "
                      f"[{s['min']:{spec}}..{s['max']:{spec}}]")
    for r in rows:
        failed = sum(run["error"] is not None for run in r["runs"])
        table.add_row(r["init"] + (" *" if r["is_default"] else ""),
                      "ignored" if r["actor_out_gain"] is None else f"{r['actor_out_gain']:g}",
                      cell(r["summary"]["best_val_sharpe"], "+.2f"), cell(r["summary"]["entropy"], ".3f"),
                      cell(r["summary"]["grad_norm_var"], ".2e"),
                      f"{len(r['runs'])}" + (f" ({failed} failed)" if failed else ""),
                      style="bold" if r["is_default"] else None)
    Console(file=sys.stderr, width=160).print(table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60_000, help="account-steps per run")
    parser.add_argument("--seeds", type=int, default=3, help="runs per configuration, seeds 1..K")
    parser.add_argument("--inits", default="default,xavier_uniform,he_uniform,orthogonal",
                        help=f"comma-separated, from: {', '.join(STRATEGIES)}")
    parser.add_argument("--gains", default="0.01,0.1,1.0", help="comma-separated actor output gains")
    parser.add_argument("--eval-every", type=int, help="account-steps between validations (default: steps/4)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 small iteration per run")
    add_device(parser)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                        help="config override on top of configs/default.toml (repeatable)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.inits = [s.strip() for s in args.inits.split(",") if s.strip()]
    unknown = [s for s in args.inits if s not in STRATEGIES]
    if not args.inits or unknown:
        parser.error(f"--inits: unknown {unknown}; choose from {', '.join(STRATEGIES)}")
    try:
        args.gains = [float(g) for g in args.gains.split(",")]
    except ValueError:
        parser.error(f"--gains: expected comma-separated numbers, got {args.gains!r}")
    if args.seeds < 1 or args.steps < 1 or any(not g > 0 for g in args.gains):
        parser.error("--seeds and --steps must be >= 1 and every gain > 0")
    # --set applies after the swept values and would silently undo the sweep
    if any(o.split("=")[0].strip() in SWEPT for o in args.overrides):
        parser.error(f"--set: {' and '.join(SWEPT)} are what this bench sweeps (--inits, --gains)")
    if args.quick:
        args.steps = 1
        args.overrides = ["run.envs_per_symbol=4", "run.num_steps=32", *args.overrides]
    args.eval_every = args.eval_every or max(args.steps // 4, 1)
    return args


def main() -> None:
    args = parse_args()
    device = device_or_exit(args.device)
    base = resolve(DEFAULT_CONFIG, args.overrides).model  # what the sweep's marked row stands for
    grid = [(init, None) if init == "default" else (init, gain) for init in args.inits for gain in args.gains]
    grid = list(dict.fromkeys(grid))  # "default" ignores the gain: one configuration, not one per gain
    console = Console(file=sys.stderr)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        write_generated(data_dir, 3000)
        for init, gain in grid:
            runs = []
            for seed in range(1, args.seeds + 1):
                runs.append(run_one(init, gain, seed, data_dir, args, work))
                r = runs[-1]
                sharpe, entropy = fmt(r["best_val_sharpe"], "+.2f"), fmt(r["entropy"], ".3f")
                done = r["error"] or f"best val Sharpe {sharpe}, entropy {entropy}, {r['seconds']} s"
                console.print(f"{init}, gain {gain}, seed {seed}: {done}", markup=False)
            is_default = init == base.init and (gain is None or gain == base.actor_out_gain)
            rows.append({"init": init, "actor_out_gain": gain, "is_default": is_default, "runs": runs,
                         "summary": {m: spread([run[m] for run in runs]) for m in METRICS}})
    marked = any(r["is_default"] for r in rows)
    print_table(rows, f"init x actor output gain, generated markets, {args.steps:,} account-steps "
                      f"per run, seeds 1..{args.seeds}; mean ± sample std [min..max] over seeds",
                f"* configs/default.toml's (and the guide's) {base.init} init, actor gain "
                f"{base.actor_out_gain:g}" + ("" if marked else ": not in this sweep"))
    emit({"bench": "init_ablation", "device": str(device), "steps": args.steps, "seeds": args.seeds,
          "eval_every": args.eval_every, "overrides": args.overrides,
          "markets": {symbol: market.family for symbol, market in GENERATED.items()},
          "default_config": {"init": base.init, "actor_out_gain": base.actor_out_gain},
          "wall_seconds": round(time.perf_counter() - start, 1), "configs": rows}, args.json)


if __name__ == "__main__":
    main()
