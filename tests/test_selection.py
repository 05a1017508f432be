"""Selection-bias statistics: PBO by CSCV and the deflated Sharpe ratio on generated candidates."""
import itertools
import math

import numpy as np
import pytest

from trainers.backtest.overfitting import deflated_sharpe, expected_max_sharpe, pbo, selection_report


def noise(num_periods: int, num_candidates: int, seed: int) -> np.ndarray:
    """(T, N) skill-less daily-like returns."""
    return np.random.default_rng(seed).normal(0.0, 0.01, size=(num_periods, num_candidates))


def test_pbo_near_zero_when_one_candidate_is_clearly_better():
    base = noise(800, 1, seed=0)
    returns = np.repeat(base, 20, axis=1)
    returns[:, 7] += 0.002  # same noise, a constant edge: best in every sample, in and out
    result = pbo(returns)
    assert result.num_splits == math.comb(16, 8)
    assert result.pbo == 0.0
    assert np.all(result.logits > 0)


def test_pbo_near_half_for_pure_noise():
    values = [pbo(noise(800, 20, seed)).pbo for seed in range(3)]
    assert all(0.3 < v < 0.7 for v in values), values
    assert 0.4 < np.mean(values) < 0.6, values


def test_pbo_matches_a_plain_loop():
    returns = noise(61, 5, seed=5)  # 61 periods: blocks of 11 and 10 (array_split)
    logits, ranks = [], []
    blocks = np.array_split(np.arange(61), 6)
    for chosen in itertools.combinations(range(6), 3):
        rows = np.concatenate([blocks[b] for b in chosen])
        rest = np.concatenate([blocks[b] for b in range(6) if b not in chosen])
        is_sr = [returns[rows, n].mean() / returns[rows, n].std(ddof=1) for n in range(5)]
        oos_sr = [returns[rest, n].mean() / returns[rest, n].std(ddof=1) for n in range(5)]
        best = int(np.argmax(is_sr))
        rank = 1 + sorted(oos_sr).index(oos_sr[best])  # no ties in continuous noise
        logits.append(math.log(rank / (6 - rank)))
        ranks.append(rank)
    result = pbo(returns, num_blocks=6)
    np.testing.assert_allclose(result.logits, logits, rtol=1e-9)
    # N = 5: rank 3 is the out-of-sample median, counted one half
    overfit = [1.0 if rank < 3 else 0.5 if rank == 3 else 0.0 for rank in ranks]
    assert 3 in ranks and result.pbo == pytest.approx(np.mean(overfit), abs=1e-12)


def test_pbo_refuses_bad_shapes():
    with pytest.raises(ValueError, match="too few for 16 blocks"):
        pbo(noise(20, 5, seed=0))
    with pytest.raises(ValueError, match="at least 2 candidates"):
        pbo(noise(100, 1, seed=0))
    with pytest.raises(ValueError, match="even"):
        pbo(noise(100, 5, seed=0), num_blocks=5)
    with pytest.raises(ValueError, match=r"\(T periods, N candidates\)"):
        pbo(np.zeros(100))


def test_expected_max_sharpe_by_hand():
    # Phi^-1(1 - 1/10) = 1.2815515655, Phi^-1(1 - 1/(10 e)) = 1.7892417646 (bisection on erf);
    # (1 - 0.5772156649) x 1.2815515655 + 0.5772156649 x 1.7892417646 = 1.5745983013
    assert expected_max_sharpe(10, 0.04) == pytest.approx(0.2 * 1.5745983013, rel=1e-9)
    assert expected_max_sharpe(1000, 1.0) == pytest.approx(3.2551215137, rel=1e-9)
    with pytest.raises(ValueError, match="num_trials"):
        expected_max_sharpe(1, 1.0)


def test_dsr_near_one_for_a_strong_sharpe_among_few_trials():
    returns = noise(1000, 3, seed=1)
    returns[:, 0] += 0.002  # per-period Sharpe ~0.2, ~3.2 annualised on daily bars
    result = deflated_sharpe(returns, chosen=0)
    assert result.sharpe > 0.15
    assert result.dsr > 0.99


def test_dsr_of_the_best_of_many_noise_candidates_is_low():
    returns = noise(1000, 100, seed=2)
    best = int(np.argmax(returns.mean(0) / returns.std(0, ddof=1)))
    result = deflated_sharpe(returns, chosen=best)
    # undeflated, its Sharpe looks significant (PSR against 0 above 0.95) ...
    assert 0.5 * math.erfc(-result.sharpe * math.sqrt(999) / math.sqrt(2)) > 0.95
    # ... deflated by 100 trials it does not
    assert result.dsr < 0.8
    assert result.expected_max_sharpe == pytest.approx(
        expected_max_sharpe(100, float(np.var(returns.mean(0) / returns.std(0, ddof=1), ddof=1))))


def test_dsr_more_trials_lower_it():
    returns = noise(1000, 5, seed=3)
    returns[:, 2] += 0.001
    few, many = deflated_sharpe(returns, 2).dsr, deflated_sharpe(returns, 2, num_trials=500).dsr
    assert many < few
    with pytest.raises(ValueError, match="below the 5 candidates"):
        deflated_sharpe(returns, 2, num_trials=3)


def test_selection_report_picks_the_best_and_is_plain():
    rng = np.random.default_rng(4)
    candidates = {f"ckpt_{k}": rng.normal(0.0, 0.01, 640) for k in range(6)}
    candidates["ckpt_3"] = candidates["ckpt_3"] + 0.003
    report = selection_report(candidates)
    assert report["chosen"] == "ckpt_3"
    assert report["num_candidates"] == 6 and report["num_periods"] == 640
    assert report["pbo"] < 0.1 and report["dsr"] > 0.95
    assert all(isinstance(v, (float, int, str)) for v in report.values())
    forced = selection_report(candidates, chosen="ckpt_0")
    assert forced["chosen"] == "ckpt_0" and forced["dsr"] < report["dsr"]
    with pytest.raises(ValueError, match="same periods"):
        selection_report({"a": np.zeros(64), "b": np.zeros(63)})
    with pytest.raises(ValueError, match="not among"):
        selection_report(candidates, chosen="nope")
