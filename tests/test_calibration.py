"""Monte Carlo calibration of the statistics that say whether a result is skill, on generated return
series whose truth is known, checked both ways: skill-less series must be called skilful at about
(or, for the deliberately conservative deflated Sharpe, at most) the nominal 5 %, and a real edge
must be found about as often as normal theory says it can be.

- the deflated Sharpe of a run's checkpoint choice (trainers.backtest.overfitting.selection_stats)
  on independent candidates (tuning trials) and correlated ones (checkpoints of one run);
- PBO by CSCV: one half on average for skill-less candidates whatever their number (the tie rule),
  near 0 with a clearly better candidate;
- the walk-forward significance (trainers.folds.stitch.significance_of) of a stitched agent curve:
  the probabilistic Sharpe against no skill (its false-positive rate and power), its deflation over
  several configurations, the paired bootstrap test against a baseline on the same bars
  (trainers.backtest.uncertainty.sharpe_difference_test) and the percentile among random paths.

Thresholds come from theory, not from the code under test: a rate measured over n independent draws
has binomial standard error sqrt(p (1 - p) / n) and is checked within 3 of them of its theoretical
value; powers come from the normal approximation of the Sharpe estimator (variance ~ 1 / T per bar
for i.i.d. returns). Every draw uses a fixed seed, so the tests are deterministic.
"""
import math
from statistics import NormalDist

import numpy as np
import pytest

from trainers.backtest.metrics import sharpe
from trainers.backtest.overfitting import deflated_sharpe, pbo, selection_stats
from trainers.backtest.uncertainty import sharpe_difference_test
from trainers.folds.stitch import significance_of, stitched_returns

NORMAL = NormalDist()
Z95 = NORMAL.inv_cdf(0.95)  # 1.645: the one-sided 5 % critical value, "skill" claimed above 0.95
NOMINAL = 0.05
DAYS = 252.0
VOL = 0.01  # daily-like per-bar volatility
FOLDS, FOLD_BARS = 3, 500  # a walk-forward of 3 test folds of 500 daily bars: 1,500 stitched bars
BARS = FOLDS * FOLD_BARS
NO_PATHS = np.zeros((1, BARS))  # significance_of needs random paths; rate tests read other fields


def band(p: float, n: int, sigmas: float = 3.0) -> float:
    """`sigmas` binomial standard errors of a rate p measured over n independent draws."""
    return sigmas * math.sqrt(p * (1.0 - p) / n)


def per_bar(sharpe_per_year: float) -> float:
    return sharpe_per_year / math.sqrt(DAYS)


def candidates(rng: np.random.Generator, num: int, bars: int, correlation: float, edge: float = 0.0,
               shared: bool = False) -> np.ndarray:
    """(T, N) returns of N candidates with volatility VOL and pairwise `correlation` (a common factor
    plus idiosyncratic noise: checkpoints of one run when > 0), plus a true per-bar Sharpe `edge` in
    column 0 (or in every column when `shared`)."""
    common = rng.normal(size=(bars, 1))
    own = rng.normal(size=(bars, num))
    returns = VOL * (math.sqrt(correlation) * common + math.sqrt(1.0 - correlation) * own)
    if shared:
        returns += VOL * edge
    else:
        returns[:, 0] += VOL * edge
    return returns


def best_dsr(returns: np.ndarray) -> float:
    """Deflated Sharpe of choosing the best-Sharpe column (what selection_stats reports as dsr)."""
    return deflated_sharpe(returns, int(np.argmax(sharpe(returns)))).dsr


def stitched_agent(rng: np.random.Generator, sharpe_per_year: float = 0.0, tails: str = "normal") -> np.ndarray:
    """(1500,) per-bar returns of a strategy with a true annual Sharpe `sharpe_per_year`, traded
    as FOLDS test folds of FOLD_BARS bars each and stitched like the walk-forward's curves."""
    if tails == "normal":
        noise = rng.normal(size=(FOLDS, FOLD_BARS))
    else:  # Student t with 4 degrees of freedom (variance 2), scaled to unit variance: fat tails
        noise = rng.standard_t(4, size=(FOLDS, FOLD_BARS)) / math.sqrt(2.0)
    returns = VOL * (per_bar(sharpe_per_year) + noise)
    curves = [10_000.0 * np.concatenate([[1.0], np.cumprod(1.0 + r)]) for r in returns]
    return stitched_returns(curves)


def no_skill_probability(agent: np.ndarray, configurations: int = 1) -> float:
    return significance_of(agent, {}, NO_PATHS, DAYS, configurations)["no_skill"]["probability"]


