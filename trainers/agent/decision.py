"""The agent's decision for the bar after the newest one in the data, built by the env's own code:
the env's features, window, observation and mask at each symbol's newest bar (VecTradingEnv.reset
with `at="last"`), the run's checkpoint, the greedy action. The account is flat with the run's
initial capital, or holds what a positions file states (`read_positions`); the paper ledger's
account comes from replaying it (trainers.agent.paper)."""
from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from configs.loader import ConfigError
from configs.train import read_run_config
from envs import VecTradingEnv
from envs.accounts import Accounts
from envs.actions import KIND
from envs.splits import format_timestamp
from models import MultiSymbolPolicy
from trainers import checkpoints

_AGE = re.compile(r"(\d+(?:\.\d+)?)([mhdw])")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@dataclass(frozen=True)
class Decision:
    symbol: str
    as_of: str
    """timestamp of the newest bar: the decision fills at the next bar's open"""
    action: str
    """the greedy action's name"""
    probabilities: dict[str, float]
    value: float
    masked: dict[str, str]
    """masked action -> why"""
    account: str
    data_file: str
    data_sha256: str


def masked_because(kind: str, holding: bool) -> str:
    """Why an action of `kind` is masked for an account that holds shares (or is flat)."""
    record = KIND[kind]
    return (record.masked_holding if holding else record.masked_flat) or "masked"


def parse_age(text: str) -> float | None:
    """Seconds of --max-age ("36h", "5d", "2w"; "0" = no limit -> None); "auto" is resolved per symbol."""
    if text.strip() == "0":
        return None
    match = _AGE.fullmatch(text.strip().lower())
    if not match:
        raise ConfigError(f"--max-age {text!r}: a number with a unit (m, h, d, w), e.g. 5d or 36h; auto; or 0")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def data_files(symbols: list[str], data_dir: str) -> dict[str, Path]:
    """symbol -> its parquet file; ConfigError naming the symbols without one (acting on an agent
    needs real bars: no generated stand-ins)."""
    files = {s: Path(data_dir) / f"{s}.parquet" for s in symbols}
    missing = [s for s, path in files.items() if not path.is_file()]
    if missing:
        raise ConfigError(f"{data_dir}: no data file for {', '.join(missing)}; acting on the agent needs the "
                          "real bars of every symbol the run trained (no synthetic stand-ins)")
    return files


