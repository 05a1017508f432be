"""What the learning benches share: train one run with the trainer's own code and backtest it on the
test split, one row per symbol against the oracle and the baselines, and the IQM of (seeds, tasks)
scores with its stratified-bootstrap interval."""
from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.console import Console

from configs.cli import device_or_auto
from configs.train import TrainConfig
from envs import SPLITS
from ppo_core import resolve_device
from trainers.backtest.evaluation import evaluate
from trainers.backtest.report import AGENT, MATCHED, RANDOM
from trainers.backtest.uncertainty import stratified_bootstrap_iqm
from trainers.run.build import open_session
from trainers.run.loop import train
from trainers.run.transfer import TransferRequest


def train_and_evaluate(config: TrainConfig, run_dir: Path, checkpoints: Sequence[str],
                       transfer: TransferRequest | None = None) -> tuple[dict[str, dict], float]:
    """Train `config` in `run_dir` (from `transfer` when given), then backtest each of `checkpoints`
    ("average", "best", "latest", "ensemble") on the test split; ({checkpoint: evaluation payload}, seconds).
    Exits naming the run when training fails."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        session = open_session(config, run_dir, transfer=transfer)
        try:
            code = train(session)
        finally:
            session.close()
        if code != 0:
            sys.exit(f"{run_dir.name}: training failed (exit code {code}); see the messages above")
        reports = {kind: evaluate(run_dir, "test", 0, session.device, seed=config.run.seed,
                                  console=Console(file=sys.stderr, width=150), checkpoint=kind)
                   for kind in checkpoints}
    return reports, time.perf_counter() - start


def backtest_elsewhere(run_dir: Path, kinds: Sequence[str], data_dirs: Sequence[Path], device: str | None,
                       seed: int) -> dict[str, list[dict]]:
    """Backtest each of `kinds` on every split of each folder's bars (other draws of the run's
    markets: none of them trained on, validated on or tested on); {kind: payloads, folder by folder,
    SPLITS in order}. Their evaluation.json and PNGs go to RUN_DIR/elsewhere/."""
    device = resolve_device(device_or_auto(device))
    console = Console(file=io.StringIO())  # dozens of tables: the bench prints its own summary
    return {kind: [evaluate(run_dir, split, 0, device, seed=seed, console=console, checkpoint=kind, data_dir=data_dir,
                            out_dir=run_dir / "elsewhere" / f"{data_dir.name}_{split}_{kind}")
                   for data_dir in data_dirs for split in SPLITS]
            for kind in kinds}


def summarise(report: dict, oracle: dict[str, float]) -> list[dict]:
    """One row per symbol of an evaluation payload: the greedy agent's test Sharpe beside the oracle's
    (when known), matched buy-and-hold (rebalanced to the agent's exposure; its realised exposure)
    and the median of the random valid paths; the agent's percentile among those paths; its share
    of the oracle; whether it beat both baselines."""
    rows = []
    for symbol, strategies in report["results"].items():
        agent, baselines = strategies[AGENT], report["baselines"][symbol]
        row = {"symbol": symbol, "agent_sharpe": agent["sharpe_annualised"],
               "oracle_sharpe": oracle.get(symbol), "matched_bh_sharpe": strategies[MATCHED]["sharpe_annualised"],
               "matched_bh_exposure": strategies[MATCHED]["exposure"],
               "random_sharpe": strategies[RANDOM]["sharpe_annualised"],
               "random_percentile": baselines[RANDOM]["agent_percentile"],
               "agent_return": agent["total_return"], "agent_max_drawdown": agent["max_drawdown"],
               "agent_exposure": agent["exposure"],
               "agent_trades": agent["trades"]}
        row["oracle_share"] = (row["agent_sharpe"] / row["oracle_sharpe"]
                               if row["oracle_sharpe"] and row["oracle_sharpe"] > 0 else None)
        row["beats_matched_and_random"] = (row["agent_sharpe"] > row["matched_bh_sharpe"]
                                           and row["agent_sharpe"] > row["random_sharpe"])
        rows.append(row)
    return rows


def interval(scores: list[list[float]]) -> dict[str, float] | None:
    """IQM of (seeds, tasks) scores with its stratified-bootstrap 95 % interval (None for one seed)."""
    if len(scores) < 2:
        return None
    result = stratified_bootstrap_iqm(np.asarray(scores, dtype=np.float64))
    return {"point": result.point, "low": result.low, "high": result.high}
