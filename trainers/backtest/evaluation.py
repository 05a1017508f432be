"""Backtest a trained run on a whole split (what `python -m trainers.evaluate` runs).

The checkpoint is the weight average of the run's best checkpoints by mean validation Sharpe
unless `--checkpoint best` (the top one), `latest`, `ensemble` (every checkpoint of the best list,
trading the mean of their action probabilities: models.PolicyEnsemble) or a weights file is given
(a run with fewer than two validated checkpoints falls back to its best, one without validation
scores to its latest checkpoint).

Every symbol's accounts start at the split's first tradable bar and trade to its end, side by side
in one VecTradingEnv: account 0 follows the greedy policy, accounts 1..K (`num_random`, default
RANDOM_PATHS) a uniformly random valid policy each, the rest the sampled policy (with --sampled).
The baselines are priced from the same bars with the env's own costs (simulate.hold): buy-and-hold
(everything bought at the first fill and held) and matched buy-and-hold (rebalanced at every bar to
the greedy agent's realised mean exposure, so it holds what the agent holds on average, bar after
bar). Random valid is a distribution: its row holds each metric's median over the K paths, and the
agent's percentile among their Sharpe ratios says where the agent stands in it.
A generated symbol whose process is known (the default synthetic market) also gets the long-only
oracle's row (trainers.backtest.oracle), traded in an env of its own over the same bars and dates.
Sharpe and Sortino here are annualised with the bars' measured frequency (`sharpe_annualised`),
unlike the per-step episode Sharpe of the training charts.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from rich.console import Console

from configs.train import TrainConfig, read_run_config
from envs import DataError, VecTradingEnv, load_market
from envs.splits import format_timestamp
from trainers.backtest.oracle import known_expected_return, simulate_oracle
from trainers.backtest.overfitting import checkpoint_selection, describe as describe_selection
from trainers.backtest.validation import Validator
from envs.bars import periods_per_year
from trainers.backtest.metrics import equity_metrics
from trainers.backtest.pages import write_evaluation_page
from trainers.backtest.report import (AGENT, BUY_AND_HOLD, MATCHED, ORACLE, RANDOM, plot_equity, print_tables,
                                     write_arrays, write_json)
from trainers.backtest.simulate import (GREEDY, account_metrics, hold, mean_defined, random_roles, sampled_roles,
                                        simulate)
from trainers.backtest.uncertainty import sharpe_interval, sharpe_standard_error
from trainers import checkpoints

RANDOM_PATHS = 32
"""random valid paths per symbol: one path's Sharpe is one draw of a wide distribution (a standard
deviation of ~0.5 a year over two years of daily bars), so the agent is placed among many"""


def evaluation_file(split: str) -> str:
    """evaluation.json for the test split (what the walk-forward and paper trading read),
    evaluation_<split>.json for the others, so evaluating one split never overwrites another's."""
    return "evaluation.json" if split == "test" else f"evaluation_{split}.json"


