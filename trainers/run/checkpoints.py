"""Training checkpoints: policy weights (.safetensors) plus everything needed to resume exactly.

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

`resume_point` survives a damaged disk or copy: it tries the checkpoint `latest.json` names, then
every `step_*` pair newest first, and returns the newest intact one (weights read completely,
state loads). Each bad checkpoint is kept for inspection but renamed `<name>.corrupt` (so neither
pruning nor later resumes match it) and reported in a note; `latest.json` is then repointed at
the checkpoint resumed from.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from configs.train import TrainConfig
from envs.spec import TradingSpec
from ppo_core.files import atomic_write_bytes
from models import MultiSymbolPolicy, PolicyEnsemble
from models.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint, save_tensors
from trainers.backtest.best_k import Scored

KEEP_LAST = 2
AVERAGE = "average.safetensors"
DEFAULT_CHOICE = "average"
"""the checkpoint evaluate, predict, paper and export use unless --checkpoint says otherwise: the
best checkpoints' weight average reached a higher median share of the oracle than the single best
on every generated family of bench/learning.py over five seeds (docs/results.md, Seed robustness)"""
CHOICE_HELP = ("which weights: average (default) = the mean of the weights of the run's best checkpoints by mean "
               "validation Sharpe (run.keep_best; the best one when fewer than two are kept), best = the top "
               "one (the latest when the run has no validation scores), latest, or a .safetensors file")
"""--checkpoint's help, the same in every command that loads a trained policy"""
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
    return Checkpoint(weights, _state_path(weights), step)


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
    _write_pointer(directory, checkpoint, kept, _write_average(directory, kept))
    _prune(directory, keep={path.name for c in (checkpoint, *kept) for path in (c.weights, c.state)})
    return checkpoint


def latest(run_dir: Path) -> Checkpoint:
    """The checkpoint `latest.json` points at; a clear ResumeError if there is none."""
    checkpoint = _read_pointer(checkpoint_dir(run_dir) / "latest.json")
    for path in (checkpoint.weights, checkpoint.state):
        if not path.is_file():
            raise ResumeError(f"{path.parent / 'latest.json'}: points at {path.name}, which does not exist")
    return checkpoint


def best(run_dir: Path) -> list[Checkpoint]:
    """The run's best checkpoints by mean validation Sharpe, best first, as `latest.json` lists
    them ([] for a run without validation); ResumeError when one of them is missing."""
    pointer_path = checkpoint_dir(run_dir) / "latest.json"
    _read_pointer(pointer_path)  # no run here, or a damaged pointer: the same error as latest()
    listed = _read_best(pointer_path)
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
    return Checkpoint(weights, _state_path(weights), max(steps)), steps


def choose(run_dir: Path, choice: str) -> tuple[Checkpoint, str]:
    """(checkpoint, a line saying which and why) for "average", "latest", "best" or the path of a
    weights file. "average" is the weight average of the best list, or "best" when the run has
    none; "best" is the top of the best list, or the latest checkpoint when the run has no
    validation scores (the lines say so)."""
    if choice == "average":
        found = average_of_best(run_dir)
        if found is None:
            checkpoint, line = choose(run_dir, "best")
            return checkpoint, line + ("; no weight average (the run keeps fewer than two validated "
                                       "checkpoints: run.keep_best, run.eval_every)")
        checkpoint, steps = found
        return checkpoint, (f"checkpoint: weight average of the {len(steps)} best by mean validation Sharpe "
                            f"(steps {', '.join(f'{s:,}' for s in steps)}; {checkpoint.weights.name})")
    if choice == "latest":
        checkpoint = latest(run_dir)
        return checkpoint, f"checkpoint: latest, step {checkpoint.step:,} ({checkpoint.weights.name})"
    if choice == "best":
        listed = best(run_dir)
        if listed:
            top = listed[0]
            return top, (f"checkpoint: best of {len(listed)} by mean validation Sharpe, step {top.step:,} "
                         f"(val Sharpe {top.val_sharpe:+.3f}, {top.weights.name})")
        checkpoint = latest(run_dir)
        return checkpoint, (f"checkpoint: latest, step {checkpoint.step:,} ({checkpoint.weights.name}); the "
                            "run has no validation scores (run.eval_every = 0, or trained before "
                            "validation existed), so there is no best one")
    path = Path(choice)
    if not path.is_file():
        raise ResumeError(f"--checkpoint {choice}: not 'average', 'best', 'latest' or an existing .safetensors file")
    step = read_checkpoint_meta(path).step
    scores = {c.weights.resolve(): c.val_sharpe for c in _read_best(checkpoint_dir(run_dir) / "latest.json")}
    checkpoint = Checkpoint(path, _state_path(path), step, scores.get(path.resolve()))
    score = "" if checkpoint.val_sharpe is None else f", val Sharpe {checkpoint.val_sharpe:+.3f}"
    return checkpoint, f"checkpoint: {path}, step {step:,}{score}"


