"""Policy weights as `.safetensors`, with the resolved config, symbols and step in its metadata.

Writes are atomic (temp file in the same directory, fsync, os.replace): a crash leaves either the
old file or the new one, never half of one. A load that does not fit the model raises
`CheckpointMismatchError` listing exactly which keys, shapes and symbols differ.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
from safetensors import safe_open
from torch import Tensor, nn

from ppo_core.files import atomic_write_bytes

FORMAT_VERSION = 2
"""2: encoder projections are one `encoder.proj.<obs key>` per observation key, actions in the config"""
_KEYS = ("format_version", "config", "symbols", "step", "extra")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read or is not one of ours; the message names the file."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's keys, shapes or symbols do not match the model it is loaded into."""


@dataclass(frozen=True)
class CheckpointMeta:
    config: dict[str, Any]
    """the resolved run config the weights were trained with"""
    symbols: list[str]
    """symbols in head order (group s of every head belongs to symbols[s])"""
    step: int
    """global account-step count when the checkpoint was written"""
    format_version: int
    """layout version of the metadata (FORMAT_VERSION when written by this code)"""
    extra: dict[str, str] = field(default_factory=dict)
    """free-form string metadata supplied by the caller"""


def save_checkpoint(path: str | Path, model: nn.Module, *, config: dict[str, Any], symbols: Sequence[str],
                    step: int, extra: dict[str, str] | None = None) -> Path:
    """Write the model's state dict and metadata atomically to `path`; returns the path."""
    # Contiguous CPU copies: safetensors refuses views and shared storage.
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save_tensors(path, tensors, config=config, symbols=symbols, step=step, extra=extra)


def save_tensors(path: str | Path, tensors: dict[str, Tensor], *, config: dict[str, Any], symbols: Sequence[str],
                 step: int, extra: dict[str, str] | None = None) -> Path:
    """Write a state dict of contiguous CPU tensors and the metadata atomically to `path`."""
    path = Path(path)
    try:
        config_json = json.dumps(config)
    except TypeError as err:
        raise TypeError(f"save_checkpoint: config is not JSON-serialisable ({err})") from err
    extra = dict(extra or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise TypeError("save_checkpoint: extra must map str to str")
    metadata = {"format_version": str(FORMAT_VERSION), "config": config_json,
                "symbols": json.dumps(list(symbols)), "step": str(int(step)), "extra": json.dumps(extra)}
    atomic_write_bytes(path, safetensors.torch.save(tensors, metadata=metadata))
    return path


def read_checkpoint_meta(path: str | Path) -> CheckpointMeta:
    """The metadata of a checkpoint without loading its tensors."""
    path = Path(path)
    with _open(path) as f:
        return _parse_meta(path, f.metadata())


def load_checkpoint(path: str | Path, model: nn.Module, *, strict: bool = True) -> CheckpointMeta:
    """Load weights into `model` in place and return the metadata.

    strict=True: keys, shapes and symbols (when the model has a `symbols` attribute) must all match.
    strict=False: missing and unexpected keys are skipped; shape mismatches still raise.
    """
    path = Path(path)
    with _open(path) as f:
        meta = _parse_meta(path, f.metadata())
        try:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as err:  # safetensors raises its own error type for bad data regions
            raise CheckpointError(f"{path}: cannot read tensors ({err})") from err
    problems = _mismatches(tensors, model.state_dict(), meta.symbols, getattr(model, "symbols", None), strict)
    if problems:
        raise CheckpointMismatchError(f"{path} does not match the model:\n  " + "\n  ".join(problems))
    model.load_state_dict(tensors, strict=strict)
    return meta


def _open(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except Exception as err:  # truncated or not a safetensors file
        raise CheckpointError(f"{path}: not a readable .safetensors checkpoint ({err})") from err


def _parse_meta(path: Path, raw: dict[str, str] | None) -> CheckpointMeta:
    raw = raw or {}
    missing = [k for k in _KEYS if k not in raw]
    if missing:
        raise CheckpointError(f"{path}: safetensors file lacks checkpoint metadata {missing} "
                              f"(not written by save_checkpoint?)")
    try:
        meta = CheckpointMeta(config=json.loads(raw["config"]), symbols=list(json.loads(raw["symbols"])),
                              step=int(raw["step"]), format_version=int(raw["format_version"]),
                              extra=dict(json.loads(raw["extra"])))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: corrupt checkpoint metadata ({err})") from err
    if meta.format_version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta.format_version} is newer than this code "
                              f"understands ({FORMAT_VERSION})")
    if meta.format_version < FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta.format_version} predates this code's "
                              f"({FORMAT_VERSION}: encoder projections per observation key); retrain, "
                              "or load it with the release that wrote it")
    return meta


def _mismatches(saved: dict[str, Tensor], expected: dict[str, Tensor], saved_symbols: list[str],
                model_symbols: Sequence[str] | None, strict: bool) -> list[str]:
    """Human-readable differences between a checkpoint and a model, one line per problem."""
    problems = []
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    if strict and missing:
        problems.append(f"missing keys (in the model, not in the file): {', '.join(missing)}")
    if strict and unexpected:
        problems.append(f"unexpected keys (in the file, not in the model): {', '.join(unexpected)}")
    for key in sorted(set(saved) & set(expected)):
        if saved[key].shape != expected[key].shape:
            problems.append(f"shape mismatch for {key}: file {tuple(saved[key].shape)} "
                            f"vs model {tuple(expected[key].shape)}")
    if strict and model_symbols is not None and list(model_symbols) != saved_symbols:
        only_file = [s for s in saved_symbols if s not in model_symbols]
        only_model = [s for s in model_symbols if s not in saved_symbols]
        detail = [f"only in the file: {only_file}"] if only_file else []
        detail += [f"only in the model: {only_model}"] if only_model else []
        if not detail:
            detail = [f"same symbols in a different order: file {saved_symbols} "
                      f"vs model {list(model_symbols)}"]
        problems.append("symbols differ: " + "; ".join(detail))
    return problems
