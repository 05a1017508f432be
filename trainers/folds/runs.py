"""One training run per fold and seed, through the trainer's own code path: the run directory
RUN_DIR/fold_k/seed_s holds its checkpoints, validation and best-k like any run, and the
validation-selected weights (evaluate's default, checkpoints.DEFAULT_CHOICE) trade the fold's test
window (trainers.backtest.evaluation).

A finished pair (its test evaluation.json written) is not redone; a pair with checkpoints resumes
from them; so an interrupted walk-forward continues at the fold and seed it stopped."""
from __future__ import annotations

import io
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from rich.console import Console

from configs.loader import ConfigError, flatten
from configs.train import TrainConfig, as_dict
from envs.folds import Fold
from ppo_core import resolve_device
from ppo_core.files import atomic_write_bytes
from trainers.backtest.evaluation import evaluate, evaluation_file
from trainers import checkpoints
from trainers.run.build import open_session
from trainers.run.lock import ProcessLock
from trainers.run.loop import EXIT_OK, train
from trainers.run.transfer import TransferRequest



@dataclass(frozen=True)
class PairRun:
    """What one fold x seed run needs; plain values, so a worker process can receive it."""

    fold: Fold
    seed: int
    run_dir: Path
    config: TrainConfig
    """the walk-forward's base config with this fold's dates, this seed and the fold's budget"""
    warm_from: Path | None = None
    """--warm-start: the previous fold's run directory of the same seed (its selected weights)"""


def pair_dir(root: Path, fold: int, seed: int) -> Path:
    """RUN_DIR/fold_k/seed_s"""
    return Path(root) / f"fold_{fold}" / f"seed_{seed}"


def fold_config(base: TrainConfig, fold: Fold, seed: int, steps: int, purge_bars: int) -> TrainConfig:
    """`base` for one fold and seed: its split dates and trading period, the purge gap, the seed
    and the fold's account-step budget."""
    env = replace(base.env, split_dates=fold.split_dates, trade_period=fold.trade_period, purge_bars=purge_bars)
    return replace(base, env=env, run=replace(base.run, seed=seed, total_steps=steps))


def finished(run_dir: Path) -> dict[str, Any] | None:
    """The pair's test evaluation when it has one (an evaluation from before the random paths
    were recorded does not count: the pair is evaluated again), with "random_paths": symbol ->
    (K, L + 1) equity of its random valid paths."""
    path = Path(run_dir) / evaluation_file("test")
    if not path.is_file():
        return None
    payload = json.loads(path.read_text())
    paths_file = Path(run_dir) / Path(payload.get("random_paths_file", "")).name
    if payload.get("split") != "test" or not paths_file.is_file():
        return None
    with np.load(paths_file) as arrays:
        payload["random_paths"] = {symbol: arrays[symbol] for symbol in arrays.files}
    return payload


def run_pair(pair: PairRun) -> dict[str, Any] | None:
    """Train (or resume) the pair's run, then trade its test window with the checkpoint validation
    selected; the evaluation payload, or None when training was interrupted (checkpoint saved)."""
    done = finished(pair.run_dir)
    if done is not None:
        return done
    resume = (checkpoints.checkpoint_dir(pair.run_dir) / "latest.json").exists()
    request = TransferRequest(source=pair.warm_from) if pair.warm_from is not None and not resume else None
    session = open_session(pair.config, pair.run_dir, resume=resume, transfer=request)
    try:
        code = train(session)
    finally:
        session.close()
    if code != EXIT_OK:
        return None
    device = resolve_device(pair.config.run.device)
    console = Console(file=io.StringIO())  # the walk-forward report shows the test tables
    with torch.random.fork_rng(devices=[]):
        evaluate(pair.run_dir, "test", 0, device, pair.seed, console)
    return finished(pair.run_dir)


def purge_guarantee(purge_bars: int, lookback: int) -> str:
    """What `purge_bars` between train and validation (and validation and test) guarantees, in words
    (the log's first lines and walkforward.json)."""
    window = ("so the first validation and test decisions' observation windows hold none of the previous "
              "split's bars, and training's last reward (one bar ahead) is earned before them"
              if purge_bars >= lookback + 1 else
              f"fewer than the lookback + 1 = {lookback + 1}: the first validation and test observation windows "
              "still show bars of the previous split")
    return (f"purge {purge_bars} bars between train, validation and test ({window}). The features' own "
            "normalisation windows (env.scale_window, the 250-bar z-scores, the 100-bar high/low and range, the "
            "250-bar volatility percentile) reach further back, into bars the previous split traded: not "
            "look-ahead (a feature at bar t uses bars up to t only, and episodes stop at their split's last bar), "
            "but validation and test features are computed partly from training-period prices")


PLAN_FILE = "walkforward_plan.json"


