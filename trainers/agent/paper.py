"""Paper trading: a run's policy, frozen when the ledger starts, trades every bar newer than the
ledger's last one with the env's own fills, costs and rules, and the ledger records it.

How it stays exact and idempotent: every run replays the ledger's account from its start (each
symbol flat at its first bar on or after the start, as `trainers.evaluate` starts a split) through
the newest bar, greedy, in one VecTradingEnv (one account per symbol). Bars the ledger holds are
checked against the replay; the others are written, one transaction per step. Run again on the
same data, nothing is written; killed mid-way, the next run writes the missing bars. The replay
also gives each account's decision for the bar after the newest one.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator

import torch

from configs.loader import ConfigError
from configs.train import TrainConfig, read_run_config
from envs import VecTradingEnv, load_market
from envs.accounts import Accounts
from envs.bars import Bars, DataError
from envs.splits import format_timestamp, parse_timestamp
from models import MultiSymbolPolicy
from trainers.agent.decision import Decision, check_age, data_files, decide
from trainers.agent.ledger import BarRecord, Ledger, LedgerError, Start, check_recorded
from trainers import checkpoints
from trainers.run.lock import ProcessLock, run_lock


@dataclass(frozen=True)
class PaperResult:
    """What one paper run did: bars written and checked, each symbol's newest state, the pending
    decisions (for the bar after the newest one) and notes (symbols that could not trade)."""

    start: str
    written: int
    """(symbol, bar) rows of positions written by this run"""
    checked: int
    """bars already in the ledger that the replay reproduced"""
    newest: dict[str, tuple]
    """symbol -> (timestamp, shares, cash, equity) of its newest ledger row"""
    pending: list[Decision]
    notes: list[str]
    policy: str


def paper_trade(run_dir: Path, data_dir: str | None, ledger_path: Path, start: str | None, checkpoint: str,
                device: torch.device, write: bool = True, max_age: str = "0") -> PaperResult:
    """Bring the ledger up to the newest bar of the data (write=False: replay and check only, for
    predict). A new ledger starts at `start` (ISO date; default the newest bar any symbol has in
    common) with a copy of `checkpoint`'s weights beside it. ConfigError (LedgerError, DataError)
    with the reason for a ledger of another run or start, changed weights or bars, stale data."""
    try:
        start_ns = None if start is None else parse_timestamp(start, "--from")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    locks = [run_lock(run_dir, "paper trading"),
             ProcessLock(Path(f"{ledger_path}.lock"), str(ledger_path), "paper trading")] if write else []
    ledger = None
    try:
        for lock in locks:
            lock.acquire()
        config = read_run_config(run_dir / "config.toml")
        data_dir = data_dir or config.run.data_dir
        data_files(list(config.run.symbols), data_dir)
        # the bars are read (and checked) before a new ledger is made: a refused file writes nothing
        markets = load_market(list(config.run.symbols), data_dir, strict=config.env.strict_data)
        ledger = Ledger.open(ledger_path, create=write)
        meta = ledger.meta() or (_new_ledger(ledger, run_dir, config, markets, start_ns, checkpoint) if write else {})
        if not meta:
            raise LedgerError(f"{ledger_path}: an empty ledger (no paper run has started it)")
        weights = check_meta(meta, ledger_path, run_dir, start_ns)
        env, notes = paper_env(config, markets, meta["start"], device)
        if env is None:
            return PaperResult(meta["start"], 0, 0, ledger.last_positions(), [], notes, meta["policy"])
        check_age(env, max_age, time.time_ns())
        chosen, _ = checkpoints.choose(run_dir, str(weights))
        actor = checkpoints.load_policy(config, [chosen], env.symbols, env.trading_spec, env.device)
        steps = Replay(env, actor)
        written, checked = _record(ledger, steps, data_dir, write)
        final = steps.final
        pending = decide(env, actor, final, {s: _describe(final, env, s) for s in env.symbols
                                            if s not in _stopped(env, final)}, data_dir)
        notes += [f"{s}: equity fell below env.equity_floor; its account stopped trading (as in evaluation)"
                  for s in _stopped(env, final)]
        return PaperResult(meta["start"], written, checked, ledger.last_positions(), pending, notes, meta["policy"])
    finally:
        if ledger is not None:
            ledger.close()
        for lock in locks:
            lock.release()


class Replay:
    """Greedy trading of the env's split, one account per symbol, as an iterator over steps: each
    gives the flat starts (first step only) and a BarRecord per symbol still trading. Once
    exhausted, `final` holds the accounts at each symbol's last bar (the state the next decision
    is made from)."""

    def __init__(self, env: VecTradingEnv, actor: MultiSymbolPolicy) -> None:
        self.env, self.actor = env, actor
        self.final: Accounts | None = None

    def __iter__(self) -> Iterator[tuple[list[Start], list[BarRecord]]]:
        env, names = self.env, self.env.trading_spec.action_names
        symbols, capital = env.symbols, env.config.initial_capital
        stamps = [env.markets[s].timestamps for s in symbols]
        opens, closes = [env.markets[s].open for s in symbols], [env.markets[s].close for s in symbols]
        obs, _ = env.reset()
        t0 = env.accounts.t.tolist()
        starts = [Start(s, int(stamps[i][t0[i]]), float(closes[i][t0[i]]), capital) for i, s in enumerate(symbols)]
        alive = [True] * len(symbols)
        final = replace(env.accounts)
        for k in range(max(last - first for first, last in env.decision_range.values())):
            mask = env.action_masks()
            with torch.no_grad():
                action = self.actor.act(obs, mask, deterministic=True)[0]
            decided, shares_before = env.accounts.t.tolist(), env.accounts.shares.tolist()
            obs, _, terminated, truncated, info = env.step(action)
            after = env.final_accounts
            bar, shares, cash = after.t.tolist(), after.shares.tolist(), after.cash.tolist()
            equity, exposure = info["equity"].tolist(), info["exposure"].tolist()
            executed, filled = info["executed_action"].tolist(), info["filled"].tolist()
            notional, cost, chosen = info["notional"].tolist(), info["cost"].tolist(), action.tolist()
            ended = (terminated | truncated).tolist()
            finished = [alive[i] and ended[i] for i in range(len(symbols))]
            if any(finished):
                final.replace_where(torch.tensor(finished, device=env.device), after)
            records = [BarRecord(
                symbol=s, decided_ns=int(stamps[i][decided[i]]), bar_ns=int(stamps[i][bar[i]]),
                action=names[chosen[i]], executed=names[executed[i]], filled=bool(filled[i]),
                shares_traded=shares[i] - shares_before[i], open=float(opens[i][bar[i]]), notional=notional[i],
                cost=cost[i], close=float(closes[i][bar[i]]), shares=shares[i], cash=cash[i], equity=equity[i],
                exposure=exposure[i]) for i, s in enumerate(symbols) if alive[i]]
            alive = [alive[i] and not ended[i] for i in range(len(symbols))]
            yield (starts if k == 0 else []), records
        self.final = final


def _new_ledger(ledger: Ledger, run_dir: Path, config: TrainConfig, markets: dict[str, Bars],
                start_ns: int | None, checkpoint: str) -> dict[str, str]:
    """Start a ledger: freeze the chosen weights beside it and record the run, weights and start."""
    chosen, which = checkpoints.choose(run_dir, checkpoint)
    if start_ns is None:  # the newest bar every symbol has: each account starts flat there
        start_ns = min(int(b.timestamps[-1]) for b in markets.values())
    frozen = ledger.path.with_name(ledger.path.stem + ".policy.safetensors")
    shutil.copyfile(chosen.weights, frozen)
    meta = {"run_dir": str(run_dir.resolve()), "start": format_timestamp(start_ns), "weights": frozen.name,
            "weights_sha256": _sha256(frozen), "policy": which, "symbols": ",".join(config.run.symbols),
            "initial_capital": repr(config.env.initial_capital),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ledger.initialise(meta)
    return ledger.meta()


def check_meta(meta: dict[str, str], ledger_path: Path, run_dir: Path, start_ns: int | None) -> Path:
    """The frozen weights file after checking that the ledger belongs to this run and start and that
    its weights are unchanged."""
    if Path(meta["run_dir"]) != run_dir.resolve():
        raise LedgerError(f"{ledger_path}: a ledger of run {meta['run_dir']}, not {run_dir}; paper-trade it with "
                          "that --run-dir, or start a new ledger")
    if start_ns is not None and start_ns != parse_timestamp(meta["start"], "start"):
        raise LedgerError(f"{ledger_path}: this ledger started at {meta['start']}, not "
                          f"{format_timestamp(start_ns)}; to replay "
                          "from another date start a new ledger (--ledger NEW --from DATE)")
    weights = ledger_path.with_name(meta["weights"])
    if not weights.is_file() or _sha256(weights) != meta["weights_sha256"]:
        raise LedgerError(f"{weights}: the ledger's frozen policy weights are missing or changed (sha256 "
                          f"{meta['weights_sha256'][:12]}... recorded); restore the file or start a new ledger")
    return weights


def paper_env(config: TrainConfig, markets: dict[str, Bars], start: str, device: torch.device, per_symbol: int = 1
              ) -> tuple[VecTradingEnv | None, list[str]]:
    """A backtest env (`per_symbol` accounts per symbol, one for the paper account itself) whose
    test split runs from `start` to the data's end, over the symbols that have a bar to trade
    there, and a note for each other one."""
    env_config = replace(config.env.backtest(), split_dates=(start, start), trade_period=(), purge_bars=0)
    tradable, notes = [], []
    for symbol in config.run.symbols:
        try:
            VecTradingEnv([symbol], 1, env_config, device, markets={symbol: markets[symbol]}, split="test", seed=0)
            tradable.append(symbol)
        except DataError:
            newest = format_timestamp(int(markets[symbol].timestamps[-1]))
            notes.append(f"{symbol}: no bar to trade after {start} yet (newest {newest})")
    if not tradable:
        return None, notes
    return VecTradingEnv(tradable, per_symbol, env_config, device, markets={s: markets[s] for s in tradable},
                         split="test", seed=0), notes


def _record(ledger: Ledger, steps: Iterable[tuple[list[Start], list[BarRecord]]], data_dir: str,
            write: bool) -> tuple[int, int]:
    """Check each step's bars the ledger holds against the replay and (when `write`) write the
    ones it lacks, one transaction per step as the replay goes; (rows written, bars checked)."""
    recorded, written, checked = ledger.recorded(), 0, 0
    for starts, records in steps:
        new_starts, new_records = [], []
        for item in [*starts, *records]:
            start = isinstance(item, Start)
            key = (item.symbol, item.ts_ns if start else item.bar_ns)
            if key not in recorded:
                (new_starts if start else new_records).append(item)
                continue
            check_recorded(recorded, *key, item.cash if start else item.equity, ledger.path,
                           str(Path(data_dir) / f"{item.symbol}.parquet"))
            checked += 1
        if write and (new_starts or new_records):
            ledger.write_bar(new_starts, new_records)
            written += len(new_starts) + len(new_records)
    return written, checked


def _stopped(env: VecTradingEnv, final: Accounts) -> list[str]:
    """Symbols whose account ended before the data's last bar (the equity floor)."""
    return [s for i, s in enumerate(env.symbols) if int(final.t[i]) < env.decision_range[s][1]]


def _describe(final: Accounts, env: VecTradingEnv, symbol: str) -> str:
    i = env.symbols.index(symbol)
    shares, cash = float(final.shares[i]), float(final.cash[i])
    held = f"{shares:,.4f} shares at {float(final.entry[i]):,.4f}" if shares > 0 else "no position"
    return f"ledger: {held}, {cash:,.2f} cash, equity {float(final.equity[i]):,.2f}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
