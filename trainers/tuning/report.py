"""A tuning study's results: trials ranked by best mean validation Sharpe, the selection bias of
choosing the top one (PBO over the trials' val returns, its deflated Sharpe), printed and written
as STUDY_DIR/study.json and study.csv. Needs optuna (the tune extra)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from trainers.backtest.overfitting import describe, selection_stats
from trainers.tuning.trial import SEARCHED, VAL_RETURNS, decode_returns

SCORED = (TrialState.COMPLETE, TrialState.PRUNED)
"""trials whose validations were seen, so they count as candidates of the choice"""
SHORT = {"ppo.learning_rate": "lr", "entropy.schedule.initial": "ent coef", "ppo.gae_lambda": "lambda",
         "ppo.clip_coef": "clip", "ppo.update_epochs": "epochs", "ppo.minibatch_size": "minibatch"}
"""table column of each searched key"""


def ranked_rows(trials: list[FrozenTrial]) -> list[dict[str, Any]]:
    """One row per trial: completed ones by value, then pruned ones by their best validation, then
    failed or unfinished ones; rank counts only completed trials, which alone can be chosen."""
    def order(trial: FrozenTrial) -> tuple[int, float]:
        group = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(trial.state, 2)
        score = sharpe_of(trial)
        return group, -score if score is not None and np.isfinite(score) else np.inf

    rows = []
    for position, trial in enumerate(sorted(trials, key=order), start=1):
        complete = trial.state == TrialState.COMPLETE
        rows.append({"rank": position if complete else None, "trial": trial.number, "state": trial.state.name,
                     "val_sharpe": sharpe_of(trial), "best_step": trial.user_attrs.get("best_step"),
                     "steps": trial.user_attrs.get("steps"),
                     **{key: trial.params.get(key) for key in SEARCHED},
                     "run_dir": trial.user_attrs.get("run_dir")})
    return rows


def sharpe_of(trial: FrozenTrial) -> float | None:
    """The trial's value, or for a pruned one its best validation before pruning."""
    return trial.value if trial.state == TrialState.COMPLETE else trial.user_attrs.get("best_val_sharpe")


def study_selection(study: optuna.Study) -> dict[str, Any]:
    """PBO and the deflated Sharpe of the study's choice, the best completed trial's best
    validation, among every validation of every trial (completed, pruned or failed: each one was
    looked at), as the trials recorded them in the study's storage (VAL_RETURNS), whichever host
    ran them."""
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not complete:
        return {"skipped": "no completed trial to choose", "num_candidates": 0}
    returns = {f"trial_{trial.number:04d} step {int(key[len(VAL_RETURNS):]):,}": decode_returns(value)
               for trial in study.trials for key, value in trial.user_attrs.items() if key.startswith(VAL_RETURNS)}
    best = study.best_trial
    chosen = f"trial_{best.number:04d} step {best.user_attrs.get('best_step', -1):,}"
    if chosen not in returns:
        return {"skipped": f"the chosen validation ({chosen}) has no recorded returns in the study",
                "num_candidates": len(returns)}
    return selection_stats(returns, chosen)


def write_report(study: optuna.Study, study_dir: Path, console: Console) -> dict[str, Any]:
    """Print the ranked table and the selection statistics; write study.json and study.csv."""
    rows = ranked_rows(study.trials)
    selection = study_selection(study)
    console.print(table(rows))
    console.print(describe(selection, "validations of every trial"), markup=False)
    best = next((row for row in rows if row["rank"] == 1), None)
    payload = {"study_dir": str(study_dir), "storage": str(study_dir / "study.db"),
               "num_trials": len(rows), "best": best, "selection": selection, "trials": rows}
    (study_dir / "study.json").write_text(json.dumps(payload, indent=2))
    with open(study_dir / "study.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    console.print(f"wrote {study_dir / 'study.json'} and study.csv", markup=False)
    return payload


def table(rows: list[dict[str, Any]]) -> Table:
    grid = Table(title="trials by best mean validation Sharpe")
    for title in ("rank", "trial", "state", "val Sharpe", "best step", *SHORT.values(), "run dir"):
        grid.add_column(title, justify="left" if title in ("state", "run dir") else "right")
    for row in rows:
        params = [_number(row[key]) for key in SHORT]
        grid.add_row(str(row["rank"] or "-"), str(row["trial"]), row["state"].lower(),
                     _number(row["val_sharpe"], "{:+.3f}"), _number(row["best_step"], "{:,}"), *params,
                     Path(row["run_dir"]).name if row["run_dir"] else "-")
    return grid


def _number(value: float | int | None, form: str = "{:.4g}") -> str:
    return "-" if value is None else form.format(value)
