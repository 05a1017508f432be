"""Training checkpoints: policy weights (.safetensors) plus everything needed to resume exactly.

Layout under `run_dir/checkpoints/`:
    step_000012288.safetensors   weights, resolved config, symbols and step in its metadata
    step_000012288.state.pt      optimizer, scaler, entropy stack, env state, RNG, counters
    latest.json                  {"weights": ..., "state": ..., "step": ...}

Both files of a checkpoint are written (atomically) before `latest.json` is replaced to point at
them, so a crash at any moment leaves `latest.json` naming a complete, loadable checkpoint.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint

KEEP_LAST = 2


class ResumeError(RuntimeError):
    """A run directory cannot be resumed; the message names the file and the problem."""


@dataclass
class Checkpoint:
    """Paths of one complete checkpoint."""

    weights: Path
    state: Path
    step: int


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save(run_dir: Path, policy: torch.nn.Module, config: dict[str, Any], symbols: list[str],
         step: int, trainer_state: dict[str, Any]) -> Checkpoint:
    """Write weights and trainer state for `step`, then point `latest.json` at them."""
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"step_{step:012d}.safetensors"
    state = directory / f"step_{step:012d}.state.pt"
    save_checkpoint(weights, policy, config=config, symbols=symbols, step=step)
    buffer = io.BytesIO()
    torch.save(trainer_state, buffer)
    atomic_write_bytes(state, buffer.getvalue())
    pointer = {"weights": weights.name, "state": state.name, "step": step}
    atomic_write_bytes(directory / "latest.json", json.dumps(pointer, indent=2).encode())
    _prune(directory, keep={weights.name, state.name})
    return Checkpoint(weights, state, step)


def latest(run_dir: Path) -> Checkpoint:
    """The checkpoint `latest.json` points at; a clear ResumeError if there is none."""
    pointer_path = checkpoint_dir(run_dir) / "latest.json"
    if not pointer_path.is_file():
        raise ResumeError(f"{pointer_path}: no checkpoint to resume from (is this a run directory?)")
    try:
        pointer = json.loads(pointer_path.read_text())
        weights = pointer_path.parent / pointer["weights"]
        state = pointer_path.parent / pointer["state"]
        step = int(pointer["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ResumeError(f"{pointer_path}: unreadable checkpoint pointer ({err})") from err
    for path in (weights, state):
        if not path.is_file():
            raise ResumeError(f"{pointer_path}: points at {path.name}, which does not exist")
    return Checkpoint(weights, state, step)


def load_weights(checkpoint: Checkpoint, policy: torch.nn.Module) -> None:
    """Load the policy weights in place (shape or key mismatches raise with the key names)."""
    load_checkpoint(checkpoint.weights, policy)


def load_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The trainer-state dict saved beside the weights."""
    try:
        return torch.load(checkpoint.state, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for corrupt pickles
        raise ResumeError(f"{checkpoint.state}: cannot read trainer state ({err})") from err


def rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU, and CUDA when present)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _prune(directory: Path, keep: set[str]) -> None:
    """Remove all but the newest KEEP_LAST checkpoints (never the one just written)."""
    weights = sorted(directory.glob("step_*.safetensors"))
    for old in weights[:-KEEP_LAST]:
        state = old.with_suffix("").with_suffix(".state.pt")
        for path in (old, state):
            if path.name not in keep:
                path.unlink(missing_ok=True)
