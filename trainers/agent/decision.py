"""The agent's decision for the bar after the newest one in the data, built by the env's own code:
the env's features, window, observation and mask at each symbol's newest bar (VecTradingEnv.reset
with `at="last"`), the run's checkpoint, the greedy action. The account is assumed flat with the
run's initial capital."""
from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from configs.loader import ConfigError, load_toml
from configs.train import TrainConfig, build
from envs import VecTradingEnv
from envs.splits import format_timestamp
from models import MultiSymbolPolicy
from trainers.run import checkpoints

_AGE = re.compile(r"(\d+(?:\.\d+)?)([mhdw])")
_UNIT_S = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}
REASONS = {"sell": "no position to sell (flat)", "add": "no position to add to (flat)",
           "buy": "cash or exposure limit (env.max_exposure)"}
"""why an action of each kind is masked for a flat account"""


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


def parse_age(text: str) -> float | None:
    """Seconds of --max-age ("36h", "5d", "2w"; "0" = no limit -> None); "auto" is resolved per symbol."""
    if text.strip() == "0":
        return None
    match = _AGE.fullmatch(text.strip().lower())
    if not match:
        raise ConfigError(f"--max-age {text!r}: a number with a unit (m, h, d, w), e.g. 5d or 36h; auto; or 0")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def predict(run_dir: Path, data_dir: str | None, checkpoint: str, symbols: list[str] | None,
            max_age: str, device: torch.device, now_ns: int | None = None) -> tuple[list[Decision], str]:
    """Each symbol's decision for its next bar and a line naming the checkpoint used; ConfigError
    for a symbol the run did not train, a missing data file, data older than `max_age`."""
    config = build(TrainConfig, load_toml(run_dir / "config.toml"))
    trained = list(config.run.symbols)
    unknown = [s for s in symbols or [] if s not in trained]
    if unknown:
        raise ConfigError(f"--symbols: {', '.join(unknown)} not trained by {run_dir} (it trained {', '.join(trained)})")
    data_dir = data_dir or config.run.data_dir
    missing = [s for s in trained if not (Path(data_dir) / f"{s}.parquet").is_file()]
    if missing:
        raise ConfigError(f"{data_dir}: no data file for {', '.join(missing)}; predict needs the real bars of "
                          "every symbol the run trained (no synthetic stand-ins)")
    chosen, which = checkpoints.choose(run_dir, checkpoint)
    # the newest bars are in the test split (it runs to the data's end once the trading period is dropped)
    env_config = replace(config.env.backtest(), trade_period=(), purge_bars=0)
    env = VecTradingEnv(trained, 1, env_config, device, data_dir=data_dir, split="test", seed=0)
    _check_age(env, max_age, now_ns if now_ns is not None else time.time_ns())
    policy = MultiSymbolPolicy(trained, config.model, env.trading_spec).to(device).eval()
    checkpoints.load_weights(chosen, policy)
    obs, _ = env.reset(options={"at": "last"})
    mask = env.action_masks()
    with torch.no_grad():
        logits, values = policy(obs, mask)
    probs = torch.softmax(logits, dim=-1).cpu().numpy()
    names, kinds = env.trading_spec.action_names, [a.kind for a in env.config.actions]
    decisions = []
    for s, symbol in enumerate(trained):
        if symbols and symbol not in symbols:
            continue
        bars = env.markets[symbol]
        path = Path(data_dir) / f"{symbol}.parquet"
        decisions.append(Decision(
            symbol=symbol, as_of=format_timestamp(int(bars.timestamps[int(env.accounts.t[s])])),
            action=names[int(np.argmax(probs[s]))], probabilities=dict(zip(names, probs[s].tolist())),
            value=float(values[s]), masked={n: REASONS.get(k, "masked") for n, k, ok in
                                            zip(names, kinds, mask[s].tolist()) if not ok},
            account=f"flat: {config.env.initial_capital:,.0f} cash, no position",
            data_file=str(path), data_sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    return decisions, which


def _check_age(env: VecTradingEnv, max_age: str, now_ns: int) -> None:
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
