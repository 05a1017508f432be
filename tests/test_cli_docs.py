"""docs/cli.md against the parsers: every flag a command accepts is documented in its section, and
every flag a section's table documents exists."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
COMMANDS = ("trainers.ppo", "trainers.evaluate", "trainers.tune", "trainers.walkforward", "trainers.predict",
            "trainers.paper", "trainers.export", "trainers.pretrain", "envs.fetch")


def section(command: str) -> str:
    """The text of docs/cli.md's `## python -m <command>` section."""
    text = DOC.read_text()
    match = re.search(rf"^## python -m {re.escape(command)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"docs/cli.md has no section '## python -m {command}'"
    return match.group(1)


def flags(command: str) -> set[str]:
    parser = importlib.import_module(command).build_parser()
    return {option for action in parser._actions for option in action.option_strings
            if option.startswith("--") and option != "--help"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_is_documented_in_its_section(command: str) -> None:
    code = " ".join(re.findall(r"`([^`]*)`", section(command)))  # flags are named in code spans
    documented = set(re.findall(r"(--[a-z][a-z0-9-]*)", code))
    missing = sorted(flags(command) - documented)
    assert not missing, f"docs/cli.md, python -m {command}: undocumented {missing}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_flag_in_a_sections_table_exists(command: str) -> None:
    rows = re.findall(r"^\| `(--[a-z][a-z0-9-]*)", section(command), flags=re.M)
    unknown = sorted(set(rows) - flags(command))
    assert not unknown, f"docs/cli.md, python -m {command}: documents flags the parser lacks {unknown}"