# ---- deflated Sharpe of a checkpoint choice ----
def test_selection_stats_reports_the_deflated_sharpe_of_the_best_column():
    """The rate tests below call deflated_sharpe on the best-Sharpe column for speed (selection_stats
    also runs PBO's 12,870 splits); this shows that is the dsr selection_stats reports."""
    returns = candidates(np.random.default_rng(0), 8, 250, 0.6)
    best = int(np.argmax(sharpe(returns)))
    stats = selection_stats({f"ckpt_{k}": returns[:, k] for k in range(8)}, f"ckpt_{best}")
    assert stats["chosen"] == f"ckpt_{best}" and stats["num_trials"] == 8
    assert stats["dsr"] == pytest.approx(best_dsr(returns), rel=1e-12)


@pytest.mark.parametrize("correlation", [0.0, 0.6], ids=["independent", "correlated"])
def test_dsr_of_the_best_skill_less_candidate_is_rarely_above_0_95(correlation):
    """1,000 draws of 8 skill-less candidates x 250 bars, independent (tuning trials) or sharing a
    common factor with correlation 0.6 (checkpoints of one run): choosing the best Sharpe and
    claiming skill at dsr > 0.95 must be wrong in at most 5 % of draws, plus 3 binomial standard
    errors (0.021). The deflated Sharpe is conservative here (it asks the chosen Sharpe to beat the
    expected best of 8 by a further 1.645 standard errors), so only the upper side is checked."""
    rng = np.random.default_rng(100 + int(10 * correlation))
    draws = 1000
    rate = np.mean([best_dsr(candidates(rng, 8, 250, correlation)) > 0.95 for _ in range(draws)])
    assert rate <= NOMINAL + band(NOMINAL, draws), rate


def test_dsr_detects_checkpoints_of_a_skilled_run():
    """8 checkpoints of one run sharing a true per-bar Sharpe of 0.2 (3.2 a year on daily bars),
    correlation 0.6, 250 bars: dsr > 0.95 in more than 80 % of 300 draws. Normal theory: the
    candidates' Sharpe ratios spread by their idiosyncratic part only, sqrt(0.4 / 250) = 0.040, so
    the benchmark (the expected best of 8 skill-less ones, 1.46 of those spreads) is 0.058, and the
    chosen Sharpe is ~0.2 + E[max of 8 N(0, 1)] x 0.040 = 0.257: power ~ Phi((0.257 - 0.058) x
    sqrt(250) - 1.645) = Phi(1.5) = 0.93, so 0.8 leaves room for the approximation and 3 binomial
    standard errors (0.044)."""
    rng = np.random.default_rng(200)
    draws = 300
    rate = np.mean([best_dsr(candidates(rng, 8, 250, 0.6, edge=0.2, shared=True)) > 0.95 for _ in range(draws)])
    assert rate > 0.8, rate


def test_dsr_detects_one_skilled_trial_among_skill_less_ones():
    """One of 8 independent trials has a true per-bar Sharpe of 0.2, over 1,000 bars: dsr > 0.95 in
    more than 80 % of 300 draws. The edge itself widens the candidates' Sharpe spread, E[var] =
    edge^2 / N + 1 / T = 0.006, which raises the benchmark to 1.46 x sqrt(0.006) = 0.113; normal
    theory then gives power ~ Phi((0.2 - 0.113) x sqrt(1000) - 1.645) = Phi(1.1) = 0.87. (Over
    250 bars the same formula gives only Phi(-0.7) = 0.25: one good trial among few needs a long
    validation to be told from luck.)"""
    rng = np.random.default_rng(300)
    draws = 300
    rate = np.mean([best_dsr(candidates(rng, 8, 1000, 0.0, edge=0.2)) > 0.95 for _ in range(draws)])
    assert rate > 0.8, rate


# ---- probability of backtest overfitting ----
@pytest.mark.parametrize("num_candidates", [3, 4, 5])
def test_pbo_of_skill_less_candidates_averages_one_half(num_candidates):
    """With exchangeable skill-less candidates the in-sample best is a random one out of sample, so
    its out-of-sample rank is uniform on 1..N and PBO (ties at the median counting one half) is 1/2
    in expectation for every N. Over 200 draws of 250 bars (16 blocks) the mean PBO must be within
    3 standard errors of 0.5 (standard error from the draws' spread, ~0.017). For odd N, counting a
    split at the median as overfit would give 1/2 + 1/(2N) (0.67 for N = 3, 0.6 for N = 5); the test
    also checks its band is narrow enough to tell that apart."""
    rng = np.random.default_rng(400 + num_candidates)
    draws = 200
    values = np.array([pbo(rng.normal(0.0, VOL, size=(250, num_candidates)), num_blocks=16).pbo
                       for _ in range(draws)])
    error = 3.0 * values.std(ddof=1) / math.sqrt(draws)
    assert abs(values.mean() - 0.5) <= error, (values.mean(), error)
    assert error < 0.5 / num_candidates  # the old tie rule's bias would show


