"""Walk-forward folds (envs.folds) with the env's purge and trading period (envs.splits): test
windows in order without overlap, tiling the tested period; no train bar, nor its reward bar,
inside the purge gap or in a validation window; spans in bars and calendar periods."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.folds import parse_span, plan_folds
from envs.splits import DAY_NS, parse_split_dates, parse_trade_period, split_ranges

HOUR_NS = DAY_NS // 24
START = int(np.datetime64("2015-01-05", "ns").astype(np.int64))


def calendar(start_day: int, bars: int, hourly: bool, gaps: list[int]) -> np.ndarray:
    """(bars,) sorted int64 ns: daily bars at midnight or hourly bars from 09:00, with some skipped."""
    step = HOUR_NS if hourly else DAY_NS
    offset = 9 * HOUR_NS if hourly else 0
    stamps = START + start_day * DAY_NS + offset + np.arange(bars + len(gaps), dtype=np.int64) * step
    return np.delete(stamps, [g % len(stamps) for g in gaps])[:bars]


symbol_calendars = st.lists(
    st.tuples(st.integers(0, 60), st.integers(400, 900), st.booleans(), st.lists(st.integers(0, 10_000), max_size=5)),
    min_size=1, max_size=3)


@settings(max_examples=60, deadline=None)
@given(symbol_calendars, st.integers(1, 4), st.sampled_from(["anchored", "rolling"]), st.integers(0, 30),
       st.integers(0, 5))
def test_folds_tile_the_tested_period_and_no_train_bar_crosses_the_purge(specs, num_folds, mode, purge, embargo):
    stamps = [calendar(*spec) for spec in specs]
    try:
        folds = plan_folds(stamps, num_folds, mode, embargo=embargo)
    except ValueError:  # too short for this many folds: refused, never a broken plan
        return
    assert [f.index for f in folds] == list(range(num_folds))
    bounds = [(parse_split_dates(f.split_dates), parse_trade_period(f.trade_period)) for f in folds]
    for k, ((val, test), (first, end)) in enumerate(bounds):
        assert first < val < test < end
        if k:  # in order, without overlap, `embargo` bars of the common calendar apart (0: touching)
            previous_end = bounds[k - 1][1][1]
            assert previous_end <= test
            if embargo == 0:
                assert previous_end == test
    for t in stamps:
        for (val, test), period in bounds:
            ranges = split_ranges(t, (val, test), period, purge)
            train, validation, testing = ranges["train"], ranges["val"], ranges["test"]
            first_val = int(np.searchsorted(t, val))
            first_test = int(np.searchsorted(t, test))
            # every marked train bar (the last one carries the last decision's reward) is at least
            # `purge` bars before the first validation bar, and the same for validation vs test
            assert train[1] <= max(first_val - purge, train[0])
            assert validation[1] <= max(first_test - purge, validation[0])
            assert all(t[i] >= period[0] for i in range(*train))
            assert all(t[i] < period[1] for i in range(*testing))
            assert testing[0] >= first_test and validation[0] >= first_val


def test_test_windows_cover_the_last_folds_spans_in_bars():
    stamps = calendar(0, 700, False, [])
    folds = plan_folds([stamps], 3, test_span=100, val_span=50)
    tests = [parse_split_dates(f.split_dates)[1] for f in folds]
    ends = [parse_trade_period(f.trade_period)[1] for f in folds]
    counts = [int(np.searchsorted(stamps, e) - np.searchsorted(stamps, s)) for s, e in zip(tests, ends)]
    assert counts == [100, 100, 100]
    assert ends[-1] > stamps[-1]  # the last window runs to the end of the data
    vals = [parse_split_dates(f.split_dates)[0] for f in folds]
    assert [int(np.searchsorted(stamps, t) - np.searchsorted(stamps, v)) for v, t in zip(vals, tests)] == [50] * 3
    assert all(f.train_start == folds[0].train_start for f in folds)  # anchored: all from the start


def test_rolling_folds_train_on_a_fixed_span_and_calendar_spans_are_calendar():
    stamps = calendar(0, 1500, False, [])
    folds = plan_folds([stamps], 2, "rolling", test_span="6M", val_span="3M", train_span="1Y")
    for f in folds:
        train_start, _ = parse_trade_period(f.trade_period)
        val, test = parse_split_dates(f.split_dates)
        assert 360 <= (val - train_start) / DAY_NS <= 370
        assert 88 <= (test - val) / DAY_NS <= 93


def test_folds_lie_in_the_period_every_symbol_trades():
    long, short = calendar(0, 1500, False, []), calendar(600, 500, False, [])
    folds = plan_folds([long, short], 3)
    first_val = parse_split_dates(folds[0].split_dates)[0]
    assert first_val > short[0]  # the short history gets validation and test bars in every fold
    assert parse_trade_period(folds[0].trade_period)[0] == long[0]  # anchored training keeps the long history


def test_spans_that_do_not_fit_are_refused_by_name():
    with pytest.raises(ValueError, match="do not fit"):
        plan_folds([calendar(0, 300, False, [])], 3, test_span=100)
    with pytest.raises(ValueError, match="--test-span"):
        parse_span("6 months", "--test-span")
    assert parse_span("120", "--test-span") == 120 and parse_span("2y", "--test-span") == "2Y"
