"""Walk-forward folds: train on the past, validate, test on the next slice, move forward.

Every fold is three calendar cuts common to every symbol, like the splits of one run
(envs.splits): its first validation and first test date (`env.split_dates`) and the end of its
test window; anchored folds train from the data's start, rolling folds from `train_span` before
their validation window (`env.trade_period`). The test windows tile the last part of the data in
order, each `test_span` long, and follow each other directly (or `embargo` bars apart). The purge
between train and validation and between validation and test is the env's `purge_bars`, counted
in each symbol's own bars.

Spans are bars of the union of every symbol's timestamps (an int) or calendar periods ("90D",
"8W", "6M", "2Y"). Each cut is the first bar at or after the span's boundary, written as the start
of its UTC day when no bar lies between that midnight and the cut (so daily data gets plain dates).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable, Literal

import numpy as np

from envs.splits import DAY_NS, format_timestamp

Span = int | str
_PERIOD = re.compile(r"(\d+)([DWMY])")


@dataclass(frozen=True)
class Fold:
    """One fold's cuts as ISO dates (UTC), ready for EnvConfig."""

    index: int
    train_start: str
    """first bar train may trade (the data's first bar for anchored folds)"""
    val_start: str
    test_start: str
    test_end: str
    """first bar after the test window (past the data's last bar for the last fold)"""

    @property
    def split_dates(self) -> tuple[str, str]:
        """env.split_dates of this fold's runs"""
        return self.val_start, self.test_start

    @property
    def trade_period(self) -> tuple[str, str]:
        """env.trade_period of this fold's runs"""
        return self.train_start, self.test_end


def parse_span(text: str | int, name: str) -> Span:
    """A span from the command line: bars ("500") or a calendar period ("6M"); ValueError naming `name`."""
    if isinstance(text, int) or str(text).strip().isdigit():
        bars = int(text)
        if bars < 1:
            raise ValueError(f"{name}: a span needs at least 1 bar, got {text!r}")
        return bars
    text = str(text).strip().upper()
    if not _PERIOD.fullmatch(text) or int(text[:-1]) < 1:
        raise ValueError(f"{name}: {text!r} is neither a number of bars (e.g. 500) nor a calendar period "
                         "(e.g. 90D, 8W, 6M, 2Y)")
    return text


def plan_folds(timestamps: Iterable[np.ndarray], num_folds: int, mode: Literal["anchored", "rolling"] = "anchored",
               test_span: Span | None = None, val_span: Span | None = None, train_span: Span | None = None,
               embargo: int = 0) -> list[Fold]:
    """`num_folds` walk-forward folds over the union of every symbol's (T_s,) int64 ns timestamps,
    laid out in the period every symbol trades (from the latest first bar to the earliest last bar).

    Defaults: test_span = val_span = N // (num_folds + 3) bars of the union (the test windows
    cover the last num_folds of those, the first fold trains on at least a third of the data);
    rolling folds train on train_span bars (default 2 x test_span) before their validation window.
    ValueError when the folds do not fit in the data."""
    if num_folds < 1:
        raise ValueError(f"folds: need at least 1, got {num_folds}")
    if mode not in ("anchored", "rolling"):
        raise ValueError(f"mode: anchored or rolling, got {mode!r}")
    if embargo < 0:
        raise ValueError(f"embargo: bars between test windows must be >= 0, got {embargo}")
    stamps = [np.asarray(t, dtype=np.int64) for t in timestamps]
    full = np.unique(np.concatenate(stamps))
    # the folds are laid out inside the period every symbol trades, so each symbol has validation
    # and test bars in every fold; anchored training still starts at the earliest bar of any symbol
    union = full[(full >= max(int(t[0]) for t in stamps)) & (full <= min(int(t[-1]) for t in stamps))]
    if len(union) < 2:
        raise ValueError("the symbols' histories do not overlap: no period in which every symbol trades")
    default = len(union) // (num_folds + 3)
    if test_span is None or val_span is None:
        if default < 2:
            raise ValueError(f"{len(union)} bars are too few for {num_folds} folds")
    test_span = default if test_span is None else test_span
    val_span = test_span if val_span is None else val_span
    train_span = (2 * test_span if isinstance(test_span, int) else test_span) if train_span is None else train_span

    after_last = int(union[-1]) + 1
    folds: list[Fold] = []
    end = after_last
    for k in reversed(range(num_folds)):
        test_start = _back(union, end, test_span)
        val_start = _back(union, test_start, val_span)
        train_start = int(full[0]) if mode == "anchored" else _back(union, val_start, train_span)
        if not full[0] <= train_start < val_start < test_start < end or val_start < union[0]:
            raise ValueError(f"fold {k}: the spans (test {test_span}, val {val_span}"
                             f"{f', train {train_span}' if mode == 'rolling' else ''}) do not fit in the "
                             f"{len(union)} bars from {format_timestamp(int(union[0]))} to "
                             f"{format_timestamp(int(union[-1]))}: use fewer folds or shorter spans")
        folds.append(Fold(k, *(_date(full, t) for t in (train_start, val_start, test_start)),
                          test_end=_date(full, end) if end < after_last else
                          format_timestamp((int(union[-1]) // DAY_NS + 1) * DAY_NS)))
        end = _back(union, test_start, embargo) if embargo else test_start
    return folds[::-1]


def _back(union: np.ndarray, time: int, span: Span) -> int:
    """The timestamp of the first bar of a window of `span` that ends before `time` (clamped to
    the first bar; a time before it when the window does not fit, for the caller to refuse)."""
    end = int(np.searchsorted(union, time, side="left"))
    if isinstance(span, int):
        start = end - span
        return int(union[start]) if start >= 0 else int(union[0]) - 1
    count, unit = int(span[:-1]), span[-1]
    moment = datetime.fromtimestamp(time / 1e9, tz=timezone.utc)
    if unit in "DW":
        boundary = time - count * (7 if unit == "W" else 1) * DAY_NS
    else:
        months = moment.year * 12 + moment.month - 1 - count * (12 if unit == "Y" else 1)
        year, month = divmod(months, 12)
        day = min(moment.day, 28)  # a month's end moves to a day every month has
        boundary = int(moment.replace(year=year, month=month + 1, day=day).timestamp() * 1e9)
    if boundary < union[0]:
        return int(union[0]) - 1
    return int(union[np.searchsorted(union, boundary, side="left")])


def _date(union: np.ndarray, cut: int) -> str:
    """`cut` (a bar's timestamp) as the start of its UTC day when no bar lies between that midnight
    and the cut, so the date cuts the bars exactly where the timestamp does."""
    midnight = cut // DAY_NS * DAY_NS
    between = np.searchsorted(union, cut, side="left") - np.searchsorted(union, midnight, side="left")
    return format_timestamp(midnight if between == 0 else cut)
