"""Chronological train / val / test splits cut at calendar dates common to every symbol.

All symbols share one encoder, so a multi-symbol result is honest only when no symbol's training
bars are later than any symbol's first validation bar (and no validation bar later than any first
test bar). The cuts are therefore two timestamps applied to every symbol alike, never per-symbol
fractions: the first validation and the first test timestamp, given as `env.split_dates` or
derived once from the union of all symbols' timestamps with `env.split_fractions`.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

SPLITS = ("train", "val", "test")
DAY_NS = 86_400 * 10**9
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?")
_EXAMPLE = '["2019-01-01", "2021-06-01"]'


def parse_split_dates(dates: Sequence[str]) -> tuple[int, int]:
    """(first validation, first test) as int64 ns since the epoch (UTC) of two ISO dates or
    date-times ("2019-01-01", "2019-01-01T14:30"); a ValueError starting `split_dates:` otherwise."""
    if not isinstance(dates, (list, tuple)) or len(dates) != 2:
        raise ValueError(f"split_dates: expected two dates [first validation, first test] such as "
                         f"{_EXAMPLE}, or [] to derive them from split_fractions; got {dates!r}")
    bounds = [parse_timestamp(text, f"split_dates: the {name} date", _EXAMPLE)
              for name, text in zip(("first validation", "first test"), dates)]
    if bounds[0] > bounds[1]:
        raise ValueError(f"split_dates: the first validation date {dates[0]!r} is after the first test "
                         f"date {dates[1]!r}; give them in that order, e.g. {_EXAMPLE}")
    return bounds[0], bounds[1]


def parse_timestamp(text: str, what: str, example: str = '"2019-01-01"') -> int:
    """int64 ns since the epoch (UTC) of an ISO date or date-time ("2019-01-01", "2019-01-01T14:30");
    a ValueError starting with `what` (the field and its role, e.g. "--from") otherwise."""
    if not isinstance(text, str) or not _ISO.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not an ISO date string (YYYY-MM-DD or "
                         f"YYYY-MM-DDTHH:MM[:SS], UTC), e.g. {example}")
    try:
        value = np.datetime64(text.replace(" ", "T"), "ns")
    except ValueError as err:
        raise ValueError(f"{what} {text!r} is not a calendar date ({err})") from err
    if np.datetime_as_string(value, unit="D") != text[:10]:  # out of datetime64[ns]'s years, wrapped
        raise ValueError(f"{what} {text!r} is outside 1678..2261")
    return int(value.astype(np.int64))


def parse_trade_period(dates: Sequence[str]) -> tuple[int, int]:
    """[first, end) of env.trade_period as int64 ns (UTC); a ValueError starting `trade_period:`."""
    try:
        first, end = parse_split_dates(dates)
    except ValueError as err:
        raise ValueError(str(err).replace("split_dates:", "trade_period:", 1)
                         .replace("first validation", "first").replace("first test", "end")) from err
    if first == end:
        raise ValueError(f"trade_period: {list(dates)} is empty; give [first, end) with first < end")
    return first, end


def derive_split_dates(timestamps: Iterable[np.ndarray], fractions: Sequence[float]) -> tuple[str, str]:
    """The split_dates that cut the sorted union of every symbol's (T_s,) int64 ns timestamps at the
    cumulative train / val `fractions`, each moved back to the start of its UTC day: a daily bar
    stamped at midnight covers its whole day, so it must not train while an hourly bar of that
    same day validates. When that leaves a symbol without validation or test bars (a history that
    ends early or starts late), the cut is made in the period every symbol trades instead (from the
    latest first bar to the earliest last bar), so each gets validation and test bars; training
    keeps every symbol's earlier bars."""
    stamps = [np.asarray(t, dtype=np.int64) for t in timestamps]
    union = np.unique(np.concatenate(stamps))
    dates = _cut(union, fractions)
    bounds = parse_split_dates(dates)
    if all(min(_split_sizes(t, np.asarray(bounds))[1:]) >= 2 for t in stamps):
        return dates
    common = union[(union >= max(int(t[0]) for t in stamps)) & (union <= min(int(t[-1]) for t in stamps))]
    return _cut(common, fractions) if len(common) >= 3 else dates


def _cut(union: np.ndarray, fractions: Sequence[float]) -> tuple[str, str]:
    """split_dates at the cumulative train / val `fractions` of the sorted (U,) timestamps."""
    cuts = np.round(np.cumsum(fractions[:2]) * len(union)).astype(int)  # (2,) positions in union
    after_end = (union[-1] // DAY_NS + 1) * DAY_NS  # a cut at the very end (a zero fraction)
    exact = np.where(cuts < len(union), union[np.minimum(cuts, len(union) - 1)], after_end)
    days = exact // DAY_NS * DAY_NS
    # intraday bars over a few days could see a split emptied by the move to midnight: keep exact cuts
    keeps_splits = np.array_equal(_split_sizes(union, days) > 0, _split_sizes(union, exact) > 0)
    bounds = days if keeps_splits else exact
    return format_timestamp(int(bounds[0])), format_timestamp(int(bounds[1]))


def split_ranges(timestamps: np.ndarray, bounds: tuple[int, int], period: tuple[int, int] | None = None,
                 purge: int = 0) -> dict[str, tuple[int, int]]:
    """[start, end) bar ranges of train / val / test for one symbol's (T,) sorted timestamps: the
    bars before bounds[0], those in [bounds[0], bounds[1]), and the rest, which tile [0, T); then
    train starts at period[0] and test ends before period[1] (bars outside the trading period),
    and train and val each end `purge` bars before the next split starts (the purge gap)."""
    val, test = (int(i) for i in np.searchsorted(timestamps, bounds, side="left"))
    first, end = (0, len(timestamps)) if period is None else \
        (int(i) for i in np.searchsorted(timestamps, period, side="left"))
    def clip(start: int, stop: int) -> tuple[int, int]:
        return max(start, first), max(min(stop, end), max(start, first))
    return {"train": clip(0, max(val - purge, 0)), "val": clip(val, max(test - purge, val)),
            "test": clip(test, len(timestamps))}


def format_timestamp(ns: int) -> str:
    """ISO text of an int64 ns timestamp (UTC) that parse_split_dates reads back exactly: the date
    alone at midnight, else to the second (or the nanosecond when needed)."""
    unit = "D" if ns % DAY_NS == 0 else "s" if ns % 10**9 == 0 else "ns"
    return str(np.datetime_as_string(np.datetime64(ns, "ns"), unit=unit))


def _split_sizes(union: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(3,) number of `union` timestamps in train / val / test for these bounds."""
    return np.diff(np.r_[0, np.searchsorted(union, bounds), len(union)])