def decide(env: VecTradingEnv, policy: MultiSymbolPolicy, accounts: Accounts, account: dict[str, str],
           data_dir: str) -> list[Decision]:
    """The greedy decision of each symbol's account (one per symbol, E = 1) in state `accounts` at
    its bar `accounts.t`, with the env's own observation and mask; `account` describes each
    symbol's assumed account state."""
    obs, mask = env.decision_inputs(accounts)
    with torch.no_grad():
        logits, values = policy(obs, mask)
    probs = torch.softmax(logits, dim=-1).cpu().numpy()
    names, kinds = env.trading_spec.action_names, [a.kind for a in env.config.actions]
    decisions = []
    for s, symbol in enumerate(env.symbols):
        if symbol not in account:
            continue
        bars, path = env.markets[symbol], Path(data_dir) / f"{symbol}.parquet"
        holding = float(accounts.shares[s]) > 0
        decisions.append(Decision(
            symbol=symbol, as_of=format_timestamp(int(bars.timestamps[int(accounts.t[s])])),
            action=names[int(np.argmax(probs[s]))], probabilities=dict(zip(names, probs[s].tolist())),
            value=float(values[s]), masked={n: masked_because(k, holding) for n, k, ok in
                                            zip(names, kinds, mask[s].tolist()) if not ok},
            account=account[symbol], data_file=str(path), data_sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    return decisions


def predict(run_dir: Path, data_dir: str | None, checkpoint: str, symbols: list[str] | None,
            max_age: str, device: torch.device, now_ns: int | None = None,
            positions: Path | None = None) -> tuple[list[Decision], str]:
    """Each symbol's decision for its next bar and a line naming the checkpoint used; the account
    is flat, or holds what the `positions` file gives. ConfigError for a symbol the run did not
    train, a missing data file, data older than `max_age`, a bad positions file."""
    config = read_run_config(run_dir / "config.toml")
    trained = list(config.run.symbols)
    unknown = [s for s in symbols or [] if s not in trained]
    if unknown:
        raise ConfigError(f"--symbols: {', '.join(unknown)} not trained by {run_dir} (it trained {', '.join(trained)})")
    data_dir = data_dir or config.run.data_dir
    data_files(trained, data_dir)
    chosen, which = checkpoints.choose(run_dir, checkpoint)
    # the newest bars are in the test split (it runs to the data's end once the trading period is dropped)
    env_config = replace(config.env.backtest(), trade_period=(), purge_bars=0)
    env = VecTradingEnv(trained, 1, env_config, device, data_dir=data_dir, split="test", seed=0)
    check_age(env, max_age, now_ns if now_ns is not None else time.time_ns())
    policy = checkpoints.load_policy(config, [chosen], env.symbols, env.trading_spec, env.device)
    env.reset(options={"at": "last"})
    accounts, account = env.accounts, {s: f"flat: {config.env.initial_capital:,.0f} cash, no position"
                                       for s in trained}
    if positions is not None:
        accounts, account = with_holdings(env, read_positions(positions, trained))
    shown = {s: text for s, text in account.items() if not symbols or s in symbols}
    return decide(env, policy, accounts, shown, data_dir), which


@dataclass(frozen=True)
class Holding:
    """A symbol's account as a positions file states it."""

    shares: float
    cash: float
    entry: float | None
    """average fill price of the shares; None = the newest close (no unrealised PnL)"""


def read_positions(path: Path, symbols: list[str]) -> dict[str, Holding]:
    """symbol -> Holding from a JSON file {"SYMBOL": {"shares": 10, "cash": 90000, "entry": 101.5}};
    every key is optional (shares 0; cash = the run's initial capital less the shares' cost at
    entry; entry = the newest close), symbols left out are flat. ConfigError naming the file and
    the field that is wrong."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"--positions {path}: not a readable JSON file ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f'--positions {path}: expected an object {{"SYMBOL": {{"shares": .., "cash": .., '
                          f'"entry": ..}}}}, got {type(raw).__name__}')
    unknown = [s for s in raw if s not in symbols]
    if unknown:
        raise ConfigError(f"--positions {path}: {', '.join(unknown)} not trained by the run "
                          f"(it trained {', '.join(symbols)})")
    holdings = {}
    for symbol, fields_ in raw.items():
        extra = set(fields_) - {"shares", "cash", "entry"} if isinstance(fields_, dict) else {"?"}
        values = {}
        for key in ("shares", "cash", "entry"):
            value = fields_.get(key) if isinstance(fields_, dict) else None
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ConfigError(f"--positions {path}: {symbol}.{key} must be a non-negative number, got {value!r}")
            values[key] = value
        if extra:
            raise ConfigError(f"--positions {path}: {symbol} takes an object with shares, cash and entry; "
                              f"got {fields_!r}")
        if values["entry"] == 0 and (values["shares"] or 0) > 0:
            raise ConfigError(f"--positions {path}: {symbol}.entry must be above 0 for a held position")
        shares = float(values["shares"] or 0.0)
        entry = None if values["entry"] is None else float(values["entry"])
        holdings[symbol] = Holding(shares, float(values["cash"]) if values["cash"] is not None else math.nan, entry)
    return holdings


def with_holdings(env: VecTradingEnv, holdings: dict[str, Holding]) -> tuple[Accounts, dict[str, str]]:
    """The env's current accounts (one per symbol, at the newest bar) holding `holdings`: cash,
    shares and entry set, equity and its peak = cash + shares x close; the rest of the state (the
    return rings, trade counts) that of a fresh account. And a line per symbol describing it."""
    acc = replace(env.accounts)
    cash, shares, entry = acc.cash.clone(), acc.shares.clone(), acc.entry.clone()
    capital = env.config.initial_capital
    account = {}
    for s, symbol in enumerate(env.symbols):
        close = float(env.markets[symbol].close[int(acc.t[s])])
        held = holdings.get(symbol, Holding(0.0, math.nan, None))
        price = held.entry if held.entry is not None else close
        shares[s] = held.shares
        entry[s] = price if held.shares > 0 else 0.0
        cash[s] = held.cash if not math.isnan(held.cash) else capital - held.shares * price
        if float(cash[s]) < 0:
            raise ConfigError(f"--positions: {symbol}'s cash would be {float(cash[s]):,.2f} (the run's capital "
                              f"{capital:,.0f} less {held.shares:g} shares at {price:,.4f}); give its cash")
        account[symbol] = (f"{held.shares:g} shares at {price:,.4f}, {float(cash[s]):,.2f} cash" if held.shares
                           else f"flat: {float(cash[s]):,.2f} cash, no position")
    equity = cash + shares * torch.tensor([float(env.markets[s].close[int(acc.t[i])]) for i, s in
                                           enumerate(env.symbols)], dtype=torch.float64, device=env.device)
    acc.cash, acc.shares, acc.entry, acc.equity, acc.peak = cash, shares, entry, equity, equity.clone()
    return acc, account


def check_age(env: VecTradingEnv, max_age: str, now_ns: int) -> None:
    """ConfigError when a symbol's newest bar is older than `max_age` (auto: 5 bar intervals, at
    least 4 days, so a weekend and a holiday pass for daily bars)."""
    for symbol, bars in env.markets.items():
        newest = int(bars.timestamps[-1])
        if max_age.strip() == "auto":
            interval = float(np.median(np.diff(bars.timestamps[-50:]))) / 1e9
            limit: float | None = max(5 * interval, 4 * 86_400.0)
        else:
            limit = parse_age(max_age)
        age = (now_ns - newest) / 1e9
        if limit is not None and age > limit:
            raise ConfigError(f"{bars.where}: the newest bar ({format_timestamp(newest)}) is {age / 86_400:.1f} days "
                              f"old, beyond --max-age ({limit / 86_400:.1f} days): update the data (python -m "
                              "envs.fetch SYMBOL --force) or pass --max-age 0 to predict from it anyway")
