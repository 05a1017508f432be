"""End to end: the CartPole bench learns CartPole-v1 to >= 475 in 150k env steps."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "cartpole.py"


def run_bench(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                         check=True, timeout=900)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {out.stdout!r}"
    return json.loads(lines[0])


@pytest.mark.slow
def test_cartpole_seed_1_reaches_475():
    result = run_bench("--seed", "1", "--total-steps", "150000")
    assert result["seed"] == 1 and result["env_steps"] >= 150_000
    assert result["mean_return"] >= 475, result


def test_cartpole_smoke_prints_one_json_line():
    result = run_bench("--seed", "0", "--total-steps", "512", "--preset", "cleanrl")
    assert set(result) >= {"seed", "env_steps", "mean_return", "steps_per_sec"}
    assert result["env_steps"] == 512 and result["steps_per_sec"] > 0
