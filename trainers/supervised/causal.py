"""Causal `sl_prob_*` columns: walk-forward refits, and the parquet copies that carry them.

The rule (docs/supervised.md#causality-and-the-purge): the value at bar t of symbol s comes from a
model whose every training and early-stopping example tau had its label end (bar tau + h) more than
`purge` = lookback + horizon bars before t, i.e. the example is *known* at the timestamp of bar
tau + h + purge + 1 of its symbol. A refit at cutoff timestamp c uses only examples known at c and
serves the bars from c to the next cutoff. The cutoffs are calendar timestamps common to every
symbol, derived from timestamps and counts alone (never from prices), so the plan itself cannot
depend on a later price.

The plan, over the run's calendar splits (envs.splits):

* walk-forward refits across the train split: the first cutoff is the earliest timestamp at which
  `min_history` train examples are known (the bars before it stay 0.5), then `refits` cutoffs
  evenly spaced over the train split's remaining bars;
* the train-split model: cutoff = the first validation date; it serves the validation bars;
* the final model: trained on the same train examples, early-stopped on the validation examples
  known at the first test date; it serves the test bars and is the one saved (encoder.safetensors).

Every model but the final one early-stops on the newest `stop_fraction` of the examples it knows
(by timestamp), fit on the ones known before that stretch starts.
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from envs import Bars
from envs.splits import format_timestamp, split_ranges
from ppo_core.files import atomic_write_bytes
from trainers.supervised.data import Examples

NEVER = np.iinfo(np.int64).max
"""known_at of an example whose label plus purge runs past the data"""
METADATA_KEY = b"sl_probs"


TRAIN_REFIT = "train"
"""the fit on the train split's labels only, which serves the validation split"""


@dataclass
class Refit:
    """One model fit of the plan and the bars it serves."""

    name: str
    """"walk-forward 1".., "train" (serves validation) or "final" (serves test)"""
    known_by: int
    """every fit and stop example is known at this timestamp (ns)"""
    used_from: int
    used_until: int
    """the bars with used_from <= timestamp < used_until (ns) take this model's probabilities"""
    fit_rows: np.ndarray
    stop_rows: np.ndarray
    stopping: str
    """what the early stopping watched"""

    def describe(self) -> dict[str, object]:
        return {"model": self.name, "known_by": format_timestamp(self.known_by),
                "used_from": format_timestamp(self.used_from),
                "used_until": None if self.used_until == NEVER else format_timestamp(self.used_until),
                "fit_examples": int(len(self.fit_rows)), "stop_examples": int(len(self.stop_rows)),
                "early_stopping": self.stopping}


@dataclass
class Plan:
    refits: list[Refit]
    purge: int
    split_dates: tuple[str, str]
    notes: list[str] = field(default_factory=list)
    """what a reader of the report must know (the 0.5 stretch, a fallback)"""

    def describe(self) -> list[dict[str, object]]:
        return [r.describe() for r in self.refits]


def known_at(examples: Examples, horizon: int, purge: int) -> np.ndarray:
    """(M,) int64 ns: the timestamp from which each example may train a model (the bar
    tau + horizon + purge + 1 of its symbol), NEVER when the data ends first or it has no label."""
    out = np.full(len(examples), NEVER, dtype=np.int64)
    for s, stamps in enumerate(examples.timestamps):
        rows = examples.rows_of(s)
        later = examples.bar[rows] + horizon + purge + 1
        inside = later < len(stamps)
        out[rows[inside]] = stamps[later[inside]]
    out[~examples.labelled] = NEVER
    return out


def last_label_time(examples: Examples, rows: np.ndarray, horizon: int) -> int:
    """The timestamp (int64 ns) of the latest label `rows` carry: the bar t + horizon of each row's
    symbol, the newest price a model fitted (or early-stopped) on them has seen."""
    labels = [examples.timestamps[s][examples.bar[mine] + horizon]
              for s in range(len(examples.timestamps)) if len(mine := rows[examples.symbol[rows] == s])]
    return int(max(stamps.max() for stamps in labels))


def split_membership(examples: Examples, bounds: tuple[int, int], period: tuple[int, int] | None,
                     purge_bars: int) -> dict[str, np.ndarray]:
    """split name -> (M,) bool: the example's bar lies in that split's bar range (envs.splits)."""
    member = {name: np.zeros(len(examples), dtype=bool) for name in ("train", "val", "test")}
    for s, stamps in enumerate(examples.timestamps):
        rows = examples.rows_of(s)
        for name, (start, end) in split_ranges(stamps, bounds, period, purge_bars).items():
            member[name][rows] = (examples.bar[rows] >= start) & (examples.bar[rows] < end)
    return member


