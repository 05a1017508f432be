"""The flags several commands share, each declared once with one default and one help text: every
CLI (trainers.*, the benches) adds them from here, and tests/test_cli_docs.py checks docs/cli.md
against the parsers."""
from __future__ import annotations

import argparse
from pathlib import Path

DEVICES = ("auto", "cpu", "cuda")


def add_device(parser: argparse.ArgumentParser) -> None:
    """--device, None when not given: the config's (or the run's) run.device, which is auto
    unless set; `device_or_auto` reads it where no config is involved."""
    parser.add_argument("--device", choices=DEVICES, default=None,
                        help="auto = CUDA when available, else CPU (default: run.device, auto)")


def device_or_auto(device: str | None) -> str:
    """The --device a command without a config runs on: the flag, else auto."""
    return device or "auto"


def add_threads(parser: argparse.ArgumentParser) -> None:
    """--threads for a command without a config: 0 (default) = the cores not busy with other work
    (ppo_core.cpu_threads), so it does not slow the jobs beside it."""
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (default 0 = the cores not busy with other work)")


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """--set KEY=VALUE (repeatable) into args.overrides."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override any config field, e.g. ppo.learning_rate=3e-4 (repeatable)")


def add_config(parser: argparse.ArgumentParser) -> None:
    """--config FILE, None when not given (configs/default.toml's values)."""
    parser.add_argument("--config", type=Path, help="TOML config file (default: configs/default.toml)")


def add_data_dir(parser: argparse.ArgumentParser, *, of_run: bool = False) -> None:
    """--data-dir, None when not given: `data` for a command that builds a config, the run's own
    data folder for one that reads a run (`of_run`)."""
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder of <SYMBOL>.parquet files (default: the run's)" if of_run else
                        "folder of <SYMBOL>.parquet files (default: data); a symbol without a file trades a "
                        "generated market")


def add_run_dir(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """--run-dir of a command that reads a finished (or running) training run."""
    parser.add_argument("--run-dir", type=Path, required=required, help="a run directory written by trainers.ppo")
