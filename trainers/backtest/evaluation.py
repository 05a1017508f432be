"""Backtest a trained run on a whole split (what `python -m trainers.evaluate` runs).

The checkpoint is the weight average of the run's best checkpoints by mean validation Sharpe
unless `--checkpoint best` (the top one), `latest`, `ensemble` (every checkpoint of the best list,
trading the mean of their action probabilities: models.PolicyEnsemble) or a weights file is given
(a run with fewer than two validated checkpoints falls back to its best, one without validation
scores to its latest checkpoint).

Every symbol's accounts start at the split's first tradable bar and trade to its end, side by side
in one VecTradingEnv: account 0 follows the greedy policy, account 1 a uniformly random valid
policy, accounts 2.. the sampled policy (with --sampled K). Buy-and-hold (fully invested) and an
exposure-matched buy-and-hold (the greedy agent's average exposure, bought at the same first fill
and held) are computed from the same bars with the env's own cost model (envs.accounts.buy_fill).
A generated symbol whose process is known (the default synthetic market) also gets the long-only
oracle's row (trainers.backtest.oracle), traded in an env of its own over the same bars and dates.
Sharpe and Sortino here are annualised with the bars' measured frequency (`sharpe_annualised`),
unlike the per-step episode Sharpe of the training charts.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from configs.train import TrainConfig, read_run_config
from envs import DataError, VecTradingEnv, load_market
from envs.splits import format_timestamp
from models import MultiSymbolPolicy
from trainers.backtest.oracle import known_expected_return, simulate_oracle
from trainers.backtest.overfitting import checkpoint_selection, describe as describe_selection
from trainers.backtest.metrics import equity_metrics, periods_per_year
from trainers.backtest.report import plot_equity, print_tables, write_json
from trainers.backtest.simulate import GREEDY, RANDOM, account_metrics, buy_and_hold, mean_defined, simulate
from trainers.backtest.uncertainty import sharpe_interval, sharpe_standard_error
from trainers.run import checkpoints

ORACLE = "oracle (long-only)"
"""the row of the long-only oracle, for generated symbols whose process is known"""


def evaluate(run_dir: Path, split: str, num_sampled: int, device: torch.device, seed: int,
             console: Console, checkpoint: str = checkpoints.DEFAULT_CHOICE, data_dir: Path | None = None,
             out_dir: Path | None = None) -> dict:
    """Backtest one of the run's checkpoints on `split` ("average", "best", "latest", "ensemble" or a weights
    file, see checkpoints.choose_members) of the run's bars, or of the same symbols' files in `data_dir`
    (other bars, split at the run's dates); writes evaluation.json (which names the checkpoint and the
    data) and PNGs to `out_dir` (default: the run directory)."""
    out_dir = run_dir if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    config = read_run_config(run_dir / "config.toml")
    if data_dir is not None:
        # the run's data_dir may generate a symbol that has no file; other bars must all be files
        missing = [symbol for symbol in config.run.symbols if not (data_dir / f"{symbol}.parquet").is_file()]
        if missing:
            raise ValueError(f"{data_dir}: no bars for {', '.join(missing)} (expected <SYMBOL>.parquet files)")
        config = replace(config, run=replace(config.run, data_dir=str(data_dir)))
    members, which = checkpoints.choose_members(run_dir, checkpoint)
    chosen = members[0]
    console.print(which, markup=False)
    env, skipped = split_env(config, split, 2 + num_sampled, device, seed)
    for symbol, reason in skipped.items():
        console.print(f"skipped {symbol}: {reason}", markup=False)
    # the heads of the symbols that trade this split
    actor = checkpoints.load_policy(config, members, env.symbols, env.trading_spec, device)
    policy = MultiSymbolPolicy(config.run.symbols, config.model, env.trading_spec).to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        sim = simulate(env, actor, num_sampled, generator)

    oracle = oracle_results(env, device, seed)
    results, curves_json, periods = {}, {}, {}
    for s, symbol in enumerate(env.symbols):
        rows, curves, periods[symbol] = symbol_results(env, sim, s, num_sampled, oracle.get(symbol))
        results[symbol] = rows
        curves_json[symbol] = {name: curve.tolist() for name, curve in curves.items()}
        first, last = env.decision_range[symbol]
        plot_equity(out_dir / f"equity_{split}_{symbol}.png", symbol, split, curves,
                    env.markets[symbol].timestamps[first:last + 1])

    print_tables(results, split, console)
    for symbol, period in periods.items():
        interval = period["agent_sharpe"]
        console.print(f"{symbol}: agent Sharpe/yr {interval['point']:+.2f}, 95 % interval [{interval['low']:+.2f}, "
                      f"{interval['high']:+.2f}] ({interval['method']}); standard error {interval['standard_error']:.2f} "
                      f"(Lo 2002) over {period['bars']} bars", markup=False)
    # the choice of checkpoint was made on val: how much of its val edge is selection luck
    selection = checkpoint_selection(run_dir, config, env, policy, chosen, device, seed)
    console.print(describe_selection(selection, "kept checkpoints"), markup=False)
    payload = {"run_dir": str(run_dir), "data_dir": config.run.data_dir, "split": split,
               "split_dates": list(env.config.split_dates),
               "step": chosen.step, "weights": chosen.weights.name,
               "checkpoint": {"choice": checkpoint, "path": str(chosen.weights), "step": chosen.step,
                              "val_sharpe": chosen.val_sharpe, "note": which,
                              "members": [str(m.weights) for m in members]},
               "results": results, "selection": selection, "periods": periods, "skipped": skipped,
               "equity_curves": curves_json}
    write_json(out_dir / "evaluation.json", payload)
    console.print(f"wrote {out_dir / 'evaluation.json'} and equity_{split}_<symbol>.png")
    return payload


def split_env(config: TrainConfig, split: str, per_symbol: int, device: torch.device, seed: int
              ) -> tuple[VecTradingEnv, dict[str, str]]:
    """A backtest env of `split` over the run's symbols that can trade it, and why each other
    symbol cannot (a symbol without bars in the split must not stop the others' evaluation)."""
    env_config = config.env.backtest()
    try:
        return VecTradingEnv(config.run.symbols, per_symbol, env_config, device, data_dir=config.run.data_dir,
                             split=split, seed=seed), {}
    except DataError:
        markets = load_market(config.run.symbols, config.run.data_dir)
    skipped = {}
    for symbol in config.run.symbols:
        try:
            VecTradingEnv([symbol], 1, env_config, device, markets={symbol: markets[symbol]}, split=split, seed=seed)
        except DataError as err:
            skipped[symbol] = str(err)
    symbols = [s for s in config.run.symbols if s not in skipped]
    if not symbols:
        raise DataError(f"no symbol of the run can trade its {split} split: " + "; ".join(skipped.values()))
    markets = {s: markets[s] for s in symbols}
    return VecTradingEnv(symbols, per_symbol, env_config, device, markets=markets, split=split, seed=seed), skipped


def oracle_results(env: VecTradingEnv, device: torch.device, seed: int
                   ) -> dict[str, tuple[dict[str, float | None], np.ndarray]]:
    """(metrics, (L + 1,) equity curve) of the long-only oracle of each symbol of `env` whose
    generating process is known; the others (real files) have none and are left out."""
    expected = {s: e for s in env.symbols if (e := known_expected_return(env.markets[s])) is not None}
    if not expected:
        return {}
    markets = {s: env.markets[s] for s in expected}
    # env.config holds the split dates env ran with, so this env cuts the split where env did
    oracle_env = VecTradingEnv(list(expected), 1, env.config, device, markets=markets, split=env.split, seed=seed)
    sim = simulate_oracle(oracle_env, expected)
    out = {}
    for s, symbol in enumerate(oracle_env.symbols):
        first, last = oracle_env.decision_range[symbol]
        if (first, last) != env.decision_range[symbol]:
            raise RuntimeError(f"{symbol}: the oracle's decision range {(first, last)} differs from the "
                               f"backtest's {env.decision_range[symbol]}")
        per_year = periods_per_year(env.markets[symbol].timestamps[first:last + 1])
        out[symbol] = account_metrics(sim, oracle_env.layout.account(s, 0), last - first,
                                      env.config.initial_capital, per_year)
    return out


def symbol_results(env: VecTradingEnv, sim: dict[str, np.ndarray], s: int, num_sampled: int,
                   oracle: tuple[dict[str, float | None], np.ndarray] | None = None
                   ) -> tuple[dict[str, dict[str, float | None]], dict[str, np.ndarray], dict[str, object]]:
    """(metrics by strategy, (L + 1,) equity curves by strategy, the test period with the agent's
    Sharpe interval) of symbol index `s` of a `simulate` result; `oracle` (metrics, curve) adds
    the oracle's row after the agent's."""
    symbol, layout, capital = env.symbols[s], env.layout, env.config.initial_capital
    first, last = env.decision_range[symbol]
    steps, stamps = last - first, env.markets[symbol].timestamps[first:last + 1]
    per_year = periods_per_year(stamps)

    def account(n: int) -> tuple[dict[str, float | None], np.ndarray]:
        return account_metrics(sim, n, steps, capital, per_year)

    rows: dict[str, dict[str, float | None]] = {}
    curves: dict[str, np.ndarray] = {}
    rows["agent (greedy)"], curves["agent (greedy)"] = account(layout.account(s, GREEDY))
    if num_sampled:
        sampled = [account(layout.account(s, RANDOM + 1 + k))[0] for k in range(num_sampled)]
        rows[f"agent (sampled, mean of {num_sampled})"] = {
            key: mean_defined([m[key] for m in sampled]) for key in sampled[0]}
    if oracle is not None:
        rows[ORACLE], curves[ORACLE] = oracle
    agent_exposure = float(rows["agent (greedy)"]["exposure"] or 0.0)
    for name, fraction in (("buy & hold", 1.0), (f"buy & hold x {agent_exposure:.0%}", agent_exposure)):
        curve = buy_and_hold(env, symbol, fraction)
        rows[name] = {**equity_metrics(curve, per_year), "trades": 1.0, "exposure": fraction,
                      "turnover": fraction * capital / curve.mean()}
        curves[name] = curve
    rows["random valid"], curves["random valid"] = account(layout.account(s, RANDOM))
    agent_returns = curves["agent (greedy)"][1:] / curves["agent (greedy)"][:-1] - 1.0
    interval = sharpe_interval(agent_returns, per_year)
    period = {"first": format_timestamp(int(stamps[0])), "last": format_timestamp(int(stamps[-1])),
              "bars_per_year": per_year, "bars": steps,
              "agent_sharpe": {**interval._asdict(), "standard_error": sharpe_standard_error(agent_returns, per_year)}}
    return rows, curves, period