def _inner_split(rows: np.ndarray, stamp: np.ndarray, known: np.ndarray, stop_fraction: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, stop rows) of the known `rows`: the newest `stop_fraction` by timestamp early-stop,
    the rows known before that stretch starts fit."""
    order = np.sort(stamp[rows])
    first_stop = order[min(int(len(order) * (1.0 - stop_fraction)), len(order) - 1)]
    return rows[known[rows] <= first_stop], rows[stamp[rows] >= first_stop]


def plan_refits(examples: Examples, bounds: tuple[int, int], *, horizon: int, lookback: int,
                refits: int, min_history: int, stop_fraction: float,
                period: tuple[int, int] | None = None, purge_bars: int = 0) -> Plan:
    """The walk-forward plan over `examples` cut at `bounds` (first validation, first test, ns)."""
    purge = lookback + horizon
    val_date, test_date = bounds
    dates = (format_timestamp(val_date), format_timestamp(test_date))
    known = known_at(examples, horizon, purge)
    member = split_membership(examples, bounds, period, purge_bars)
    train_rows = np.flatnonzero(member["train"] & (known <= val_date))
    stamp = examples.stamp
    plan = Plan(refits=[], purge=purge, split_dates=dates)

    def refit(name: str, cutoff: int, until: int) -> Refit | None:
        rows = train_rows[known[train_rows] <= cutoff]
        fit_rows, stop_rows = _inner_split(rows, stamp, known, stop_fraction) if len(rows) else (rows, rows)
        if len(fit_rows) == 0 or len(stop_rows) == 0:
            return None
        return Refit(name, cutoff, cutoff, until, fit_rows, stop_rows,
                     f"the newest {stop_fraction:.0%} of the train examples it knows")

    sorted_known = np.sort(known[train_rows])
    first = int(sorted_known[min_history - 1]) if len(sorted_known) >= min_history else NEVER
    if first < val_date:
        union = np.unique(np.concatenate(examples.timestamps))
        candidates = union[(union >= first) & (union < val_date)]
        positions = np.unique(np.floor(np.linspace(0, len(candidates), refits, endpoint=False)).astype(int))
        cutoffs = [int(candidates[p]) for p in positions] + [val_date]
        for k, (cutoff, until) in enumerate(zip(cutoffs[:-1], cutoffs[1:])):
            made = refit(f"walk-forward {len(plan.refits) + 1}", cutoff, until)
            if made is not None:
                if plan.refits:  # a cutoff without fit or stop examples: the one before serves on
                    plan.refits[-1].used_until = cutoff
                plan.refits.append(made)
        if plan.refits:
            plan.refits[-1].used_until = val_date
    if plan.refits:
        plan.notes.append(f"train bars before {format_timestamp(plan.refits[0].used_from)} have no model "
                          f"that knows {min_history} examples yet: their sl_prob is 0.5 and they are "
                          "left out of the train metrics (the backtest stays flat there)")
    else:
        plan.notes.append(f"the train split never knows {min_history} examples before "
                          f"{dates[0]} (--min-history): every train bar's sl_prob is 0.5 and "
                          "the train split has no metrics")
    train_model = refit(TRAIN_REFIT, val_date, test_date)
    if train_model is None:
        raise ValueError(f"the train split (before {dates[0]}) has too few labelled examples to fit "
                         f"a model ({len(train_rows)} known before the first validation date with a "
                         f"purge of {purge} bars)")
    plan.refits.append(train_model)
    val_rows = np.flatnonzero(member["val"] & (known <= test_date))
    if len(val_rows):
        plan.refits.append(Refit("final", test_date, test_date, NEVER, train_rows, val_rows,
                                 "the validation examples known at the first test date"))
    else:
        plan.notes.append(f"the validation split [{dates[0]}, {dates[1]}) has no example whose label "
                          f"and purge ({purge} bars) end before the first test date: the final "
                          "model early-stops on the newest train examples instead")
        plan.refits.append(Refit("final", val_date, test_date, NEVER, train_model.fit_rows,
                                 train_model.stop_rows, train_model.stopping))
    return plan


def served_rows(examples: Examples, refit: Refit) -> np.ndarray:
    """Rows whose bar's timestamp lies in [refit.used_from, refit.used_until)."""
    return np.flatnonzero((examples.stamp >= refit.used_from) & (examples.stamp < refit.used_until))


def per_symbol_columns(examples: Examples, probabilities: np.ndarray) -> list[np.ndarray]:
    """(M,) pooled probabilities -> each symbol's (T_s,) column, 0.5 on bars without an input."""
    columns = []
    for s, stamps in enumerate(examples.timestamps):
        column = np.full(len(stamps), 0.5)
        rows = examples.rows_of(s)
        column[examples.bar[rows]] = probabilities[rows]
        columns.append(column)
    return columns


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_copy(bars: Bars, columns: dict[str, np.ndarray], out_dir: Path, provenance: dict[str, object]) -> Path:
    """OUT_DIR/<SYMBOL>.parquet: the bars' file (every column and its metadata, its own sl_prob_*
    columns dropped) or, for a generated market, the loader's canonical schema, plus `columns`
    (name -> (T,) float64) and the provenance as JSON under the metadata key "sl_probs"."""
    source = Path(bars.source)
    if bars.source.endswith(".parquet") and source.is_file():
        table = pq.read_table(source)
        if table.num_rows != len(bars):
            raise ValueError(f"{source}: {table.num_rows} rows, but {len(bars)} bars were loaded")
        keep = [c for c in table.column_names if not c.lower().startswith("sl_prob")]
        table = table.select(keep)
    else:
        table = pa.table({"timestamp": pa.array(bars.timestamps.astype("datetime64[ns]")), "open": bars.open,
                          "high": bars.high, "low": bars.low, "close": bars.close, "volume": bars.volume})
    for name, values in columns.items():
        table = table.append_column(name, pa.array(np.asarray(values, dtype=np.float64)))
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(provenance).encode()
    table = table.replace_schema_metadata(metadata)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path = out_dir / f"{bars.symbol}.parquet"
    atomic_write_bytes(path, buffer.getvalue())
    return path


def read_provenance(path: str | Path) -> dict[str, object]:
    """The "sl_probs" provenance of a copy written by write_copy ({} when there is none)."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else {}


def created_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
