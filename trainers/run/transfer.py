"""Start or resume a run from weights of another architecture or symbol list (models.transfer).

`--init-from CHECKPOINT_OR_RUN_DIR` starts a fresh run (step 0) from another run's weights;
`--resume` of a run whose config now has another architecture or symbols transfers its newest
checkpoint and carries the step counters over. Either way the optimizer and everything else shaped
by the old weights or accounts start fresh, and the report goes to the log and RUN_DIR/transfer.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from configs.loader import ConfigError, build
from configs.train import TrainConfig
from envs.spec import TradingSpec
from models import CheckpointError, MultiSymbolPolicy, read_checkpoint_meta
from models.transfer import (TRANSFER_STRATEGIES, TransferError, TransferReport, architecture_changes,
                             blend_encoder, check_compatible, is_sl_encoder, map_sl_encoder, transfer_weights)
from trainers.monitoring.console import RunLog
from trainers import checkpoints

TRANSFER_FILE = "transfer.json"


@dataclass(frozen=True)
class TransferRequest:
    """What the command line asked for."""

    source: Path | None = None
    """--init-from: a weights file or a run directory (its best checkpoint, else its latest)"""
    strategy: str | None = None
    """--transfer-strategy; required when a dimension grows"""
    new_symbol_heads: str = "mean"
    """heads of symbols the source lacks: the mean of its heads, or fresh"""
    encoder_source: Path | None = None
    """--init-encoder-from (experimental): blend only the encoder of this checkpoint or run"""
    encoder_blend: float = 1.0
    """--encoder-blend alpha: encoder = alpha * transferred + (1 - alpha) * fresh"""
    allow_encoder_overlap: bool = False
    """--allow-encoder-overlap: start from a supervised encoder whose labels reach into this run's
    validation or test (logged); refused otherwise"""


SL_ENCODER_FILE = "encoder.safetensors"
"""the supervised encoder trainers.pretrain writes into its --out-dir"""


def source_weights(path: Path) -> tuple[Path, str]:
    """(weights file, a line saying which) for --init-from / --init-encoder-from: a run directory
    gives its best checkpoint by validation (its latest when it has no scores), a pretrain output
    directory its supervised encoder, a file is taken as it is."""
    if Path(path).is_dir() and (Path(path) / SL_ENCODER_FILE).is_file() and \
            not checkpoints.checkpoint_dir(Path(path)).is_dir():
        return Path(path) / SL_ENCODER_FILE, f"supervised encoder {Path(path) / SL_ENCODER_FILE}"
    if Path(path).is_dir():
        checkpoint, line = checkpoints.choose(Path(path), "best")
        return checkpoint.weights, f"{path}: {line}"
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: neither a run directory nor a checkpoint file to transfer from")
    return Path(path), f"checkpoint {path}"


def differs(weights: Path, policy: MultiSymbolPolicy) -> bool:
    """Whether the checkpoint's architecture or symbols differ from the policy's."""
    meta = read_checkpoint_meta(weights)
    old = build(TrainConfig, meta.config)
    return bool(architecture_changes(old.model, meta.symbols, policy.config, policy.symbols)[0])


def preflight(config: TrainConfig, run_dir: Path, resuming: bool, request: TransferRequest) -> None:
    """Refuse a transfer that cannot work before the run directory is touched: a grown dimension
    without a strategy, or what models.transfer.check_compatible refuses."""
    if request.source is not None and resuming:
        raise ConfigError("--init-from starts a new run; --resume continues one (and transfers its own "
                          "checkpoint when the architecture or symbols changed)")
    if request.encoder_source is not None and (resuming or request.source is not None):
        raise ConfigError("--init-encoder-from starts a new run with fresh heads; it cannot be combined with "
                          "--resume or --init-from")
    source = request.source or request.encoder_source
    if source is None and not resuming:
        return
    if request.encoder_source is not None and is_sl_encoder(source_weights(request.encoder_source)[0]):
        with torch.random.fork_rng(devices=[]):  # a throwaway model must not shift the run's streams
            policy = MultiSymbolPolicy(config.run.symbols, config.model, TradingSpec.from_config(config.env))
        sl_encoder_mapping(source_weights(request.encoder_source)[0], policy)
        return
    if source is not None:
        weights = source_weights(source)[0]
        meta = read_checkpoint_meta(weights)
    else:
        try:
            weights = checkpoints.latest(run_dir).weights
            meta = read_checkpoint_meta(weights)
        except (CheckpointError, checkpoints.ResumeError):
            # a damaged latest checkpoint: checkpoints.resume_point names it and falls back to an
            # intact one, and transfer_from checks that one before any weight moves
            return
    old = build(TrainConfig, meta.config)
    changes, grown = architecture_changes(old.model, meta.symbols, config.model, config.run.symbols)
    if request.strategy is None and grown:
        raise ConfigError(f"{weights} has another architecture ({'; '.join(changes)}); a grown dimension "
                          f"needs --transfer-strategy {'|'.join(TRANSFER_STRATEGIES)} (zero_pad keeps the "
                          "policy's outputs where it can)")
    old_spec = TradingSpec.from_config(old.env)
    check_compatible(old.model, old_spec.obs_shapes, old_spec.num_actions, config.model,
                     TradingSpec.from_config(config.env), request.strategy or "copy_and_extend")


def transfer_from(weights: Path, policy: MultiSymbolPolicy, request: TransferRequest, seed: int) -> TransferReport:
    """Load `weights` into `policy` through models.transfer; ConfigError when a dimension grows
    and no strategy was given (the choice changes the starting weights, so it is not guessed)."""
    meta = read_checkpoint_meta(weights)
    old = build(TrainConfig, meta.config)
    changes, grown = architecture_changes(old.model, meta.symbols, policy.config, policy.symbols)
    strategy = request.strategy
    if strategy is None:
        if grown:
            raise ConfigError(f"{weights} has another architecture ({'; '.join(changes)}); a grown dimension "
                              f"needs --transfer-strategy {'|'.join(TRANSFER_STRATEGIES)} (zero_pad keeps the "
                              "policy's outputs where it can)")
        strategy = "copy_and_extend"  # nothing grew: every strategy gives the same weights
    old_spec = TradingSpec.from_config(old.env)
    report = transfer_weights(load_file(str(weights)), meta.symbols, old.model, old_spec.obs_shapes,
                              old_spec.num_actions, policy, strategy, request.new_symbol_heads, seed)
    report.source = str(weights)
    return report


def record(log: RunLog, run_dir: Path, report: TransferReport) -> None:
    """The report to the console log and RUN_DIR/transfer.json."""
    for line in report.lines():
        log.message(line)
    report.write(run_dir / TRANSFER_FILE)
    log.message(f"transfer report written to {run_dir / TRANSFER_FILE}")


def init_from(policy: MultiSymbolPolicy, request: TransferRequest, seed: int, log: RunLog,
              run_dir: Path) -> None:
    """--init-from: a fresh run (step 0, new optimizer) starting from the source's weights."""
    assert request.source is not None, "init_from needs request.source"
    weights, line = source_weights(request.source)
    log.message(f"--init-from {line}")
    record(log, run_dir, transfer_from(weights, policy, request, seed))
    log.message("note: a new run from transferred weights: optimizer state starts fresh, step counters "
                "start at 0", style="bold yellow")