def evaluate(run_dir: Path, split: str, num_sampled: int, device: torch.device, seed: int,
             console: Console, checkpoint: str = checkpoints.DEFAULT_CHOICE, data_dir: Path | None = None,
             out_dir: Path | None = None, num_random: int = RANDOM_PATHS) -> dict:
    """Backtest one of the run's checkpoints on `split` ("average", "best", "latest", "ensemble" or a weights
    file, see checkpoints.choose_members) of the run's bars, or of the same symbols' files in `data_dir`
    (other bars, split at the run's dates), beside `num_random` random valid paths per symbol; writes
    evaluation_file(split) (which names the checkpoint and the data), random_paths_<split>.npz (each
    symbol's (K, L + 1) random-path equity), report_<split>.html (the tear sheet) and PNGs to
    `out_dir` (default: the run directory)."""
    if num_random < 1:
        raise ValueError(f"num_random must be >= 1 random valid path per symbol, got {num_random}")
    out_dir = run_dir if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    run_config = config = read_run_config(run_dir / "config.toml")
    if data_dir is not None:
        # the run's data_dir may generate a symbol that has no file; other bars must all be files
        missing = [symbol for symbol in config.run.symbols if not (data_dir / f"{symbol}.parquet").is_file()]
        if missing:
            raise ValueError(f"{data_dir}: no bars for {', '.join(missing)} (expected <SYMBOL>.parquet files)")
        config = replace(config, run=replace(config.run, data_dir=str(data_dir)))
    members, which = checkpoints.choose_members(run_dir, checkpoint)
    chosen = members[0]
    console.print(which, markup=False)
    env, skipped = split_env(config, split, 1 + num_random + num_sampled, device, seed)
    for symbol, reason in skipped.items():
        console.print(f"skipped {symbol}: {reason}", markup=False)
    # the heads of the symbols that trade this split
    actor = checkpoints.load_policy(config, members, env.symbols, env.trading_spec, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        sim = simulate(env, actor, num_random, num_sampled, generator)

    oracle = oracle_results(env, device, seed)
    results, curves_json, periods, baselines, paths, stamps = {}, {}, {}, {}, {}, {}
    for s, symbol in enumerate(env.symbols):
        outcome = symbol_results(env, sim, s, num_random, num_sampled, oracle.get(symbol))
        results[symbol], periods[symbol], baselines[symbol] = outcome.rows, outcome.period, outcome.baselines
        curves_json[symbol] = {name: curve.tolist() for name, curve in outcome.curves.items()}
        paths[symbol] = outcome.random_paths
        first, last = env.decision_range[symbol]
        stamps[symbol] = env.markets[symbol].timestamps[first:last + 1]
        plot_equity(out_dir / f"equity_{split}_{symbol}.png", symbol, split, outcome.curves, stamps[symbol],
                    outcome.random_paths)
    paths_file = out_dir / f"random_paths_{split}.npz"
    write_arrays(paths_file, paths)

    print_tables(results, split, console)
    for symbol, period in periods.items():
        console.print(describe_symbol(symbol, period, baselines[symbol]), markup=False)
    # the choice of checkpoint was made on val: how much of its val edge is selection luck
    chosen_name = "ensemble" if len(members) > 1 else chosen.weights.stem
    selection = checkpoint_selection(run_dir, run_config, members, chosen_name,
                                     lambda: selection_validator(run_config, device, seed))
    console.print(describe_selection(selection, "validations (every one the run recorded, kept or pruned)"),
                  markup=False)
    payload = {"run_dir": str(run_dir), "data_dir": config.run.data_dir, "split": split,
               "split_dates": list(env.config.split_dates),
               "step": chosen.step, "weights": chosen.weights.name,
               "checkpoint": {"choice": checkpoint, "path": str(chosen.weights), "step": chosen.step,
                              "val_sharpe": chosen.val_sharpe, "note": which,
                              "members": [str(m.weights) for m in members]},
               "results": results, "baselines": baselines, "random_paths_file": str(paths_file),
               "selection": selection, "periods": periods, "skipped": skipped,
               "equity_curves": curves_json, "timestamps": {s: t.tolist() for s, t in stamps.items()}}
    write_json(out_dir / evaluation_file(split), payload)
    page = out_dir / f"report_{split}.html"
    write_evaluation_page(page, payload, paths)
    console.print(f"wrote {out_dir / evaluation_file(split)}, {paths_file.name}, {page.name} and "
                  f"equity_{split}_<symbol>.png")
    return payload


def describe_symbol(symbol: str, period: dict, baselines: dict) -> str:
    """One console line per symbol: the agent's Sharpe interval, where it stands among the random
    paths, and the matched baseline's exposure."""
    interval, random = period["agent_sharpe"], baselines[RANDOM]
    matched = baselines[MATCHED]
    return (f"{symbol}: agent Sharpe/yr {interval['point']:+.2f}, 95 % interval [{interval['low']:+.2f}, "
            f"{interval['high']:+.2f}] ({interval['method']}), standard error {interval['standard_error']:.2f} "
            f"(Lo 2002) over {period['bars']} bars; {random['paths']} random valid paths: median Sharpe/yr "
            f"{random['sharpe_median']:+.2f}, 5-95 % [{random['sharpe_p05']:+.2f}, {random['sharpe_p95']:+.2f}], "
            f"the agent above {random['agent_percentile']:.0%} of them; matched buy & hold rebalanced to "
            f"{matched['fraction']:.1%} (realised exposure {matched['realised_exposure']:.1%}, agent "
            f"{matched['agent_exposure']:.1%})")


def selection_validator(config: TrainConfig, device: torch.device, seed: int) -> Validator:
    """The run's own validation (its val split of its own bars, the symbols that trade it), to
    backtest a choice that no validation during training scored."""
    env, _ = split_env(config, "val", 1, device, seed)
    return Validator(env.symbols, env.markets, config.env, config.model, device, seed)


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


class SymbolOutcome(NamedTuple):
    rows: dict[str, dict[str, float | None]]
    """metrics by strategy"""
    curves: dict[str, np.ndarray]
    """(L + 1,) equity by strategy; RANDOM's is its path of median Sharpe"""
    period: dict[str, object]
    """the test period, with the agent's Sharpe interval"""
    baselines: dict[str, dict[str, float]]
    """what each baseline is: fractions, realised exposures, the random paths' band and the agent's
    percentile among them"""
    random_paths: np.ndarray
    """(K, L + 1) equity of every random valid path"""


def symbol_results(env: VecTradingEnv, sim: dict[str, np.ndarray], s: int, num_random: int, num_sampled: int,
                   oracle: tuple[dict[str, float | None], np.ndarray] | None = None) -> SymbolOutcome:
    """Symbol index `s` of a `simulate` result: the agent's rows, the oracle's when given (metrics,
    curve), and the baselines'."""
    symbol, layout, capital = env.symbols[s], env.layout, env.config.initial_capital
    first, last = env.decision_range[symbol]
    steps, stamps = last - first, env.markets[symbol].timestamps[first:last + 1]
    per_year = periods_per_year(stamps)

    def account(role: int) -> tuple[dict[str, float | None], np.ndarray]:
        return account_metrics(sim, layout.account(s, role), steps, capital, per_year)

    rows: dict[str, dict[str, float | None]] = {}
    curves: dict[str, np.ndarray] = {}
    rows[AGENT], curves[AGENT] = account(GREEDY)
    if num_sampled:
        sampled = [account(role)[0] for role in sampled_roles(num_random, num_sampled)]
        rows[f"agent (sampled, mean of {num_sampled})"] = {
            key: mean_defined([m[key] for m in sampled]) for key in sampled[0]}
    if oracle is not None:
        rows[ORACLE], curves[ORACLE] = oracle
    agent_exposure = float(rows[AGENT]["exposure"] or 0.0)
    baselines: dict[str, dict[str, float]] = {}
    for name, fraction, rebalance in ((BUY_AND_HOLD, 1.0, False), (MATCHED, agent_exposure, True)):
        held = hold(env, symbol, fraction, rebalance)
        realised = float(held.exposure.mean())
        rows[name] = {**equity_metrics(held.equity, per_year), "trades": float((held.notional > 0).sum()),
                      "turnover": float(held.notional.sum() / held.equity.mean()), "exposure": realised}
        curves[name] = held.equity
        baselines[name] = {"fraction": fraction, "rebalanced": rebalance, "realised_exposure": realised,
                           "agent_exposure": agent_exposure}
    randoms = [account(role) for role in random_roles(num_random)]
    rows[RANDOM] = {key: median_defined([m[key] for m, _ in randoms]) for key in randoms[0][0]}
    paths = np.stack([curve for _, curve in randoms])                         # (K, L + 1)
    sharpes = np.array([m["sharpe_annualised"] for m, _ in randoms])
    curves[RANDOM] = paths[np.argsort(sharpes, kind="stable")[len(sharpes) // 2]]
    agent_sharpe = float(rows[AGENT]["sharpe_annualised"])
    returns = np.array([m["total_return"] for m, _ in randoms])
    baselines[RANDOM] = {"paths": num_random, "sharpe_median": float(np.median(sharpes)),
                         "sharpe_p05": float(np.quantile(sharpes, 0.05)), "sharpe_p95": float(np.quantile(sharpes, 0.95)),
                         "return_median": float(np.median(returns)), "return_p05": float(np.quantile(returns, 0.05)),
                         "return_p95": float(np.quantile(returns, 0.95)),
                         "realised_exposure": float(rows[RANDOM]["exposure"] or 0.0),
                         "agent_percentile": percentile_among(agent_sharpe, sharpes)}
    agent_returns = curves[AGENT][1:] / curves[AGENT][:-1] - 1.0
    interval = sharpe_interval(agent_returns, per_year)
    period = {"first": format_timestamp(int(stamps[0])), "last": format_timestamp(int(stamps[-1])),
              "bars_per_year": per_year, "bars": steps,
              "agent_sharpe": {**interval._asdict(), "standard_error": sharpe_standard_error(agent_returns, per_year)}}
    return SymbolOutcome(rows, curves, period, baselines, paths)


def percentile_among(value: float, others: np.ndarray) -> float:
    """The share of `others` below `value`, ties counting one half: the agent's place among the
    random paths (0.5 = their median; above 0.95 = better than 19 in 20 of them)."""
    others = np.asarray(others, dtype=np.float64)
    return float(np.mean(others < value) + 0.5 * np.mean(others == value))


def median_defined(values: list[float | None]) -> float | None:
    """Median of the defined values; None when none is defined (e.g. no path closed a trade)."""
    defined = [v for v in values if v is not None]
    return float(np.median(defined)) if defined else None
