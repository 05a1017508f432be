"""Run output: a rich progress bar and live metrics table on a terminal, plain lines elsewhere,
and TensorBoard scalars under `run_dir/tb`.

All values arrive as host floats: the trainer does its one device read per iteration before
calling in here, so nothing in this module can stall the device.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable, Sequence, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from torch.utils.tensorboard import SummaryWriter

from ppo_core import EntropyState, UpdateStats
from trainers.monitoring.rollout_stats import RolloutSummary

@dataclass(frozen=True)
class IterationMetrics:
    """Everything one training iteration reports, on the host: what the console shows by field and
    TensorBoard receives as `scalars()`."""

    rollout: RolloutSummary
    update: UpdateStats
    entropy: EntropyState
    alerts: dict[str, float]
    """CollapseAlerts.scalars(): `alerts/<name>` counts and `alerts/<name>_active` flags"""
    steps_per_second: float

    def scalars(self) -> dict[str, float]:
        """Every TensorBoard scalar of the iteration."""
        return {**self.rollout.scalars(), **self.update.scalars(), **self.entropy.scalars(), **self.alerts,
                "charts/policy_action_entropy_mean": self.update.steps.entropy, "charts/SPS": self.steps_per_second}


def _episode_mean(stat: str) -> Callable[[IterationMetrics], float | None]:
    return lambda m: m.rollout.episode_means[stat] if m.rollout.episodes else None


SUMMARY_COLUMNS: tuple[tuple[str, str, Callable[[IterationMetrics], float | None]], ...] = (
    ("ep ret", "{:+.4f}", _episode_mean("return")),
    ("sharpe/step", "{:+.2f}", _episode_mean("sharpe_per_step")),
    ("pnl share", "{:.0%}", lambda m: m.rollout.reward_shares.get("pnl")),  # None when pnl is not a component
    ("entropy", "{:.3f}", lambda m: m.update.steps.entropy),
    ("kl", "{:.4f}", lambda m: m.update.steps.approx_kl),
    ("clip", "{:.3f}", lambda m: m.update.steps.clip_fraction),
    ("ev", "{:+.2f}", lambda m: m.update.explained_variance),
    ("ent coef", "{:.4f}", lambda m: m.entropy.coefficient),
    ("guard x", "{:.2f}", lambda m: m.entropy.guard_multiplier),
    ("anchor kl", "{:.4f}", lambda m: m.update.steps.anchor_kl if m.update.anchor_coef > 0 else None),
)
"""(column title, format, value; None leaves the column out) of the live table and the plain log line"""


class RunLogger:
    """Progress, per-iteration summary and TensorBoard writer for one training run."""

    def __init__(self, run_dir: Path, total_steps: int, start_step: int = 0,
                 interactive: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.console = Console(file=self.stream, force_terminal=self.interactive or None,
                               highlight=False, soft_wrap=not self.interactive)
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
        self.total_steps = total_steps
        self._start_step = start_step
        self._start_time = time.perf_counter()
        self._live: Live | None = None
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} steps"),
            TextColumn("{task.fields[sps]:,.0f} steps/s"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console,
        )
        self._task = self._progress.add_task("train", total=total_steps, completed=start_step, sps=0.0)
        self._table = Table()
        self._validation = ""  # the latest validation's cell, shown with every iteration after it
        if self.interactive:
            self._live = Live(Group(self._progress, self._table), console=self.console,
                              refresh_per_second=4, transient=False)
            self._live.start()

    def message(self, text: str, style: str = "") -> None:
        """Print a line above the live display (or plainly). `text` is plain: brackets in it (`".[data]"`,
        `[32]`) are printed, never read as rich markup."""
        self.console.print(text, style=style or None, markup=False)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Write each `group/name` value to TensorBoard at `step`."""
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def validation(self, step: int, values: dict[str, float], cell: str) -> None:
        """Record one validation: its `val/*` values in TensorBoard, and `cell` (e.g. `val sharpe
        +1.23 (best +1.50 @ 49k)`) shown in the live table and log lines from here on."""
        self.scalars(step, values)
        self._validation = cell

    def text(self, step: int, tag: str, text: str) -> None:
        """A TensorBoard text entry (e.g. why the run stopped)."""
        self.writer.add_text(tag, text, step)

    def set_total(self, total_steps: int) -> None:
        """The run's real length (total_steps rounded up to whole iterations)."""
        self.total_steps = total_steps
        self._progress.update(self._task, total=total_steps)

    def steps_per_second(self, step: int) -> float:
        """Account-steps per second since this logger started (a resumed run counts from resume)."""
        return (step - self._start_step) / max(time.perf_counter() - self._start_time, 1e-9)

    def iteration(self, iteration: int, step: int, metrics: IterationMetrics, alerts: Sequence[str] = ()) -> None:
        """Record one iteration: TensorBoard, progress bar, and the summary table or line, with an
        `ALERT <tag>` for each collapse alert that is on (trainers.monitoring.alerts)."""
        self.scalars(step, metrics.scalars())
        sps = self.steps_per_second(step)
        self._progress.update(self._task, completed=step, sps=sps)
        shown = [(title, fmt.format(value)) for title, fmt, read in SUMMARY_COLUMNS
                 if (value := read(metrics)) is not None]
        mix = action_mix(metrics.rollout.executed_share())
        if self._live is not None:
            table = Table(title=f"iteration {iteration}", title_justify="left", expand=False)
            for title, _ in shown:
                table.add_column(title, justify="right")
            table.add_row(*[cell for _, cell in shown])
            table.caption = f"executed actions: {mix}" + (f"\n{self._validation}" if self._validation else "")
            table.caption_justify = "left"
            self._table = table
            # one line each below the table: a long tag wraps at the terminal, not the table's width
            lines = [Text(f"ALERT {tag}", style="bold red") for tag in alerts]
            self._live.update(Group(self._progress, self._table, *lines))
        else:
            eta = max(self.total_steps - step, 0) / sps if sps > 0 else float("inf")
            cells = [f"it {iteration}", f"step {step:,}/{self.total_steps:,}", f"{sps:,.0f} sps",
                     f"eta {_fmt_seconds(eta)}"]
            cells += [f"{title} {cell}" for title, cell in shown]
            cells.append(f"actions {mix}")
            cells += [f"ALERT {tag}" for tag in alerts]
            if self._validation:
                cells.append(self._validation)
            self.console.print(" | ".join(cells))

    def close(self) -> None:
        """Stop the live display and flush TensorBoard."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self.writer.flush()
        self.writer.close()


def action_mix(shares: dict[str, float]) -> str:
    """Compact `HOLD 62% BUY_S 10% ...` string from action name -> share."""
    parts = [f"{_abbreviate(name)} {share:.0%}" for name, share in shares.items() if share >= 0.005]
    return " ".join(parts) or "-"


def _abbreviate(action: str) -> str:
    """BUY_SMALL -> BUY_S, ADD_TO_POSITION -> ADD_T: short enough for an 80-column terminal."""
    head, _, rest = action.partition("_")
    return f"{head}_{rest[0]}" if rest else head


def _fmt_seconds(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class QuietLog:
    """The RunLogger interface for ranks other than 0: rank 0 alone prints and writes TensorBoard."""

    def message(self, text: str, style: str = "") -> None:
        pass

    def scalars(self, step: int, values: dict[str, float]) -> None:
        pass

    def validation(self, step: int, values: dict[str, float], cell: str) -> None:
        pass

    def text(self, step: int, tag: str, text: str) -> None:
        pass

    def set_total(self, total_steps: int) -> None:
        pass

    def steps_per_second(self, step: int) -> float:
        return 0.0

    def iteration(self, iteration: int, step: int, metrics: IterationMetrics, alerts: Sequence[str] = ()) -> None:
        pass

    def close(self) -> None:
        pass


RunLog = RunLogger | QuietLog
"""what a run logs through: QuietLog on data-parallel ranks other than 0"""