def sl_encoder_mapping(weights: Path, policy: MultiSymbolPolicy) -> tuple[dict[str, torch.Tensor], TransferReport]:
    """The `encoder.*` tensors of a supervised encoder checkpoint and the key-mapping report onto
    `policy`'s encoder; ConfigError naming each missing key or shape that differs."""
    tensors = load_file(str(weights))
    try:
        report = map_sl_encoder(tensors, policy, str(weights))
    except TransferError as err:
        raise ConfigError(f"--init-encoder-from {err}") from None
    return {k: v for k, v in tensors.items() if k.startswith("encoder.")}, report


def check_label_dates(request: TransferRequest, split_dates: tuple[str, ...]) -> tuple[str, bool] | None:
    """For --init-encoder-from a supervised encoder: (the line its transfer report keeps on its label
    dates against the run's `split_dates` (first validation, first test), whether they overlap);
    None for any other source. ConfigError naming both dates when the encoder saw a label at or
    after the run's first validation date and --allow-encoder-overlap was not given: the run's
    validation and test would grade an encoder that already saw their outcomes."""
    if request.encoder_source is None:
        return None
    weights = source_weights(request.encoder_source)[0]
    if not is_sl_encoder(weights):
        return None
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata() or {}
    seen, what = meta.get("last_label_date"), "last label date"
    if seen is None and len(dates := json.loads(meta.get("split_dates", "[]"))) == 2:
        seen, what = dates[1], "pretraining's first test date (a format-1 file records no label date)"
    val_start = split_dates[0]
    if seen is None:
        problem = f"it records no label dates, so nothing shows they end before {val_start}, this run's first validation date"
    elif np.datetime64(seen, "ns") >= np.datetime64(val_start, "ns"):
        problem = (f"the encoder saw labels up to {seen} (its {what}), but this run validates from {val_start} "
                   "(env.split_dates)")
    else:
        return f"label dates checked: the encoder's {what} {seen} is before this run's first validation date {val_start}", False
    if not request.allow_encoder_overlap:
        raise ConfigError(f"--init-encoder-from {weights}: {problem}; pretrain with split dates no later than this "
                          "run's, or pass --allow-encoder-overlap")
    return f"label dates overlap, started anyway (--allow-encoder-overlap): {problem}", True


def init_encoder_from(policy: MultiSymbolPolicy, request: TransferRequest, seed: int, log: RunLog,
                      run_dir: Path, split_dates: tuple[str, ...]) -> None:
    """Experimental --init-encoder-from: the encoder becomes alpha * transferred + (1 - alpha) * its
    fresh init; the heads stay fresh. The source is another run's policy (transferred to this
    architecture) or a supervised encoder from trainers.pretrain (mapped key by key, after
    check_label_dates against the run's `split_dates`)."""
    assert request.encoder_source is not None, "init_encoder_from needs request.encoder_source"
    weights, line = source_weights(request.encoder_source)
    log.message(f"experimental encoder blend (alpha {request.encoder_blend:g}) from {line}")
    if is_sl_encoder(weights):
        dates, overlap = check_label_dates(request, split_dates)
        if overlap:
            log.message(f"warning: {dates}", style="bold yellow")
        device = next(policy.parameters()).device
        tensors, report = sl_encoder_mapping(weights, policy)
        report.notes.append(dates)
        report.notes.append(f"encoder only, blended with alpha {request.encoder_blend:g}; heads fresh")
        blend_encoder(policy, {k: v.to(device) for k, v in tensors.items()}, request.encoder_blend)
        record(log, run_dir, report)
        return
    with torch.random.fork_rng(devices=[]):  # the donor's init must not shift the run's random streams
        donor = MultiSymbolPolicy(policy.symbols, policy.config, policy.spec)
    report = transfer_from(weights, donor, request, seed)
    report.notes.append(f"encoder only, blended with alpha {request.encoder_blend:g}; heads fresh")
    device = next(policy.parameters()).device
    blend_encoder(policy, donor.to(device).state_dict(), request.encoder_blend)
    record(log, run_dir, report)
