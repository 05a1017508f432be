"""Which checkpoint of a run a command loads (--checkpoint average | best | latest | ensemble | a
file), and the policy built from it."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from configs.train import TrainConfig
from envs.spec import TradingSpec
from models import MultiSymbolPolicy, PolicyEnsemble
from models.checkpoint import read_checkpoint_meta
from trainers.checkpoints.files import (Checkpoint, ResumeError, average_of_best, best, checkpoint_dir, latest,
                                        load_weights, read_best, state_path)

DEFAULT_CHOICE = "average"
"""the checkpoint evaluate, predict, paper and export use unless --checkpoint says otherwise: the
weight average of the best checkpoints is steadier across seeds than the single best one
(docs/results.md, Seed robustness)"""
CHOICE_HELP = ("which weights: average (default) = the mean of the weights of the run's best checkpoints by mean "
               "validation Sharpe (run.keep_best; the best one when fewer than two are kept), best = the top "
               "one (the latest when the run has no validation scores), latest, or a .safetensors file")
"""--checkpoint's help, the same in every command that loads a trained policy"""


def choose(run_dir: Path, choice: str) -> tuple[Checkpoint, str]:
    """(checkpoint, a line saying which and why) for "average", "latest", "best" or the path of a
    weights file. "average" is the weight average of the best list, or "best" when the run has
    none; "best" is the top of the best list, or the latest checkpoint when the run has no
    validation scores (the lines say so)."""
    if choice == "average":
        found = average_of_best(run_dir)
        if found is None:
            checkpoint, line = choose(run_dir, "best")
            return checkpoint, line + ("; no weight average (the run keeps fewer than two validated "
                                       "checkpoints: run.keep_best, run.eval_every)")
        checkpoint, steps = found
        return checkpoint, (f"checkpoint: weight average of the {len(steps)} best by mean validation Sharpe "
                            f"(steps {', '.join(f'{s:,}' for s in steps)}; {checkpoint.weights.name})")
    if choice == "latest":
        checkpoint = latest(run_dir)
        return checkpoint, f"checkpoint: latest, step {checkpoint.step:,} ({checkpoint.weights.name})"
    if choice == "best":
        listed = best(run_dir)
        if listed:
            top = listed[0]
            return top, (f"checkpoint: best of {len(listed)} by mean validation Sharpe, step {top.step:,} "
                         f"(val Sharpe {top.val_sharpe:+.3f}, {top.weights.name})")
        checkpoint = latest(run_dir)
        return checkpoint, (f"checkpoint: latest, step {checkpoint.step:,} ({checkpoint.weights.name}); the "
                            "run has no validation scores (run.eval_every = 0, or trained before "
                            "validation existed), so there is no best one")
    path = Path(choice)
    if not path.is_file():
        raise ResumeError(f"--checkpoint {choice}: not 'average', 'best', 'latest' or an existing .safetensors file")
    step = read_checkpoint_meta(path).step
    scores = {c.weights.resolve(): c.val_sharpe for c in read_best(checkpoint_dir(run_dir) / "latest.json")}
    checkpoint = Checkpoint(path, state_path(path), step, scores.get(path.resolve()))
    score = "" if checkpoint.val_sharpe is None else f", val Sharpe {checkpoint.val_sharpe:+.3f}"
    return checkpoint, f"checkpoint: {path}, step {step:,}{score}"


def choose_members(run_dir: Path, choice: str) -> tuple[list[Checkpoint], str]:
    """Like `choose`, plus "ensemble": every checkpoint of the best list (best first), traded as
    one policy (models.PolicyEnsemble); a run without validation scores gives its latest alone."""
    if choice != "ensemble":
        checkpoint, line = choose(run_dir, choice)
        return [checkpoint], line
    listed = best(run_dir)
    if not listed:
        checkpoint, line = choose(run_dir, "best")
        return [checkpoint], line + "; no best list, so no ensemble"
    steps = ", ".join(f"{c.step:,}" for c in listed)
    return listed, (f"checkpoint: ensemble of the {len(listed)} best by mean validation Sharpe (steps {steps}): "
                    "mean of their action probabilities")


def load_policy(config: TrainConfig, members: Sequence[Checkpoint], symbols: Sequence[str], spec: TradingSpec,
                device: torch.device) -> MultiSymbolPolicy | PolicyEnsemble:
    """The run's policy with `members`' weights (several: their PolicyEnsemble), holding the heads
    of `symbols` (the run's, or a subset when some cannot trade), in eval mode on `device`."""
    policies = []
    for member in members:
        policy = MultiSymbolPolicy(config.run.symbols, config.model, spec).to(device).eval()
        load_weights(member, policy)
        if list(symbols) != list(config.run.symbols):
            subset = MultiSymbolPolicy(symbols, config.model, spec).to(device).eval()
            subset.load_state_dict(policy.state_dict_for(symbols))
            policy = subset
        policies.append(policy)
    return policies[0] if len(policies) == 1 else PolicyEnsemble(policies).eval()
