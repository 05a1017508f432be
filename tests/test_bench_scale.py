"""Smoke run of bench/scale.py: both storages measured in their own processes, index smaller."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_scale_bench_measures_both_storages_and_index_is_smaller():
    args = ["--symbols", "3", "--envs-per-symbol", "2", "--num-steps", "16", "--device", "cpu",
            "--threads", "1"]
    out = subprocess.run([sys.executable, str(BENCH / "scale.py"), *args],
                         capture_output=True, text=True, check=True, timeout=300)
    report = json.loads(out.stdout)
    runs = {run["storage"]: run for run in report["runs"]}
    assert set(runs) == {"index", "window"}
    for run in runs.values():
        assert run["accounts"] == 6 and run["rollout_account_steps_per_s"] > 0
        assert run["update_account_steps_per_s"] > 0 and run["peak_rss_mb"] > 0
    assert runs["index"]["buffer_mb_at_2048_steps"] < runs["window"]["buffer_mb_at_2048_steps"] / 5
    assert report["window_over_index"]["buffer_bytes"] > 5