def choose_members(run_dir: Path, choice: str) -> tuple[list[Checkpoint], str]:
    """Like `choose`, plus "ensemble": every checkpoint of the best list (best first), traded as
    one policy (models.PolicyEnsemble); a run without validation scores gives its latest alone."""
    if choice != "ensemble":
        checkpoint, line = choose(run_dir, choice)
        return [checkpoint], line
    listed = best(run_dir)
    if not listed:
        checkpoint, line = choose(run_dir, "best")
        return [checkpoint], line + "; no best list, so no ensemble"
    steps = ", ".join(f"{c.step:,}" for c in listed)
    return listed, (f"checkpoint: ensemble of the {len(listed)} best by mean validation Sharpe (steps {steps}): "
                    "mean of their action probabilities")


def load_policy(config: TrainConfig, members: Sequence[Checkpoint], symbols: Sequence[str], spec: TradingSpec,
                device: torch.device) -> MultiSymbolPolicy | PolicyEnsemble:
    """The run's policy with `members`' weights (several: their PolicyEnsemble), holding the heads
    of `symbols` (the run's, or a subset when some cannot trade), in eval mode on `device`."""
    policies = []
    for member in members:
        policy = MultiSymbolPolicy(config.run.symbols, config.model, spec).to(device).eval()
        load_weights(member, policy)
        if list(symbols) != list(config.run.symbols):
            subset = MultiSymbolPolicy(symbols, config.model, spec).to(device).eval()
            subset.load_state_dict(policy.state_dict_for(symbols))
            policy = subset
        policies.append(policy)
    return policies[0] if len(policies) == 1 else PolicyEnsemble(policies).eval()


def resume_point(run_dir: Path) -> tuple[Checkpoint, dict[str, Any], list[str]]:
    """The newest intact checkpoint, its trainer state, and one note per bad checkpoint skipped.

    Tries the checkpoint `latest.json` names, then every `step_*` pair newest first. Intact: the
    weights read completely with safetensors and the state loads with weights_only=True. A bad
    checkpoint's files are renamed `<name>.corrupt` (kept, never deleted). When anything was
    skipped, `latest.json` is repointed at the checkpoint returned. Notes: one per bad checkpoint,
    plus one when `latest.json` is missing or unreadable. Raises ResumeError listing every file
    and its problem when no checkpoint is intact.
    """
    directory = checkpoint_dir(run_dir)
    pointer_path = directory / "latest.json"
    candidates: list[Checkpoint] = []
    pointer_problem = ""
    try:
        candidates.append(_read_pointer(pointer_path))
    except ResumeError as err:
        if not _step_pairs(directory):
            raise
        pointer_problem = f"{pointer_path}: does not exist" if not pointer_path.exists() else str(err)
    tried = {c.weights.name for c in candidates}
    candidates += [c for c in _step_pairs(directory) if c.weights.name not in tried]
    skipped: list[str] = []
    for checkpoint in candidates:
        state, problem = _inspect(checkpoint)
        if state is None:
            skipped.append(f"{problem}; {_quarantine(checkpoint)}")
            continue
        problems = ([pointer_problem] if pointer_problem else []) + skipped
        if not problems:
            return checkpoint, state, []
        instead = f"resuming from step {checkpoint.step} ({checkpoint.weights.name}) instead"
        try:
            kept = [c for c in _read_best(pointer_path) if c.weights.is_file() and c.state.is_file()]
            _write_pointer(directory, checkpoint, kept, _write_average(directory, kept))
            instead += f"; {pointer_path.name} now points at it"
        except OSError as err:
            instead += f"; {pointer_path.name} could not be repointed at it ({err})"
        return checkpoint, state, [f"{problem}; {instead}" for problem in problems]
    problems = ([pointer_problem] if pointer_problem else []) + skipped
    raise ResumeError(f"{directory}: no intact checkpoint to resume from:\n  " + "\n  ".join(problems))


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
            raise ResumeError(f"{path}: cannot read trainer state ({_brief(err)})") from err
        # `from None`: torch's own message suggests weights_only=False, which is exactly the risk.
        raise ResumeError(f"{path}: holds objects other than tensors and plain values "
                          f"({_refused_detail(str(err))}); it was not unpickled and nothing in it "
                          "was executed") from None
    except Exception as err:  # torch raises several types for truncated or corrupt files
        raise ResumeError(f"{path}: cannot read trainer state ({_brief(err)})") from err
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


