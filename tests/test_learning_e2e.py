"""End to end: the trading agent learns a planted, observable signal.

Two synthetic symbols whose `sl_prob_signal` column announces the direction of the next bar's
open-to-close move (envs.planted_signal_bars; the drift is slightly negative, so buy-and-hold has
no edge). The trainer runs from the CLI on parquet files, so loading, features, the env, the
grouped policy and PPO are all on the path. On the unseen test split the trained greedy policy must
beat buy-and-hold and a random valid policy, and buy far more often when the signal says "up"
than when it says "down". The same check on the untrained policy must fail.
"""
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from rich.console import Console

from configs.loader import load_toml
from configs.train import TrainConfig, build
from envs import DEFAULT_SPEC, TradingSpec, VecTradingEnv, planted_signal_bars
from models import MultiSymbolPolicy
from trainers import checkpoints
from trainers.backtest.evaluation import evaluate
from trainers.ppo import main

SYMBOLS = ["PLANTA", "PLANTB"]
INCREASE = torch.tensor(DEFAULT_SPEC.ids("buy") + DEFAULT_SPEC.ids("add"))  # every action that buys
TRAIN = [
    "--symbols", ",".join(SYMBOLS), "--envs-per-symbol", "16", "--seed", "1", "--device", "cpu",
    "--total-steps", "61440",
    # the default reward weights, entropy stack and PPO settings; only run length and size change
    "--set", "run.num_steps=64", "--set", "env.episode_length=64", "--set", "run.torch_threads=1",
]


def write_planted_market(data_dir: Path) -> None:
    for seed, symbol in enumerate(SYMBOLS):
        bars = planted_signal_bars(1500, seed=seed, symbol=symbol)
        table = pa.table({
            "Date": pa.array(bars.timestamps.astype("datetime64[ns]")), "Open": bars.open,
            "High": bars.high, "Low": bars.low, "Close": bars.close, "Volume": bars.volume,
            # sl_prob_* columns are read in name order: the signal becomes obs["sl_probs"][:, 0]
            "sl_prob_1_signal": bars.sl_probs[:, 0], "sl_prob_2_noise": bars.sl_probs[:, 1],
        })
        pq.write_table(table, data_dir / f"{symbol}.parquet")


def buy_rates(policy: MultiSymbolPolicy, config: TrainConfig, data_dir: Path) -> tuple[float, float]:
    """Greedy P(buy or add | allowed, signal up) and P(buy or add | allowed, signal down) over the
    test split of both symbols."""
    env_config = config.env.backtest()
    env = VecTradingEnv(SYMBOLS, 1, env_config, data_dir=str(data_dir), split="test")
    steps = min(last - first for first, last in env.decision_range.values())
    obs, _ = env.reset()
    counts = np.zeros((2, 2))  # [signal up?][bought?]
    with torch.no_grad():
        for _ in range(steps):
            mask = env.action_masks()
            action = policy.act(obs, mask, deterministic=True)[0]
            can_buy = mask[:, INCREASE].any(1).numpy()
            up = (obs["sl_probs"][:, 0] > 0.5).long().numpy()
            bought = torch.isin(action, INCREASE).long().numpy()
            np.add.at(counts, (up[can_buy], bought[can_buy]), 1)
            obs, *_ = env.step(action)
    rates = counts[:, 1] / counts.sum(1).clip(min=1)
    return float(rates[1]), float(rates[0])


@pytest.mark.slow
def test_agent_learns_planted_signal(tmp_path):
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    data_dir.mkdir()
    write_planted_market(data_dir)
    assert main(TRAIN + ["--data-dir", str(data_dir), "--run-dir", str(run_dir)]) == 0

    config = build(TrainConfig, load_toml(run_dir / "config.toml"))
    spec = TradingSpec.from_config(config.env)
    trained = MultiSymbolPolicy(SYMBOLS, config.model, spec).eval()
    checkpoints.load_weights(checkpoints.latest(run_dir), trained)
    torch.manual_seed(config.run.seed)
    untrained = MultiSymbolPolicy(SYMBOLS, config.model, spec).eval()

    def learned(policy: MultiSymbolPolicy) -> bool:
        up, down = buy_rates(policy, config, data_dir)
        return up - down > 0.4

    assert learned(trained), buy_rates(trained, config, data_dir)
    assert not learned(untrained), buy_rates(untrained, config, data_dir)

    report = evaluate(run_dir, "test", 0, torch.device("cpu"), seed=0, console=Console(width=150))
    for symbol in SYMBOLS:
        rows = report["results"][symbol]
        agent = rows["agent (greedy)"]["total_return"]
        assert agent > rows["buy & hold"]["total_return"], rows
        assert agent > rows["random valid"]["total_return"], rows
        assert agent > 0.01, rows
