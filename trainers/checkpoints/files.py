"""Run-directory checkpoints, the format: policy weights (.safetensors) plus everything needed to
resume exactly, the `latest.json` pointer with the run's best list and their weight average, and
the listing and pruning of the files.

Layout under `run_dir/checkpoints/`:
    step_000012288.safetensors   weights, resolved config, symbols and step in its metadata
    step_000012288.state.pt      optimizer, scaler, entropy stack, env state, RNG, counters
    average.safetensors          the mean of the best checkpoints' weights (a weight average, or
                                 "soup": one policy, so predict, paper trading and export take it
                                 like any checkpoint); written whenever at least two are kept
    latest.json                  {"weights": ..., "state": ..., "step": ...,
                                  "best": [{"weights": ..., "state": ..., "step": ..., "val_sharpe": ...}],
                                  "average": {"weights": "average.safetensors", "steps": [...]}}

Both files of a checkpoint are written (atomically) before `latest.json` is replaced to point at
them, so a crash at any moment leaves `latest.json` naming a complete checkpoint. Pruning keeps
the newest KEEP_LAST checkpoints and the run's best ones by mean validation Sharpe, which
`latest.json` lists best first (`best`; the trainer's BestK decides which).

The trainer state holds only tensors and plain values (dicts, lists, tuples, numbers, strings,
None), so it is read with `torch.load(weights_only=True)`: a state file carrying any other pickled
object is refused with a ResumeError and never unpickled, so a run directory received from someone
else cannot run code on resume.
"""
from __future__ import annotations

import io
import json
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from models.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint, save_tensors
from ppo_core.files import atomic_write_bytes
from trainers.checkpoints.best_k import Scored

KEEP_LAST = 2
AVERAGE = "average.safetensors"
CORRUPT_SUFFIX = ".corrupt"
_STEP_WEIGHTS = re.compile(r"step_(\d+)\.safetensors")


class ResumeError(RuntimeError):
    """A run directory cannot be resumed; the message names the file and the problem."""


@dataclass


class Checkpoint:
    """Paths of one complete checkpoint."""

    weights: Path
    state: Path
    step: int
    val_sharpe: float | None = None
    """mean validation Sharpe, for one of the run's best checkpoints"""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def at_step(run_dir: Path, step: int) -> Checkpoint:
    """The paths of the checkpoint written at `step` (whether or not it exists)."""
    weights = checkpoint_dir(run_dir) / f"step_{step:012d}.safetensors"
    return Checkpoint(weights, state_path(weights), step)


def save(run_dir: Path, policy: torch.nn.Module, config: dict[str, Any], symbols: list[str],
         step: int, trainer_state: dict[str, Any], best: Sequence[Scored] = ()) -> Checkpoint:
    """Write weights and trainer state for `step`, then point `latest.json` at them and list the
    `best` validations (best first; each one's checkpoint is this one or was saved at its step)."""
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = at_step(run_dir, step)
    save_checkpoint(checkpoint.weights, policy, config=config, symbols=symbols, step=step)
    buffer = io.BytesIO()
    torch.save(trainer_state, buffer)
    atomic_write_bytes(checkpoint.state, buffer.getvalue())
    kept = [replace(at_step(run_dir, s.step), val_sharpe=s.score) for s in best]
    write_pointer(directory, checkpoint, kept, write_average(directory, kept))
    _prune(directory, keep={path.name for c in (checkpoint, *kept) for path in (c.weights, c.state)})
    return checkpoint


def latest(run_dir: Path) -> Checkpoint:
    """The checkpoint `latest.json` points at; a clear ResumeError if there is none."""
    checkpoint = read_pointer(checkpoint_dir(run_dir) / "latest.json")
    for path in (checkpoint.weights, checkpoint.state):
        if not path.is_file():
            raise ResumeError(f"{path.parent / 'latest.json'}: points at {path.name}, which does not exist")
    return checkpoint


