"""Backtest a trained run on a whole split: `python -m trainers.evaluate --run-dir runs/...`.

The checkpoint is the run's best by mean validation Sharpe unless `--checkpoint latest` or a
weights file is given (a run without validation scores falls back to its latest checkpoint).

Every symbol's accounts start at the split's first tradable bar and trade to its end, side by side
in one VecTradingEnv: account 0 follows the greedy policy, account 1 a uniformly random valid
policy, accounts 2.. the sampled policy (with --sampled K). Buy-and-hold (fully invested) and an
exposure-matched buy-and-hold (the greedy agent's average exposure, bought at the same first fill
and held) are computed from the same bars with the env's own cost model (envs.accounts.buy_fill).
Sharpe and Sortino here are annualised with the bars' measured frequency (`sharpe_annualised`),
unlike the per-step episode Sharpe of the training charts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from configs.loader import ConfigError, load_toml
from configs.train import TrainConfig, build
from envs import VecTradingEnv
from envs.accounts import buy_fill
from models import CheckpointError, MultiSymbolPolicy
from ppo_core import resolve_device
from trainers.run import checkpoints
from trainers.backtest.metrics import equity_metrics, periods_per_year
from trainers.backtest.report import plot_equity, print_tables, write_json

GREEDY, RANDOM = 0, 1  # account roles within each symbol; 2.. are sampled-policy accounts


def simulate(env: VecTradingEnv, policy: MultiSymbolPolicy, num_sampled: int,
             generator: torch.Generator) -> dict[str, np.ndarray]:
    """Run one full-split episode in every account; per-step (L, N) host arrays of equity,
    exposure and traded notional, plus (N,) episode statistics."""
    steps = max(last - first for first, last in env.decision_range.values())
    n, e = env.num_envs, env.envs_per_symbol
    role = torch.arange(n, device=env.device) % e  # (N,)
    equity = torch.zeros(steps, n, dtype=torch.float64, device=env.device)
    exposure = torch.zeros_like(equity)
    notional = torch.zeros_like(equity)
    alive = torch.ones(n, dtype=torch.bool, device=env.device)
    stats: dict[str, torch.Tensor] = {}
    obs, _ = env.reset()
    for t in range(steps):
        mask = env.action_masks()
        greedy = policy.act(obs, mask, deterministic=True)[0]
        sampled = policy.act(obs, mask)[0] if num_sampled else greedy
        # validation runs greedy accounts only (E = 1): no random draws to make then
        random = (torch.multinomial(mask.float(), 1, generator=generator).squeeze(1) if e > RANDOM
                  else greedy)
        actions = torch.where(role == GREEDY, greedy, torch.where(role == RANDOM, random, sampled))
        obs, _, terminated, truncated, info = env.step(actions)
        # Accounts that already finished (a shorter split, or the equity floor) keep their last value.
        previous = equity[t - 1] if t else torch.full_like(equity[0], env.config.initial_capital)
        equity[t] = torch.where(alive, info["equity"].double(), previous)
        exposure[t] = torch.where(alive, info["exposure"].double(), 0.0)
        notional[t] = torch.where(alive, info["notional"].double(), 0.0)
        ended = alive & info["_episode"]
        for key, value in info["episode"].items():
            stats[key] = torch.where(ended, value.double(), stats.get(key, torch.zeros_like(value.double())))
        alive &= ~(terminated | truncated)
    return {"equity": equity.cpu().numpy(), "exposure": exposure.cpu().numpy(),
            "notional": notional.cpu().numpy(), **{k: v.cpu().numpy() for k, v in stats.items()}}


def account_metrics(sim: dict[str, np.ndarray], n: int, steps: int, capital: float, per_year: float
                    ) -> tuple[dict[str, float | None], np.ndarray]:
    """(metrics, (steps + 1,) equity curve) of account `n` of a `simulate` result. Win rate and
    profit factor are None (shown as "-") when the account closed no trade."""
    curve = np.concatenate([[capital], sim["equity"][:steps, n]])
    metrics: dict[str, float | None] = dict(equity_metrics(curve, per_year))
    closed = sim["closed_trades"][n] > 0
    metrics.update(win_rate=float(sim["win_rate"][n]) if closed else None,
                   profit_factor=float(sim["profit_factor"][n]) if closed else None,
                   trades=float(sim["trades"][n]), closed_trades=float(sim["closed_trades"][n]),
                   turnover=float(sim["notional"][:steps, n].sum() / curve.mean()),
                   exposure=float(sim["exposure"][:steps, n].mean()))
    return metrics, curve


def buy_and_hold(env: VecTradingEnv, symbol: str, fraction: float) -> np.ndarray:
    """(L + 1,) equity of putting `fraction` of capital (commission included) into the symbol at
    the first fill and holding it, priced with the env's buy_fill cost model."""
    bars, (first, last) = env.markets[symbol], env.decision_range[symbol]
    cfg = env.config
    capital, commission_rate = cfg.initial_capital, cfg.commission_bps * 1e-4
    notional = torch.tensor(fraction * capital / (1.0 + commission_rate), dtype=torch.float64)
    shares, commission, _ = buy_fill(notional, torch.tensor(bars.open[first + 1], dtype=torch.float64),
                                     commission_rate, cfg.slippage_bps * 1e-4)
    cash = capital - float(notional) - float(commission)
    return np.concatenate([[capital], cash + float(shares) * bars.close[first + 1:last + 1]])


