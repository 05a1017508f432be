"""Trainer checkpoints: weights-only state loading, and resuming past corrupt or malicious checkpoints."""
from __future__ import annotations

import json
import pathlib
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from trainers import checkpoints
from trainers.checkpoints import Checkpoint, ResumeError, load_state, resume_point

CONFIG = {"run": {"symbols": ["SPY"]}, "ppo": {"learning_rate": 3e-4}}


def realistic_state(step: int) -> dict[str, Any]:
    """What Session.trainer_state holds: optimizer and scaler state, RNG states, nested tensors, scalars."""
    torch.manual_seed(step)  # the same step gives the same state
    model = nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, eps=1e-5)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    return {
        "global_step": step, "iteration": step // 4,
        "learner": {"optimizer": optimizer.state_dict(), "scaler": scaler.state_dict()},
        "entropy": {"adaptive_multiplier": 1.5, "guard_multiplier": 1.0, "guard_triggers": 2,
                    "guard_strikes": 0, "cooldown_until": 0, "last_step": step, "last_entropy": 0.69},
        "env": {"accounts": {"cash": torch.full((4,), 1e4), "shares": torch.zeros(4, dtype=torch.int64)},
                "generator": torch.Generator().manual_seed(step).get_state()},
        "obs": {"bars": torch.randn(4, 8, 5), "mask": torch.ones(4, 3, dtype=torch.bool)},
        "rng": checkpoints.rng_state(), "generator": torch.Generator().manual_seed(1).get_state(),
        "episode_returns": torch.randn(4), "episode_lengths": torch.arange(4),
        "reward_normalizer": None, "flags": (True, False), "history": [0.5, 1, "text"],
    }


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Deep equality for nested dicts/lists/tuples of tensors and plain values."""
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def save_steps(run_dir: Path, steps: list[int]) -> dict[int, Checkpoint]:
    """One checkpoint per step (KEEP_LAST keeps the newest two); weights differ per step."""
    saved = {}
    for step in steps:
        torch.manual_seed(step)
        policy = nn.Linear(3, 2)
        saved[step] = checkpoints.save(run_dir, policy, CONFIG, ["SPY"], step, realistic_state(step))
    return saved


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_names(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.glob("*.corrupt"))


def test_realistic_state_round_trips_weights_only(tmp_path, monkeypatch):
    state = realistic_state(8)
    saved = save_steps(tmp_path, [8])[8]
    loads = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    checkpoint, loaded, notes = resume_point(tmp_path)
    assert loads and all(flag is True for flag in loads)
    assert checkpoint == saved and checkpoint.step == 8 and notes == []
    assert_same(state, loaded)
    assert_same(state, load_state(checkpoints.latest(tmp_path)))
    # the restored state is usable: optimizer, scaler and generator accept it
    optimizer = torch.optim.Adam(nn.Linear(3, 2).parameters(), lr=1.0)
    optimizer.load_state_dict(loaded["learner"]["optimizer"])
    torch.amp.GradScaler("cpu").load_state_dict(loaded["learner"]["scaler"])
    torch.Generator().set_state(loaded["generator"])
    torch.set_rng_state(loaded["rng"]["torch"])
    target = nn.Linear(3, 2)
    checkpoints.load_weights(checkpoint, target)
    torch.manual_seed(8)
    assert torch.equal(target.weight, nn.Linear(3, 2).weight)


@pytest.mark.parametrize("which", ["weights", "state"])
def test_truncated_latest_falls_back_to_previous(tmp_path, which):
    saved = save_steps(tmp_path, [4, 8])
    bad = getattr(saved[8], which)
    truncate(bad)
    checkpoint, state, notes = resume_point(tmp_path)
    assert checkpoint.step == 4 and checkpoint == saved[4] and state["global_step"] == 4
    assert len(notes) == 1 and str(bad) in notes[0] and "step 4" in notes[0]
    assert f"{bad.name}.corrupt" in notes[0]
    assert corrupt_names(bad) == [f"{saved[8].weights.name}.corrupt", f"{saved[8].state.name}.corrupt"]
    assert not saved[8].weights.exists() and not saved[8].state.exists()
    assert (bad.parent / f"{bad.name}.corrupt").stat().st_size > 0  # kept for inspection
    assert checkpoints.latest(tmp_path) == saved[4]  # latest.json repointed at the good one
    again, again_state, again_notes = resume_point(tmp_path)  # a second resume is clean
    assert again == saved[4] and again_notes == []
    assert_same(state, again_state)


class _TouchMarker:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


class _OpenMarker(_TouchMarker):
    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("payload", [_TouchMarker, _OpenMarker])
def test_pickled_object_is_refused_never_executed(tmp_path, payload):
    saved = save_steps(tmp_path / "run", [4, 8])
    marker = tmp_path / "marker"
    torch.save({"global_step": 8, "evil": payload(marker)}, saved[8].state)
    with pytest.raises(ResumeError) as err:
        load_state(saved[8])
    message = str(err.value)
    assert str(saved[8].state) in message
    assert "objects other than tensors and plain values" in message and "not unpickled" in message
    assert not marker.exists()
    checkpoint, state, notes = resume_point(tmp_path / "run")
    assert not marker.exists()
    assert checkpoint == saved[4] and state["global_step"] == 4
    assert len(notes) == 1 and str(saved[8].state) in notes[0] and "not unpickled" in notes[0]
    assert (saved[8].state.parent / f"{saved[8].state.name}.corrupt").is_file()


def test_nothing_intact_names_every_bad_file(tmp_path):
    saved = save_steps(tmp_path, [4, 8])
    truncate(saved[8].weights)
    truncate(saved[4].state)
    with pytest.raises(ResumeError) as err:
        resume_point(tmp_path)
    message = str(err.value)
    assert str(saved[8].weights) in message and str(saved[4].state) in message
    assert "no intact checkpoint" in message
    assert len(corrupt_names(saved[4].weights)) == 4  # both pairs kept, renamed


def test_missing_or_unreadable_pointer_finds_newest_intact_pair(tmp_path):
    saved = save_steps(tmp_path, [4, 8])
    pointer = tmp_path / "checkpoints" / "latest.json"
    pointer.write_text("{not json")
    checkpoint, state, notes = resume_point(tmp_path)
    assert checkpoint == saved[8] and state["global_step"] == 8
    assert len(notes) == 1 and "latest.json" in notes[0] and "step 8" in notes[0]
    assert json.loads(pointer.read_text())["step"] == 8
    pointer.unlink()
    truncate(saved[8].state)
    checkpoint, _, notes = resume_point(tmp_path)
    assert checkpoint == saved[4]
    assert len(notes) == 2 and "does not exist" in notes[0] and str(saved[8].state) in notes[1]


def test_pointer_cannot_reach_outside_the_checkpoint_dir(tmp_path):
    save_steps(tmp_path / "run", [4])
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    pointer = tmp_path / "run" / "checkpoints" / "latest.json"
    pointer.write_text(json.dumps({"weights": str(outside), "state": "../../precious.txt", "step": 9}))
    with pytest.raises(ResumeError, match="not a file name"):
        checkpoints.latest(tmp_path / "run")
    checkpoint, _, notes = resume_point(tmp_path / "run")
    assert checkpoint.step == 4 and len(notes) == 1
    assert outside.read_text() == "keep me" and not list(tmp_path.glob("*.corrupt"))


def test_no_checkpoint_at_all_keeps_the_plain_error(tmp_path):
    with pytest.raises(ResumeError, match="no checkpoint to resume from"):
        resume_point(tmp_path)