def best(run_dir: Path) -> list[Checkpoint]:
    """The run's best checkpoints by mean validation Sharpe, best first, as `latest.json` lists
    them ([] for a run without validation); ResumeError when one of them is missing."""
    pointer_path = checkpoint_dir(run_dir) / "latest.json"
    read_pointer(pointer_path)  # no run here, or a damaged pointer: the same error as latest()
    listed = read_best(pointer_path)
    for checkpoint in listed:
        if not checkpoint.weights.is_file():
            raise ResumeError(f"{pointer_path}: lists best checkpoint {checkpoint.weights.name}, which "
                              "does not exist")
    return listed


def average_of_best(run_dir: Path) -> tuple[Checkpoint, list[int]] | None:
    """The weight average of the run's best checkpoints and their steps, as `latest.json` lists
    them; None when the run has none (fewer than two validated checkpoints kept, or written before
    averages existed)."""
    pointer_path = checkpoint_dir(run_dir) / "latest.json"
    steps = _listed_average_steps(pointer_path)
    if steps is None:
        return None
    weights = pointer_path.parent / AVERAGE
    if not weights.is_file():
        raise ResumeError(f"{pointer_path}: lists the average checkpoint {AVERAGE}, which does not exist")
    return Checkpoint(weights, state_path(weights), max(steps)), steps


def load_weights(checkpoint: Checkpoint, policy: torch.nn.Module) -> None:
    """Load the policy weights in place (shape or key mismatches raise with the key names)."""
    load_checkpoint(checkpoint.weights, policy)