def evaluate(run_dir: Path, split: str, num_sampled: int, device: torch.device, seed: int,
             console: Console, checkpoint: str = "best") -> dict:
    """Backtest one of the run's checkpoints on `split` ("best", "latest" or a weights file, see
    checkpoints.choose); writes evaluation.json (which names the checkpoint) and PNGs."""
    config = build(TrainConfig, load_toml(run_dir / "config.toml"))
    chosen, which = checkpoints.choose(run_dir, checkpoint)
    console.print(which, markup=False)
    env_config = config.env.backtest()
    env = VecTradingEnv(config.run.symbols, 2 + num_sampled, env_config, device,
                        data_dir=config.run.data_dir, split=split, seed=seed)
    policy = MultiSymbolPolicy(config.run.symbols, config.model, env.trading_spec).to(device).eval()
    checkpoints.load_weights(chosen, policy)
    generator = torch.Generator(device=device).manual_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        sim = simulate(env, policy, num_sampled, generator)

    results, curves_json = {}, {}
    e, capital = env.envs_per_symbol, config.env.initial_capital
    for s, symbol in enumerate(config.run.symbols):
        first, last = env.decision_range[symbol]
        steps = last - first
        stamps = env.markets[symbol].timestamps[first:last + 1]
        per_year = periods_per_year(stamps)

        def account(n: int) -> tuple[dict[str, float | None], np.ndarray]:
            return account_metrics(sim, n, steps, capital, per_year)

        rows: dict[str, dict[str, float]] = {}
        curves: dict[str, np.ndarray] = {}
        rows["agent (greedy)"], curves["agent (greedy)"] = account(s * e + GREEDY)
        if num_sampled:
            sampled = [account(s * e + 2 + k)[0] for k in range(num_sampled)]
            rows[f"agent (sampled, mean of {num_sampled})"] = {
                key: _mean([m[key] for m in sampled]) for key in sampled[0]}
        agent_exposure = rows["agent (greedy)"]["exposure"]
        for name, fraction in (("buy & hold", 1.0), (f"buy & hold x {agent_exposure:.0%}", agent_exposure)):
            curve = buy_and_hold(env, symbol, fraction)
            rows[name] = {**equity_metrics(curve, per_year), "trades": 1.0, "exposure": fraction,
                          "turnover": fraction * capital / curve.mean()}
            curves[name] = curve
        rows["random valid"], curves["random valid"] = account(s * e + RANDOM)
        results[symbol] = rows
        curves_json[symbol] = {name: curve.tolist() for name, curve in curves.items()}
        plot_equity(run_dir / f"equity_{split}_{symbol}.png", symbol, split, curves, stamps)

    print_tables(results, split, console)
    # the choice of checkpoint was made on val: how much of its val edge is selection luck
    # (imported here: trainers.backtest.candidates -> trainers.backtest.validation imports this module's backtest)
    from trainers.backtest.candidates import checkpoint_selection, describe as describe_selection
    selection = checkpoint_selection(run_dir, config, env, policy, chosen, device, seed)
    console.print(describe_selection(selection, "kept checkpoints"), markup=False)
    payload = {"run_dir": str(run_dir), "split": split, "split_dates": list(env.config.split_dates),
               "step": chosen.step, "weights": chosen.weights.name,
               "checkpoint": {"choice": checkpoint, "path": str(chosen.weights), "step": chosen.step,
                              "val_sharpe": chosen.val_sharpe, "note": which},
               "results": results, "selection": selection,
               "equity_curves": curves_json}
    write_json(run_dir / "evaluation.json", payload)
    console.print(f"wrote {run_dir / 'evaluation.json'} and equity_{split}_<symbol>.png")
    return payload


def _mean(values: list[float | None]) -> float | None:
    """Mean of the defined values; None when none is defined (e.g. no account closed a trade)."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.evaluate",
                                     description="Backtest a trained run on a whole data split.")
    parser.add_argument("--run-dir", type=Path, required=True, help="a run directory written by trainers.ppo")
    parser.add_argument("--split", choices=["train", "val", "test"], default="test",
                        help="which chronological split to trade (default: test)")
    parser.add_argument("--sampled", type=int, default=0, metavar="K",
                        help="also run K accounts with the sampled (stochastic) policy")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random and sampled policies")
    parser.add_argument("--checkpoint", default="best", metavar="latest|best|PATH",
                        help="which weights: the run's best by mean validation Sharpe (default; the latest "
                             "when the run has no validation scores), its latest, or a .safetensors file")
    args = parser.parse_args(argv)
    if args.sampled < 0:
        parser.error("--sampled must be >= 0")
    console = Console(width=None if sys.stdout.isatty() else 150)
    try:
        evaluate(args.run_dir, args.split, args.sampled, resolve_device(args.device), args.seed, console,
                 checkpoint=args.checkpoint)
    except (ConfigError, checkpoints.ResumeError, CheckpointError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