def test_pbo_is_near_zero_with_a_clearly_better_candidate():
    """4 candidates over 250 bars, one with a true per-bar Sharpe of 0.3: a split is overfit only if
    a skill-less candidate beats the good one in sample, or the good one falls below the median out
    of sample; each needs a skill-less one to beat it over a half of 125 bars, which has probability
    Phi(-0.3 / sqrt((2 + 0.3^2 / 2) / 125)) = Phi(-2.35) per rival. So E[PBO] <= 2 x 3 x Phi(-2.35)
    = 0.057, against 0.5 for skill-less candidates; the mean over 100 draws must be below it."""
    rng = np.random.default_rng(500)
    edge, half = 0.3, 125
    bound = 2 * 3 * NORMAL.cdf(-edge / math.sqrt((2.0 + edge * edge / 2.0) / half))
    values = [pbo(candidates(rng, 4, 250, 0.0, edge=edge), num_blocks=16).pbo for _ in range(100)]
    assert np.mean(values) < bound, (np.mean(values), bound)


# ---- walk-forward significance: no skill ----
@pytest.mark.parametrize("tails", ["normal", "student-t4"])
def test_no_skill_probability_is_above_0_95_in_5_percent_of_skill_less_walk_forwards(tails):
    """A skill-less stitched strategy (3 folds x 500 daily bars, i.i.d. mean 0, normal or fat-tailed
    Student t(4)): significance_of's no-skill probability (the probabilistic Sharpe against 0) is a
    one-sided test at 5 %, so it must exceed 0.95 in 5 % of 1,000 draws, within 3 binomial standard
    errors (0.021)."""
    rng = np.random.default_rng(600 + (tails != "normal"))
    draws = 1000
    rate = np.mean([no_skill_probability(stitched_agent(rng, 0.0, tails)) > 0.95 for _ in range(draws)])
    assert abs(rate - NOMINAL) <= band(NOMINAL, draws), rate


def test_no_skill_probability_detects_a_sharpe_of_one_at_the_normal_power():
    """A stitched strategy with a true Sharpe of 1.0 a year over 1,500 daily bars: its per-bar
    Sharpe estimate is ~ N(1 / sqrt(252), 1 / 1500), so the one-sided 5 % test rejects no skill with
    power Phi(sqrt(1500 / 252) - 1.645) = Phi(0.795) = 0.787. Over 400 draws the share with
    probability > 0.95 must be within 3 binomial standard errors (0.061) of that."""
    rng = np.random.default_rng(700)
    draws = 400
    power = NORMAL.cdf(per_bar(1.0) * math.sqrt(BARS) - Z95)
    rate = np.mean([no_skill_probability(stitched_agent(rng, 1.0)) > 0.95 for _ in range(draws)])
    assert abs(rate - power) <= band(power, draws), (rate, power)


def test_deflation_keeps_the_best_of_many_configurations_honest():
    """The best of 10 skill-less configurations (each a 1,500-bar stitched curve): undeflated, its
    no-skill probability exceeds 0.95 in 1 - 0.95^10 = 40 % of draws (within 3 binomial standard
    errors over 400 draws, 0.073); with configurations=10, in at most 5 % (+ 0.033)."""
    rng = np.random.default_rng(800)
    draws, configurations = 400, 10
    plain, deflated = [], []
    for _ in range(draws):
        runs = [stitched_agent(rng) for _ in range(configurations)]
        best = runs[int(np.argmax([sharpe(run) for run in runs]))]
        plain.append(no_skill_probability(best) > 0.95)
        deflated.append(no_skill_probability(best, configurations) > 0.95)
    expected = 1.0 - (1.0 - NOMINAL) ** configurations
    assert abs(np.mean(plain) - expected) <= band(expected, draws), np.mean(plain)
    assert np.mean(deflated) <= NOMINAL + band(NOMINAL, draws), np.mean(deflated)


# ---- walk-forward significance: the paired test against a baseline ----
def agent_and_market(rng: np.random.Generator, market_sharpe: float,
                     agent_sharpe: float) -> tuple[np.ndarray, np.ndarray]:
    """(1500,) returns of an agent, 0.5 x market + independent noise with 0.75 x the market's
    variance, and of the market (buy & hold): the same volatility, correlation 0.5, the given
    annual Sharpes."""
    market = VOL * (per_bar(market_sharpe) + rng.normal(size=BARS))
    own = VOL * (per_bar(agent_sharpe) - 0.5 * per_bar(market_sharpe) + math.sqrt(0.75) * rng.normal(size=BARS))
    return 0.5 * market + own, market