def load_state(checkpoint: Checkpoint) -> dict[str, Any]:
    """The trainer-state dict saved beside the weights, read with `weights_only=True`.

    A file holding anything but tensors and plain values is refused (never unpickled); that and
    any unreadable file raise ResumeError naming the file.
    """
    path = checkpoint.state
    if not path.is_file():
        raise ResumeError(f"{path}: trainer state file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise ResumeError(f"{path}: cannot read trainer state ({brief(err)})") from err
        # `from None`: torch's own message suggests weights_only=False, which is exactly the risk.
        raise ResumeError(f"{path}: holds objects other than tensors and plain values "
                          f"({_refused_detail(str(err))}); it was not unpickled and nothing in it "
                          "was executed") from None
    except Exception as err:  # torch raises several types for truncated or corrupt files
        raise ResumeError(f"{path}: cannot read trainer state ({brief(err)})") from err
    if not isinstance(state, dict):
        raise ResumeError(f"{path}: trainer state is a {type(state).__name__}, not a dict")
    return state


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Global RNG states: torch's CPU generator and, when CUDA is present, every GPU's ("cuda"); with
    a CUDA `device` (a data-parallel rank) that GPU's alone ("cuda_device"): a rank samples on its
    own GPU, and reading every GPU's state would open a context on each of them from every rank."""
    state = {"torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    elif torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore `rng_state`'s states; a "cuda_device" state goes to `device` when that is a GPU."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "cuda_device" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_device"], device)


def state_path(weights: Path) -> Path:
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".state.pt")


def read_pointer(pointer_path: Path) -> Checkpoint:
    """Parse `latest.json` (file names must be bare names inside the checkpoints directory)."""
    if not pointer_path.is_file():
        raise ResumeError(f"{pointer_path}: no checkpoint to resume from (is this a run directory?)")
    try:
        pointer = json.loads(pointer_path.read_text())
        names = [pointer["weights"], pointer["state"]]
        step = int(pointer["step"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ResumeError(f"{pointer_path}: unreadable checkpoint pointer ({err})") from err
    for name in names:
        if not _is_bare(name):
            raise ResumeError(f"{pointer_path}: unreadable checkpoint pointer ({name!r} is not a file "
                              f"name inside {pointer_path.parent})")
    return Checkpoint(pointer_path.parent / names[0], pointer_path.parent / names[1], step)


def read_best(pointer_path: Path) -> list[Checkpoint]:
    """The `best` list of a `latest.json` that read_pointer accepts; [] when it has none or cannot
    be read (selection then falls back to the latest checkpoint)."""
    try:
        entries = json.loads(pointer_path.read_text()).get("best", [])
        if not all(_is_bare(e["weights"]) and _is_bare(e["state"]) for e in entries):
            return []
        return [Checkpoint(pointer_path.parent / e["weights"], pointer_path.parent / e["state"],
                           int(e["step"]), float(e["val_sharpe"])) for e in entries]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
            ValueError):
        return []


def _is_bare(name: Any) -> bool:
    """A plain file name inside the checkpoints directory (no path, no parent reference)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name
            and "\\" not in name)


def _listed_average_steps(pointer_path: Path) -> list[int] | None:
    """The steps of the average a `latest.json` lists (always the file AVERAGE), None for none."""
    try:
        entry = json.loads(pointer_path.read_text()).get("average")
        if entry["weights"] != AVERAGE:
            return None
        return [int(s) for s in entry["steps"]]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
            ValueError):
        return None


def write_average(directory: Path, kept: Sequence[Checkpoint]) -> list[int]:
    """Write AVERAGE, the elementwise mean of `kept`'s weights (non-float tensors and the metadata
    from the best one), when there are at least two; their steps ([] and no file otherwise)."""
    path = directory / AVERAGE
    if len(kept) < 2:
        path.unlink(missing_ok=True)  # a stale average would not be the best list's
        return []
    steps = [c.step for c in kept]
    if path.is_file() and _listed_average_steps(directory / "latest.json") == steps:
        return steps  # the best list did not change since the average was written
    members = [safetensors.torch.load_file(str(c.weights), device="cpu") for c in kept]
    average = {key: torch.stack([m[key] for m in members]).mean(0) if tensor.is_floating_point() else tensor
               for key, tensor in members[0].items()}
    meta = read_checkpoint_meta(kept[0].weights)
    save_tensors(path, average, config=meta.config, symbols=meta.symbols, step=max(steps),
                 extra={"average_of_steps": ",".join(map(str, steps))})
    return steps


def write_pointer(directory: Path, checkpoint: Checkpoint, kept: Sequence[Checkpoint],
                   average_steps: Sequence[int]) -> None:
    pointer = {"weights": checkpoint.weights.name, "state": checkpoint.state.name, "step": checkpoint.step,
               "best": [{"weights": c.weights.name, "state": c.state.name, "step": c.step,
                         "val_sharpe": c.val_sharpe} for c in kept]}
    if average_steps:
        pointer["average"] = {"weights": AVERAGE, "steps": list(average_steps)}
    atomic_write_bytes(directory / "latest.json", json.dumps(pointer, indent=2).encode())


def step_pairs(directory: Path) -> list[Checkpoint]:
    """Every `step_*.safetensors` with the state path beside it, newest step first."""
    found = []
    for weights in directory.glob("step_*.safetensors"):
        match = _STEP_WEIGHTS.fullmatch(weights.name)
        if match:
            found.append(Checkpoint(weights, state_path(weights), int(match[1])))
    return sorted(found, key=lambda c: c.step, reverse=True)


def brief(err: BaseException) -> str:
    """First line (first sentence) of an exception message, prefixed by its type."""
    lines = str(err).strip().splitlines()
    text = lines[0].split(". ")[0].strip() if lines else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _refused_detail(message: str) -> str:
    found = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if found:
        return f"it references {found[1]}"
    found = re.search(r"(Unsupported operand \S+|Can only [^\n]+|whose module \S+ is blocked)", message)
    return found[1] if found else "content outside the weights-only allowlist"


def _prune(directory: Path, keep: set[str]) -> None:
    """Remove all but the newest KEEP_LAST checkpoints and the files in `keep` (the one just
    written and the best ones)."""
    weights = sorted(directory.glob("step_*.safetensors"))
    for old in weights[:-KEEP_LAST]:
        state = state_path(old)
        for path in (old, state):
            if path.name not in keep:
                path.unlink(missing_ok=True)
