"""Resuming from a damaged run directory: `resume_point` tries the checkpoint `latest.json` names,
then every `step_*` pair newest first, and returns the newest intact one (weights read completely,
state loads). Each bad checkpoint is kept for inspection but renamed `<name>.corrupt` (so neither
pruning nor later resumes match it) and reported in a note; `latest.json` is then repointed at
the checkpoint resumed from.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import safetensors.torch

from trainers.checkpoints.files import (CORRUPT_SUFFIX, Checkpoint, ResumeError, brief, checkpoint_dir, load_state,
                                        read_best, read_pointer, step_pairs, write_average, write_pointer)


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
        candidates.append(read_pointer(pointer_path))
    except ResumeError as err:
        if not step_pairs(directory):
            raise
        pointer_problem = f"{pointer_path}: does not exist" if not pointer_path.exists() else str(err)
    tried = {c.weights.name for c in candidates}
    candidates += [c for c in step_pairs(directory) if c.weights.name not in tried]
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
            kept = [c for c in read_best(pointer_path) if c.weights.is_file() and c.state.is_file()]
            write_pointer(directory, checkpoint, kept, write_average(directory, kept))
            instead += f"; {pointer_path.name} now points at it"
        except OSError as err:
            instead += f"; {pointer_path.name} could not be repointed at it ({err})"
        return checkpoint, state, [f"{problem}; {instead}" for problem in problems]
    problems = ([pointer_problem] if pointer_problem else []) + skipped
    raise ResumeError(f"{directory}: no intact checkpoint to resume from:\n  " + "\n  ".join(problems))


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
        return None, f"{checkpoint.weights}: not a complete .safetensors file ({brief(err)})"
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
