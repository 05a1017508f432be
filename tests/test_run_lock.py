"""One writer per run directory: a second process that opens a run directory another live process
trains in is refused with that process's id; the lock dies with its process (kill -9 leaves none)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, tiny_args

from configs.loader import ConfigError
from trainers.run.lock import LOCK_FILE, run_lock

HOLD = ("import sys, time; from trainers.run.lock import run_lock; run_lock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(60)")


def try_lock(run_dir: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from trainers.run.lock import run_lock\n"
            "try:\n    run_lock(sys.argv[1]).acquire()\nexcept Exception as err:\n    print(err); sys.exit(3)")
    return subprocess.run([sys.executable, "-c", code, str(run_dir)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)


def test_a_held_lock_refuses_another_process_naming_the_holder_and_is_freed_on_release(tmp_path):
    lock = run_lock(tmp_path / "run").acquire()
    refused = try_lock(tmp_path / "run")
    assert refused.returncode == 3 and f"in use by process {os.getpid()}" in refused.stdout
    lock.release()
    assert try_lock(tmp_path / "run").returncode == 0


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"in use by process {holder.pid}"):
            run_lock(tmp_path / "run").acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (tmp_path / "run" / LOCK_FILE).exists()  # the file stays; the kernel's lock is gone
    run_lock(tmp_path / "run").acquire().release()


@pytest.mark.slow
def test_two_trainers_in_one_run_directory_the_second_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "trainers.ppo", *tiny_args(run_dir, 400)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run_dir / "config.toml").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = subprocess.run([sys.executable, "-m", "trainers.ppo", *tiny_args(run_dir, 2)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert f"in use by process {first.pid}" in second.stderr
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
