"""The learning bench's markets: the draw a run trains on stays the symbol's own, and fresh draws
are other bars of the same process on the same dates."""
import sys
from pathlib import Path

import numpy as np

from envs import load_bars
from envs.synthetic import synthetic_bars

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from markets import GENERATED, write_generated  # noqa: E402


def test_fresh_draws_share_the_dates_and_not_the_prices(tmp_path):
    drawn = {r: write_generated(tmp_path / f"r{r}", 400, realisation=r) for r in (0, 1, 2)}
    for symbol in GENERATED:
        bars = {r: load_bars(tmp_path / f"r{r}", symbol) for r in drawn}
        for r in (1, 2):
            assert np.array_equal(bars[r].timestamps, bars[0].timestamps)
            assert not np.allclose(bars[r].close, bars[0].close)
            assert not np.allclose(drawn[r][symbol], drawn[0][symbol])
        assert not np.allclose(bars[1].close, bars[2].close)
    # realisation 0 is the market the trainer generates for the symbol by itself
    assert np.allclose(load_bars(tmp_path / "r0", "RGMO").close, synthetic_bars("RGMO", 400).close)