@dataclass(frozen=True)
class WalkForward:
    """A whole walk-forward: its folds, seeds and base config, and where it writes."""

    run_dir: Path
    folds: list[Fold]
    seeds: list[int]
    base: TrainConfig
    steps_per_fold: int
    purge_bars: int
    warm_start: bool = False

    def pairs(self, fold: Fold) -> list[PairRun]:
        """Every seed's run of `fold` (warm-started from the previous fold's run with --warm-start)."""
        return [PairRun(fold, seed, pair_dir(self.run_dir, fold.index, seed),
                        fold_config(self.base, fold, seed, self.steps_per_fold, self.purge_bars),
                        pair_dir(self.run_dir, fold.index - 1, seed) if self.warm_start and fold.index else None)
                for seed in self.seeds]

    def plan(self) -> dict[str, Any]:
        """What RUN_DIR/walkforward_plan.json records, so a rerun can tell it continues the same one."""
        return {"folds": [vars(f) for f in self.folds], "seeds": self.seeds, "steps_per_fold": self.steps_per_fold,
                "purge_bars": self.purge_bars, "warm_start": self.warm_start,
                "config": {key: value for key, value in flatten(as_dict(self.base)).items()
                           if key not in ("run.device", "run.torch_threads")}}


def check_plan(walk: WalkForward) -> bool:
    """Write the plan to a new RUN_DIR (or one where nothing has trained yet), or confirm it equals
    the one there (True: continuing); ConfigError naming what differs otherwise."""
    path = walk.run_dir / PLAN_FILE
    plan = json.loads(json.dumps(walk.plan(), default=str))
    started = any(walk.run_dir.glob("fold_*/seed_*/checkpoints"))
    if not path.is_file() or not started:  # nothing trained yet: the plan may still change
        walk.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(plan, indent=2).encode())
        return False
    saved = json.loads(path.read_text())
    before, after = flatten(saved), flatten(plan)
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    if changed:
        details = "; ".join(f"{key}: {before.get(key)!r} there, {after.get(key)!r} now" for key in changed[:6])
        raise ConfigError(f"{path}: {walk.run_dir} holds another walk-forward ({details}); rerun with the same "
                          "settings to continue it, or choose another --run-dir")
    return True


CLAIMED_ELSEWHERE = "claimed elsewhere"
"""claim_and_run's answer when another process (on this host or another sharing RUN_DIR) holds the pair"""
POLL_SECONDS = 5.0
"""how often a process waiting for another's pair looks again"""


def claim_lock(pair: PairRun) -> ProcessLock:
    """The pair's claim, RUN_DIR/fold_k/seed_s.claim: held by the one process that trains and
    tests the pair (the kernel's lock, so a process that dies frees it)."""
    return ProcessLock(pair.run_dir.with_name(pair.run_dir.name + ".claim"), str(pair.run_dir),
                       "running this walk-forward pair")


def claim_and_run(pair: PairRun) -> tuple[dict[str, Any] | str | None, bool]:
    """(the pair's test evaluation, whether this process ran it): already there, or trained and
    tested here under its claim; CLAIMED_ELSEWHERE while another process holds the claim; None
    when training was interrupted."""
    done = finished(pair.run_dir)
    if done is not None:
        return done, False
    lock = claim_lock(pair)
    try:
        lock.acquire()
    except ConfigError:
        return CLAIMED_ELSEWHERE, False
    try:
        return run_pair(pair), True
    finally:
        lock.release()


def run_folds(walk: WalkForward, jobs: int = 1, on_pair: Callable[[PairRun, dict, bool], None] | None = None,
              poll_seconds: float = POLL_SECONDS) -> dict[tuple[int, int], dict[str, Any]] | None:
    """Every fold x seed run in fold order (a fold's seeds in parallel with `jobs` > 1); the test
    evaluations by (fold, seed), or None when a run was interrupted (its checkpoint kept).

    Several processes may share RUN_DIR (the same command on several hosts over a shared
    filesystem, or twice on one): each pair is claimed by one of them (claim_lock), the others
    take the fold's other pairs and then wait for the claimed ones, so every pair is trained and
    tested exactly once and every process ends with the whole report. `on_pair(pair, payload,
    here)` is told of each pair as it is known, `here` False for another process's."""
    payloads: dict[tuple[int, int], dict[str, Any]] = {}
    for fold in walk.folds:
        pairs = walk.pairs(fold)
        if jobs > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
                outcomes = list(zip(pairs, pool.map(claim_and_run, pairs)))
        else:  # one at a time, each reported as it ends
            outcomes = ((pair, claim_and_run(pair)) for pair in pairs)
        waiting = []
        for pair, (result, here) in outcomes:
            if result is None:
                return None
            if result == CLAIMED_ELSEWHERE:
                waiting.append(pair)
                continue
            payloads[(fold.index, pair.seed)] = result
            if on_pair is not None:
                on_pair(pair, result, here)
        while waiting:  # another process holds these: wait, or take over a claim it gave up
            time.sleep(poll_seconds)
            for pair in list(waiting):
                result, here = claim_and_run(pair)
                if result == CLAIMED_ELSEWHERE:
                    continue
                if result is None:
                    return None
                waiting.remove(pair)
                payloads[(fold.index, pair.seed)] = result
                if on_pair is not None:
                    on_pair(pair, result, here)
    return payloads
