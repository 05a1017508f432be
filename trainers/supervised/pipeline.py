"""One supervised pretraining run (`python -m trainers.pretrain`): inputs from the env, the
walk-forward plan, every model's fits and causal probabilities, the parquet copies, the encoder
checkpoint, the metrics, the backtests, pretrain.json."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from rich.console import Console

from configs.train import TrainConfig, as_dict
from envs import VecTradingEnv, load_bars
from envs.bars import NUM_SL_PROBS
from envs.splits import format_timestamp, parse_trade_period
from ppo_core.device import resolve_device, set_cpu_threads
from ppo_core.files import atomic_write_bytes
from trainers.backtest.report import write_json
from trainers.supervised.causal import (
    TRAIN_REFIT,
    Plan,
    created_now,
    file_sha256,
    last_label_time,
    per_symbol_columns,
    plan_refits,
    served_rows,
    write_copy,
)
from trainers.supervised.data import CHUNK, Examples, build_examples, split_bounds
from trainers.supervised.fit import FitSettings, Fitted, fit
from trainers.supervised.metrics import classification_metrics
from trainers.supervised.models import MODEL_NAMES, build_model, count_parameters
from trainers.supervised.report import backtest, print_table, split_env, summarise_backtest

ENCODER_FILE = "encoder.safetensors"
ENCODER_FORMAT_VERSION = "2"
"""2: per-symbol heads (head.weight (S, D)) and last_label_date; 1: one head, no label date"""


@dataclass(frozen=True)
class PretrainOptions:
    out_dir: Path
    models: tuple[str, ...] = MODEL_NAMES
    horizon: int = 1
    refits: int = 4
    """walk-forward refits across the train split (after the first min_history examples)"""
    min_history: int = 500
    """known train examples (all symbols) before the first walk-forward model"""
    stop_fraction: float = 0.2
    """share of its newest known examples a walk-forward model early-stops on"""
    hidden: int = 32
    """width of the mlp / lstm / gru models"""
    fit: FitSettings = field(default_factory=FitSettings)

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown or not self.models:
            raise ValueError(f"--models: unknown {', '.join(unknown) or 'none given'}; choose from "
                             f"{', '.join(MODEL_NAMES)}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"--models: duplicates in {', '.join(self.models)}")
        if self.horizon < 1:
            raise ValueError(f"--horizon: must be >= 1 bar, got {self.horizon}")
        if self.refits < 1:
            raise ValueError(f"--refits: must be >= 1, got {self.refits}")
        if self.min_history < 10:
            raise ValueError(f"--min-history: must be >= 10 examples, got {self.min_history}")
        if not 0.05 <= self.stop_fraction <= 0.5:
            raise ValueError(f"stop_fraction: must be in [0.05, 0.5], got {self.stop_fraction}")
        if self.hidden < 1:
            raise ValueError(f"--hidden: must be >= 1, got {self.hidden}")

    @property
    def columns(self) -> dict[str, str]:
        """sl_prob column -> model, for the first NUM_SL_PROBS models (the loader's limit)."""
        return {f"sl_prob_{m}": m for m in self.models[:NUM_SL_PROBS]}


@dataclass
class ModelResult:
    probabilities: np.ndarray
    """(M,) pooled causal probabilities, 0.5 where no model serves the bar"""
    fits: list[dict[str, object]]
    before_validation: Fitted
    """the fit that serves the validation split: it saw no label at or after the first validation
    date, so a run on the same split dates can start from it (encoder.safetensors)"""
    parameters: int


def fit_plan(name: str, index: int, examples: Examples, plan: Plan, config: TrainConfig,
             options: PretrainOptions, env: VecTradingEnv, console: Console) -> ModelResult:
    """Every fit of `plan` for model `name`; each serves its bars' probabilities."""
    probabilities = np.full(len(examples), 0.5)
    fits, fitted, before_validation = [], None, None
    for k, refit in enumerate(plan.refits):
        seed = config.run.seed * 1009 + index * 101 + k
        torch.manual_seed(seed)
        model = build_model(name, lookback=config.env.lookback, hidden=options.hidden,
                            encoder=config.model.encoder, obs_shapes=env.trading_spec.obs_shapes,
                            num_symbols=len(examples.symbols))
        start = time.perf_counter()
        fitted = fit(model, examples, refit.fit_rows, refit.stop_rows, options.fit, seed)
        rows = served_rows(examples, refit)
        if len(rows):
            probabilities[rows] = fitted.probabilities(*examples.take(rows))
        seconds = time.perf_counter() - start
        if refit.name == TRAIN_REFIT:
            before_validation = fitted
        fits.append({**refit.describe(), "epochs": fitted.epochs, "best_epoch": fitted.best_epoch,
                     "stop_loss": fitted.stop_loss, "seconds": round(seconds, 2)})
        console.print(f"  {name:8s} {refit.name:14s} fit {len(refit.fit_rows):6d}  stop {len(refit.stop_rows):5d}"
                      f"  epochs {fitted.epochs:3d} (best {fitted.best_epoch:3d})  {seconds:6.1f} s")
    assert fitted is not None and before_validation is not None  # every plan has both
    return ModelResult(probabilities, fits, before_validation, count_parameters(fitted.model))


def save_encoder(path: Path, fitted: Fitted, config: TrainConfig, env: VecTradingEnv, target: str,
                 horizon: int, last_label: int) -> None:
    """encoder.safetensors: keys `encoder.<FeatureEncoder key>` and `head.weight` (S, D),
    `head.bias` (S,); metadata kind sl_encoder, format_version, encoder_config, obs_shapes, symbols
    (the heads' order), target, horizon, lookback, split_dates and last_label_date (the newest bar
    whose price any of its fit or early-stopping labels used: a run must validate after it)."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in fitted.model.state_dict().items()}
    metadata = {"kind": "sl_encoder", "format_version": ENCODER_FORMAT_VERSION,
                "encoder_config": json.dumps(asdict(config.model.encoder)),
                "obs_shapes": json.dumps({k: list(v) for k, v in env.trading_spec.obs_shapes.items()}),
                "symbols": ",".join(env.symbols), "target": target, "horizon": str(horizon),
                "lookback": str(config.env.lookback), "split_dates": json.dumps(list(env.config.split_dates)),
                "last_label_date": format_timestamp(last_label)}
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))


def _split_rows(examples: Examples, env: VecTradingEnv, served: np.ndarray) -> np.ndarray:
    """Rows of the decision bars of `env`'s split (each symbol's decision range, its last marked bar
    excluded) that have a label and a serving model."""
    keep = np.zeros(len(examples), dtype=bool)
    for symbol in env.symbols:
        s = examples.symbols.index(symbol)
        first, last = env.decision_range[symbol]
        keep |= (examples.symbol == s) & (examples.bar >= first) & (examples.bar < last)
    return np.flatnonzero(keep & examples.labelled & served)


def run_pretrain(config: TrainConfig, options: PretrainOptions, console: Console | None = None) -> dict:
    """The whole run; returns what pretrain.json holds. ValueError / DataError on bad input."""
    console = console or Console()
    began = time.perf_counter()
    out_dir = Path(options.out_dir)
    data_dir = Path(config.run.data_dir)
    if data_dir.is_dir() and out_dir.resolve() == data_dir.resolve():
        raise ValueError(f"--out-dir {out_dir}: is the data folder; the copies would replace the input "
                         "files. Pick another folder")
    device = resolve_device(config.run.device)
    set_cpu_threads(config.run.torch_threads)
    env = VecTradingEnv(config.run.symbols, CHUNK, config.env.backtest(), device, data_dir=str(data_dir),
                        split="train", seed=config.run.seed)
    env_config = env.config  # with the split dates it derived (or was given)
    examples = build_examples(env, options.horizon)
    period = parse_trade_period(env_config.trade_period) if env_config.trade_period else None
    plan = plan_refits(examples, split_bounds(env), horizon=options.horizon, lookback=env_config.lookback,
                       refits=options.refits, min_history=options.min_history,
                       stop_fraction=options.stop_fraction, period=period, purge_bars=env_config.purge_bars)
    console.print(f"split dates {list(plan.split_dates)}, purge {plan.purge} bars, "
                  f"{len(plan.refits)} fits per model, {len(examples)} bars with an input")
    results: dict[str, ModelResult] = {}
    for index, name in enumerate(options.models):
        results[name] = fit_plan(name, index, examples, plan, config, options, env, console)

    out_dir.mkdir(parents=True, exist_ok=True)
    notes = list(plan.notes)
    columns = options.columns
    left_out = [m for m in options.models if m not in columns.values()]
    if left_out:
        notes.append(f"the loader reads at most {NUM_SL_PROBS} sl_prob_* columns: "
                     f"{', '.join(left_out)} {'is' if len(left_out) == 1 else 'are'} reported but not written "
                     f"(the copies carry {', '.join(columns)})")
    created = created_now()
    per_model = {m: per_symbol_columns(examples, results[m].probabilities) for m in columns.values()}
    files = {}
    for s, symbol in enumerate(env.symbols):
        bars = env.markets[symbol]
        if bars.sl_probs is not None and (bars.sl_probs != 0.5).any():
            notes.append(f"{symbol}: the input's own sl_prob columns fed the encoder's sl_probs input; the copy "
                         "replaces them with this run's")
        source = bars.source if not bars.is_synthetic else f"generated ({bars.source})"
        provenance = {
            "source_file": source, "source_sha256": None if bars.is_synthetic else file_sha256(bars.source),
            "models": columns, "target": options.fit.target,
            "horizon": options.horizon, "lookback": env_config.lookback,
            "split_dates": list(plan.split_dates), "purge_bars": plan.purge, "refit_schedule": plan.describe(),
            "first_prediction": _first_prediction(examples, plan, s), "created": created}
        path = write_copy(bars, {c: per_model[m][s] for c, m in columns.items()}, out_dir, provenance)
        load_bars(out_dir, symbol)  # the copy must be what the loader reads
        files[symbol] = str(path)
    if "encoder" in results:
        saved = next(refit for refit in plan.refits if refit.name == TRAIN_REFIT)
        last_label = last_label_time(examples, np.concatenate([saved.fit_rows, saved.stop_rows]), options.horizon)
        save_encoder(out_dir / ENCODER_FILE, results["encoder"].before_validation, config, env, options.fit.target,
                     options.horizon, last_label)
        files["encoder"] = str(out_dir / ENCODER_FILE)

    served = np.zeros(len(examples), dtype=bool)
    for refit in plan.refits:
        served[served_rows(examples, refit)] = True
    train_labels = examples.up[plan.refits[-1].fit_rows]
    majority = int(np.mean(train_labels) >= 0.5)
    payload_models = {name: {"parameters": r.parameters, "fits": r.fits, "splits": {}} for name, r in results.items()}
    baselines = {"always long": {"splits": {}}}
    skipped_all = {}
    for split in ("train", "val", "test"):
        split_env_, skipped = split_env(env_config, env.markets, split, len(results) + 1, device)
        skipped_all.update({f"{symbol} ({split})": why for symbol, why in skipped.items()})
        if split_env_ is None:
            continue
        rows = _split_rows(examples, split_env_, served)
        signals = [dict(zip(env.symbols, per_symbol_columns(examples, results[m].probabilities)))
                   for m in results]
        signals.append({symbol: np.ones(len(env.markets[symbol])) for symbol in env.symbols})
        trades = backtest(split_env_, signals)
        for name, traded in zip(results, trades):
            probabilities = results[name].probabilities
            payload_models[name]["splits"][split] = {
                "classification": classification_metrics(examples.up[rows], probabilities[rows], majority),
                "per_symbol": {symbol: classification_metrics(examples.up[mine], probabilities[mine], majority)
                               for symbol, mine in _by_symbol(examples, rows).items()},
                "backtest": summarise_backtest(traded)}
        baselines["always long"]["splits"][split] = {"backtest": summarise_backtest(trades[-1])}
    wall = time.perf_counter() - began
    payload = {
        "symbols": list(env.symbols), "target": options.fit.target, "horizon": options.horizon,
        "lookback": env_config.lookback, "split_dates": list(plan.split_dates), "purge_bars": plan.purge,
        "majority_class": "up" if majority else "down", "columns": columns, "left_out": left_out,
        "refit_schedule": plan.describe(), "notes": notes, "skipped": skipped_all,
        "models": payload_models, "baselines": baselines, "files": files,
        "options": {"refits": options.refits, "min_history": options.min_history,
                    "stop_fraction": options.stop_fraction, "hidden": options.hidden, **asdict(options.fit)},
        "config": as_dict(config), "created": created, "wall_seconds": round(wall, 1)}
    write_json(out_dir / "pretrain.json", payload)
    print_table(payload, console)
    console.print(f"wrote {', '.join(Path(p).name for p in files.values())} and pretrain.json to {out_dir} "
                  f"in {wall:.0f} s; train on them with --data-dir {out_dir}")
    return payload


def _by_symbol(examples: Examples, rows: np.ndarray) -> dict[str, np.ndarray]:
    """`rows` grouped by symbol (symbols without a row left out)."""
    groups = {examples.symbols[s]: rows[examples.symbol[rows] == s] for s in range(len(examples.symbols))}
    return {symbol: mine for symbol, mine in groups.items() if len(mine)}


def _first_prediction(examples: Examples, plan: Plan, symbol: int) -> str | None:
    """The first bar of `symbol` that a model serves (earlier bars hold 0.5)."""
    rows = examples.rows_of(symbol)
    stamps = examples.stamp[rows]
    served = stamps[stamps >= plan.refits[0].used_from] if plan.refits else stamps[:0]
    return format_timestamp(int(served[0])) if len(served) else None