def _state_path(weights: Path) -> Path:
    return weights.with_name(weights.name.removesuffix(".safetensors") + ".state.pt")


def _read_pointer(pointer_path: Path) -> Checkpoint:
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


def _read_best(pointer_path: Path) -> list[Checkpoint]:
    """The `best` list of a `latest.json` that _read_pointer accepts; [] when it has none or cannot
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


def _write_average(directory: Path, kept: Sequence[Checkpoint]) -> list[int]:
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


def _write_pointer(directory: Path, checkpoint: Checkpoint, kept: Sequence[Checkpoint],
                   average_steps: Sequence[int]) -> None:
    pointer = {"weights": checkpoint.weights.name, "state": checkpoint.state.name, "step": checkpoint.step,
               "best": [{"weights": c.weights.name, "state": c.state.name, "step": c.step,
                         "val_sharpe": c.val_sharpe} for c in kept]}
    if average_steps:
        pointer["average"] = {"weights": AVERAGE, "steps": list(average_steps)}
    atomic_write_bytes(directory / "latest.json", json.dumps(pointer, indent=2).encode())


def _step_pairs(directory: Path) -> list[Checkpoint]:
    """Every `step_*.safetensors` with the state path beside it, newest step first."""
    found = []
    for weights in directory.glob("step_*.safetensors"):
        match = _STEP_WEIGHTS.fullmatch(weights.name)
        if match:
            found.append(Checkpoint(weights, _state_path(weights), int(match[1])))
    return sorted(found, key=lambda c: c.step, reverse=True)


def _inspect(checkpoint: Checkpoint) -> tuple[dict[str, Any] | None, str]:
    """(state, "") for an intact checkpoint, else (None, "<file>: <problem>")."""
    for path in (checkpoint.weights, checkpoint.state):
        if not path.is_file():
            return None, f"{path}: does not exist"
        if path.stat().st_size == 0:
            return None, f"{path}: is empty (0 bytes)"
    try:
        safetensors.torch.load_file(str(checkpoint.weights), device="cpu")
    except Exception as err:  # safetensors raises its own error type for truncated or corrupt files
        return None, f"{checkpoint.weights}: not a complete .safetensors file ({_brief(err)})"
    try:
        return load_state(checkpoint), ""
    except ResumeError as err:
        return None, str(err)


def _quarantine(checkpoint: Checkpoint) -> str:
    """Rename a bad checkpoint's files to `<name>.corrupt` (never overwriting); says what happened."""
    done = []
    for path in (checkpoint.weights, checkpoint.state):
        if not path.is_file():
            continue
        target = path.with_name(path.name + CORRUPT_SUFFIX)
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.{n}{CORRUPT_SUFFIX}")
        try:
            os.rename(path, target)
            done.append(f"renamed {path.name} to {target.name}")
        except OSError as err:
            done.append(f"could not rename {path.name} ({err})")
    return ", ".join(done) + " (kept for inspection)" if done else "no files left to rename"


def _brief(err: BaseException) -> str:
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
        state = _state_path(old)
        for path in (old, state):
            if path.name not in keep:
                path.unlink(missing_ok=True)