def test_paired_test_rejects_an_equal_sharpe_at_about_5_percent():
    """Agent and buy & hold with the same true Sharpe (0.5 a year), correlation 0.5, 1,500 bars:
    the paired bootstrap test's p-value (500 resamples) is <= 0.05 in 5 % of 200 draws, within 3
    binomial standard errors (0.046), i.e. between 0.4 % and 9.6 %."""
    rng = np.random.default_rng(900)
    draws = 200
    rate = np.mean([sharpe_difference_test(*agent_and_market(rng, 0.5, 0.5), DAYS, num_resamples=500,
                                           seed=k).p_value <= 0.05 for k in range(draws)])
    assert abs(rate - NOMINAL) <= band(NOMINAL, draws), rate


def test_paired_test_detects_a_better_sharpe_at_the_normal_power():
    """Agent Sharpe 1.5 a year against buy & hold's 0.5, correlation rho = 0.5, 1,500 bars. The
    difference of the per-bar Sharpe estimates has variance (2 - 2 rho + (a^2 + b^2 - 2 a b rho^2)
    / 2) / T (Jobson and Korkie 1981, Memmel 2003; a, b the per-bar Sharpes), ~1 / T here, so the
    one-sided 5 % test has power Phi(1 / sqrt(252) x sqrt(1500) - 1.645) = 0.79; over 200 draws
    the share with p <= 0.05 must be within 3 binomial standard errors (0.087) of it."""
    rng = np.random.default_rng(1000)
    draws, rho, a, b = 200, 0.5, per_bar(1.5), per_bar(0.5)
    variance = 2.0 - 2.0 * rho + (a * a + b * b - 2.0 * a * b * rho * rho) / 2.0
    power = NORMAL.cdf((a - b) * math.sqrt(BARS / variance) - Z95)
    rate = np.mean([sharpe_difference_test(*agent_and_market(rng, 0.5, 1.5), DAYS, num_resamples=500,
                                           seed=k).p_value <= 0.05 for k in range(draws)])
    assert abs(rate - power) <= band(power, draws), (rate, power)


# ---- walk-forward significance: random paths and the whole dict ----
def test_random_percentile_of_a_skill_less_agent_is_uniform():
    """A skill-less agent drawn like its 199 skill-less random paths (250 bars) is equally likely at
    each of the 200 places among them, so its percentile exceeds 0.95 (above at least 190 of the
    199) with probability 10 / 200 = 5 %: within 3 binomial standard errors (0.038) over 300 draws."""
    rng = np.random.default_rng(1100)
    draws, paths, bars = 300, 199, 250
    rate = np.mean([significance_of(series[0], {}, series[1:], DAYS)["random"]["agent_percentile"] > 0.95
                    for series in (VOL * rng.normal(size=(paths + 1, bars)) for _ in range(draws))])
    assert abs(rate - NOMINAL) <= band(NOMINAL, draws), rate


def test_significance_of_a_strong_agent_end_to_end():
    """A stitched agent with a true Sharpe of 3 a year over 1,500 bars against buy & hold (Sharpe 0.5,
    correlation 0.5), a matched buy & hold (half the market) and 199 skill-less random paths: every
    test says skill. Its Sharpe is ~7 standard errors (sqrt(252 / 1500) = 0.41 a year) above 0 and
    the paths', ~6 above buy & hold's: no-skill probability > 0.99, paired p-values <= 0.01 (~1/2001
    expected), percentile > 0.99. Swapped, buy & hold against the agent gets a p-value above 0.5."""
    rng = np.random.default_rng(1200)
    agent, market = agent_and_market(rng, 0.5, 3.0)
    paths = VOL * rng.normal(size=(199, BARS))
    result = significance_of(agent, {"buy & hold": market, "matched buy & hold": 0.5 * market}, paths, DAYS)
    assert result["no_skill"]["probability"] > 0.99
    assert result["paired"]["buy & hold"]["p_value"] <= 0.01
    assert result["paired"]["matched buy & hold"]["p_value"] <= 0.01
    assert result["random"]["agent_percentile"] > 0.99
    swapped = significance_of(market, {"buy & hold": agent}, paths, DAYS)
    assert swapped["paired"]["buy & hold"]["p_value"] > 0.5


def test_configurations_deflate_the_no_skill_probability():
    """The same 1,500-bar series with a sample Sharpe of exactly 1.0 a year (z = sqrt(1500 / 252) =
    2.44 standard errors above 0): alone, its no-skill probability is ~Phi(2.44) = 0.99; reported
    as the best of 10 configurations it must beat the best of 10 skill-less Sharpe ratios, E[max of
    10 N(0, 1)] = 1.54 standard errors, leaving ~Phi(0.9) = 0.82: below the 0.95 skill mark."""
    z = np.random.default_rng(1300).normal(size=BARS)
    agent = VOL * ((z - z.mean()) / z.std(ddof=1) + per_bar(1.0))
    alone, among_ten = no_skill_probability(agent), no_skill_probability(agent, configurations=10)
    assert alone > 0.95 > among_ten
