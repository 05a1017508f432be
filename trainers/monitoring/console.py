"""Run output: a rich progress bar and live metrics table on a terminal, plain lines elsewhere,
and TensorBoard scalars under `run_dir/tb`.

All values arrive as host floats: the trainer does its one device read per iteration before
calling in here, so nothing in this module can stall the device.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from torch.utils.tensorboard import SummaryWriter

# (metric key, column title, format) shown in the live table and the plain log line.
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("charts/episode_return", "ep ret", "{:+.4f}"),
    ("charts/episode_sharpe_per_step", "sharpe/step", "{:+.2f}"),
    ("reward_share/pnl", "pnl share", "{:.0%}"),
    ("charts/policy_action_entropy_mean", "entropy", "{:.3f}"),
    ("losses/approx_kl", "kl", "{:.4f}"),
    ("losses/clip_fraction", "clip", "{:.3f}"),
    ("losses/explained_variance", "ev", "{:+.2f}"),
    ("entropy/coefficient", "ent coef", "{:.4f}"),
    ("entropy/guard_multiplier", "guard x", "{:.2f}"),
)


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

    def iteration(self, iteration: int, step: int, values: dict[str, float],
                  alerts: Sequence[str] = ()) -> None:
        """Record one iteration: TensorBoard, progress bar, and the summary table or line, with an
        `ALERT <tag>` for each collapse alert that is on (trainers.monitoring.alerts)."""
        self.scalars(step, values)
        sps = self.steps_per_second(step)
        self._progress.update(self._task, completed=step, sps=sps)
        if self._live is not None:
            self._table = self._summary_table(iteration, values)
            # one line each below the table: a long tag wraps at the terminal, not the table's width
            shown = [Text(f"ALERT {tag}", style="bold red") for tag in alerts]
            self._live.update(Group(self._progress, self._table, *shown))
        else:
            eta = max(self.total_steps - step, 0) / sps if sps > 0 else float("inf")
            cells = [f"it {iteration}", f"step {step:,}/{self.total_steps:,}", f"{sps:,.0f} sps",
                     f"eta {_fmt_seconds(eta)}"]
            cells += [f"{title} {fmt.format(values[key])}" for key, title, fmt in SUMMARY_COLUMNS
                      if key in values]
            cells.append(f"actions {action_mix(values)}")
            cells += [f"ALERT {tag}" for tag in alerts]
            if self._validation:
                cells.append(self._validation)
            self.console.print(" | ".join(cells))

    def _summary_table(self, iteration: int, values: dict[str, float]) -> Table:
        table = Table(title=f"iteration {iteration}", title_justify="left", expand=False)
        shown = [(key, title, fmt) for key, title, fmt in SUMMARY_COLUMNS if key in values]
        for _, title, _ in shown:
            table.add_column(title, justify="right")
        table.add_row(*[fmt.format(values[key]) for key, _, fmt in shown])
        table.caption = f"executed actions: {action_mix(values)}" + (
            f"\n{self._validation}" if self._validation else "")
        table.caption_justify = "left"
        return table

    def close(self) -> None:
        """Stop the live display and flush TensorBoard."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self.writer.flush()
        self.writer.close()


def action_mix(values: dict[str, float], prefix: str = "actions/executed_") -> str:
    """Compact `HOLD 62% BUY_S 10% ...` string from `actions/executed_<NAME>` shares."""
    parts = [f"{_abbreviate(key[len(prefix):])} {value:.0%}" for key, value in values.items()
             if key.startswith(prefix) and value >= 0.005]
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

    def iteration(self, iteration: int, step: int, values: dict[str, float],
                  alerts: Sequence[str] = ()) -> None:
        pass

    def close(self) -> None:
        pass


RunLog = RunLogger | QuietLog
"""what a run logs through: QuietLog on data-parallel ranks other than 0"""
