"""Model selection: the BestK's best-k and early stopping on scripted scores, best checkpoints
surviving pruning and resume, and real tiny runs that validate, keep, stop and evaluate the best."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from envs import DEFAULT_SPEC
from models import MultiSymbolPolicy, PolicyConfig
from models.encoder import EncoderConfig
from helpers import BATCH, ROOT, tiny_args
from trainers import checkpoints
from trainers.evaluate import main as evaluate_main
from trainers.ppo import build_parser, main, resolve_run, train
from trainers.checkpoints.best_k import BestK, Scored
from trainers.run.build import open_session
from trainers.run.session import STOPPED_FILE

EVERY_ITERATION = ["--set", f"run.eval_every={BATCH}"]


# ---- the BestK on scripted scores ------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-3, 3, allow_nan=False) | st.sampled_from([0.5, 1.0]), max_size=30),
       st.integers(0, 5))
def test_best_list_is_the_top_k_of_every_score_so_far(scores, k):
    board = BestK(k)
    for i, score in enumerate(scores):
        verdict = board.record(step=100 * (i + 1), score=score)
        ranked = sorted((Scored(100 * (j + 1), s) for j, s in enumerate(scores[:i + 1])),
                        key=lambda x: (-x.score, x.step))  # ties: the earlier step ranks first
        assert board.best == ranked[:k]
        assert verdict.kept == (Scored(100 * (i + 1), score) in ranked[:k])
        assert board.top == ranked[0]


def test_nan_score_is_never_kept_and_never_an_improvement():
    board = BestK(3, patience=2)
    assert board.record(1, math.nan) == (False, False, "")
    assert board.record(2, 0.1).kept and board.best == [Scored(2, 0.1)]
    assert board.record(3, math.nan).stop == ""
    assert "2 validations" in board.record(4, math.nan).stop


def test_patience_stops_at_the_right_validation():
    board = BestK(2, patience=3, min_delta=0.01)
    # improvements need more than 0.01 over the last improving score (0.5): 0.505 and 0.509 are not,
    # even though 0.509 is a new best; the third validation without one stops the run
    verdicts = [board.record(step, score) for step, score in
                [(1, 0.1), (2, 0.5), (3, 0.505), (4, 0.509), (5, 0.3)]]
    assert [v.improved for v in verdicts] == [True, True, False, False, False]
    assert [bool(v.stop) for v in verdicts] == [False, False, False, False, True]
    assert "3 validations" in verdicts[-1].stop and "best +0.509 at step 4" in verdicts[-1].stop
    assert board.best == [Scored(4, 0.509), Scored(3, 0.505)]
    # an improvement resets the count
    board = BestK(1, patience=2, min_delta=0.0)
    stops = [bool(board.record(step, score).stop) for step, score in enumerate([1.0, 0.9, 1.1, 0.9, 0.8])]
    assert stops == [False, False, False, False, True]


def test_target_sharpe_stops_at_once_and_patience_zero_never_stops():
    board = BestK(3, patience=0, target=0.8)
    assert board.record(1, 0.79).stop == ""
    verdict = board.record(2, 0.8)
    assert verdict.kept and "reached run.early_stop_target_sharpe = +0.800" in verdict.stop
    never = BestK(3)
    assert not any(never.record(step, -float(step)).stop for step in range(50))


def test_state_round_trips_weights_only_and_continues_like_an_unbroken_board(tmp_path):
    scores = [0.3, 0.1, 0.4, 0.2, 0.35, 0.05, 0.5, 0.45]
    straight = BestK(3, patience=4, min_delta=0.02)
    first = BestK(3, patience=4, min_delta=0.02)
    for step, score in enumerate(scores[:4]):
        straight.record(step, score)
        first.record(step, score)
    torch.save(first.state_dict(), tmp_path / "state.pt")
    resumed = BestK(3, patience=4, min_delta=0.02)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for step, score in enumerate(scores[4:], start=4):
        assert straight.record(step, score) == resumed.record(step, score)
    assert straight.state_dict() == resumed.state_dict()
    smaller = BestK(1)
    smaller.load_state_dict(straight.state_dict())  # keep_best may shrink on resume
    assert smaller.best == [Scored(6, 0.5)]


# ---- best checkpoints on disk ---------------------------------------------------------------------
def test_best_checkpoints_survive_pruning_and_are_listed_best_first(tmp_path):
    board = BestK(2)
    for step, score in [(10, 0.9), (20, 0.1), (30, 1.2), (40, 0.2), (50, 0.3), (60, 0.0)]:
        board.record(step, score)
        checkpoints.save(tmp_path, nn.Linear(2, 2), {}, ["A"], step, {"step": step}, best=board.best)
    names = {p.name for p in checkpoints.checkpoint_dir(tmp_path).glob("*.safetensors")}
    # the newest two (50, 60) and the best two (30, 10); 20 and 40 pruned; the best two's average
    assert names == {f"step_{s:012d}.safetensors" for s in (10, 30, 50, 60)} | {checkpoints.AVERAGE}
    listed = checkpoints.best(tmp_path)
    assert [(c.step, c.val_sharpe) for c in listed] == [(30, 1.2), (10, 0.9)]
    assert all(c.weights.is_file() and c.state.is_file() for c in listed)
    chosen, note = checkpoints.choose(tmp_path, "best")
    assert chosen.step == 30 and "+1.200" in note
    assert checkpoints.choose(tmp_path, "latest")[0].step == 60
    by_path, note = checkpoints.choose(tmp_path, str(listed[1].weights))
    assert (by_path.step, by_path.val_sharpe) == (10, 0.9) and "+0.900" in note


def test_best_falls_back_to_latest_without_scores_and_repointing_keeps_the_list(tmp_path):
    checkpoints.save(tmp_path, nn.Linear(2, 2), {}, ["A"], 10, {"step": 10})
    chosen, note = checkpoints.choose(tmp_path, "best")
    assert chosen.step == 10 and "no validation scores" in note
    checkpoints.save(tmp_path, nn.Linear(2, 2), {}, ["A"], 20, {"step": 20}, best=[Scored(10, 0.7)])
    checkpoints.save(tmp_path, nn.Linear(2, 2), {}, ["A"], 30, {"step": 30}, best=[Scored(10, 0.7)])
    newest = checkpoints.latest(tmp_path).weights
    newest.write_bytes(newest.read_bytes()[:20])  # truncated: resume falls back to step 20
    checkpoint, _, notes = checkpoints.resume_point(tmp_path)
    assert checkpoint.step == 20 and notes
    assert [(c.step, c.val_sharpe) for c in checkpoints.best(tmp_path)] == [(10, 0.7)]
    with pytest.raises(checkpoints.ResumeError, match="not 'average', 'best', 'latest'"):
        checkpoints.choose(tmp_path, str(tmp_path / "nope.safetensors"))


def _listed_mean(run_dir: Path) -> dict[str, torch.Tensor]:
    members = [load_file(str(c.weights)) for c in checkpoints.best(run_dir)]
    return {key: sum(m[key] for m in members) / len(members) for key in members[0]}


def test_the_average_is_the_mean_of_the_best_lists_weights_as_the_list_changes(tmp_path):
    board = BestK(3)
    torch.manual_seed(0)
    for step, score in [(10, 0.9), (20, 0.1), (30, 1.2), (40, 0.2), (50, 0.3), (60, 1.0)]:
        board.record(step, score)
        checkpoints.save(tmp_path, nn.Linear(3, 2), {}, ["A"], step, {"step": step}, best=board.best)
        chosen, note = checkpoints.choose(tmp_path, "average")
        if len(board.best) < 2:
            assert chosen.step == 10 and "no weight average" in note
            continue
        average = load_file(str(chosen.weights))
        expected = _listed_mean(tmp_path)
        assert average.keys() == expected.keys()
        assert all(torch.allclose(average[k], expected[k], atol=1e-7) for k in average)
        steps = [c.step for c in checkpoints.best(tmp_path)]
        assert chosen.step == max(steps) and all(f"{s:,}" in note for s in steps)
    assert [c.step for c in checkpoints.best(tmp_path)] == [30, 60, 10]
    policy = nn.Linear(3, 2)
    checkpoints.load_weights(checkpoints.choose(tmp_path, "average")[0], policy)  # loads like any checkpoint
    assert torch.allclose(policy.weight, _listed_mean(tmp_path)["weight"])


def test_resume_repointing_rewrites_the_average_of_the_surviving_best_checkpoints(tmp_path):
    torch.manual_seed(1)
    scores = [(10, 0.5), (20, 0.9), (30, 0.7)]
    for step, _ in scores:
        checkpoints.save(tmp_path, nn.Linear(3, 2), {}, ["A"], step, {"step": step},
                         best=[Scored(s, v) for s, v in sorted(scores, key=lambda x: -x[1]) if s <= step])
    listed = checkpoints.best(tmp_path)
    assert [c.step for c in listed] == [20, 30, 10]
    listed[1].weights.write_bytes(listed[1].weights.read_bytes()[:20])  # step 30 (the newest) truncated
    checkpoint, _, notes = checkpoints.resume_point(tmp_path)
    assert checkpoint.step == 20 and notes
    assert [c.step for c in checkpoints.best(tmp_path)] == [20, 10]
    chosen, _ = checkpoints.choose(tmp_path, "average")
    average = load_file(str(chosen.weights))
    assert chosen.step == 20
    assert all(torch.allclose(average[k], v) for k, v in _listed_mean(tmp_path).items())


# ---- the validation policy ------------------------------------------------------------------------
def test_state_dict_for_a_subset_of_symbols_gives_those_symbols_the_same_outputs():
    config = PolicyConfig(encoder=EncoderConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, out_dim=16,
                                                pool="mean"),
                          actor_hidden=(8,), critic_hidden=(8,))
    torch.manual_seed(0)
    full = MultiSymbolPolicy(["A", "B", "C"], config, DEFAULT_SPEC).eval()
    subset = MultiSymbolPolicy(["C", "A"], config, DEFAULT_SPEC).eval()
    subset.load_state_dict(full.state_dict_for(["C", "A"]))
    obs = {k: torch.randn(6, *shape) for k, shape in DEFAULT_SPEC.obs_shapes.items()}  # (S=3, E=2) rows
    with torch.no_grad():
        logits, values = full(obs)
        picked = torch.tensor([4, 5, 0, 1])  # C's rows, then A's
        sub_logits, sub_values = subset({k: v[picked] for k, v in obs.items()})
    torch.testing.assert_close(sub_logits, logits[picked])
    torch.testing.assert_close(sub_values, values[picked])
    with pytest.raises(ValueError, match="no head"):
        full.state_dict_for(["D"])


# ---- real tiny runs -------------------------------------------------------------------------------
def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_validation_writes_scalars_keeps_the_top_k_and_evaluate_picks_the_best(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(tiny_args(run_dir, 4) + EVERY_ITERATION + ["--set", "run.keep_best=2"]) == 0
    out = capsys.readouterr().out
    assert "validation at step" in out and "val sharpe" in out
    values = scalars(run_dir)
    for symbol in ("SPX", "GOOGL"):
        for metric in ("return", "sharpe", "max_drawdown", "trades", "exposure"):
            assert len(values[f"val/{symbol}/{metric}"]) == 4
    means = values["val/mean_sharpe"]
    assert [step for step, _ in means] == [BATCH * i for i in range(1, 5)]
    np.testing.assert_allclose([v for _, v in means],
                               [np.mean([values[f"val/{s}/sharpe"][i][1] for s in ("SPX", "GOOGL")])
                                for i in range(4)], rtol=1e-5)
    # the best list is the top two of the four validations (TensorBoard holds float32 copies)
    top = sorted(means, key=lambda m: -m[1])[:2]
    listed = checkpoints.best(run_dir)
    assert [c.step for c in listed] == [step for step, _ in top]
    np.testing.assert_allclose([c.val_sharpe for c in listed], [v for _, v in top], rtol=1e-6)

    # evaluate trades the best two's weight average by default; --checkpoint best the top one, whose
    # greedy val Sharpe is the validation's
    assert evaluate_main(["--run-dir", str(run_dir), "--split", "val", "--device", "cpu"]) == 0
    steps = ", ".join(f"{c.step:,}" for c in listed)
    assert f"weight average of the 2 best by mean validation Sharpe (steps {steps}" in capsys.readouterr().out
    report = json.loads((run_dir / "evaluation_val.json").read_text())
    assert report["checkpoint"]["choice"] == "average"
    assert evaluate_main(["--run-dir", str(run_dir), "--split", "val", "--device", "cpu", "--checkpoint", "best"]) == 0
    assert f"best of 2 by mean validation Sharpe, step {listed[0].step:,}" in capsys.readouterr().out
    report = json.loads((run_dir / "evaluation_val.json").read_text())
    assert report["checkpoint"]["step"] == listed[0].step and report["checkpoint"]["choice"] == "best"
    greedy = np.mean([rows["agent (greedy)"]["sharpe_annualised"] for rows in report["results"].values()])
    assert greedy == pytest.approx(listed[0].val_sharpe, abs=1e-9)
    assert evaluate_main(["--run-dir", str(run_dir), "--checkpoint", "latest", "--device", "cpu"]) == 0
    latest = json.loads((run_dir / "evaluation.json").read_text())["checkpoint"]
    assert latest["step"] == 4 * BATCH and latest["choice"] == "latest"
    # the test split's evaluation did not overwrite the val split's, nor its tear sheet
    assert json.loads((run_dir / "evaluation_val.json").read_text())["split"] == "val"
    assert {p.name for p in run_dir.glob("report_*.html")} == {"report_val.html", "report_test.html"}

    # resume keeps competing against the earlier bests
    assert main(["--resume", str(run_dir), "--total-steps", str(6 * BATCH)]) == 0
    means = scalars(run_dir)["val/mean_sharpe"]
    assert len(means) == 6
    top = sorted(means, key=lambda m: -m[1])[:2]
    assert [c.step for c in checkpoints.best(run_dir)] == [step for step, _ in top]


@pytest.mark.slow
def test_validation_leaves_training_exactly_as_it_was(tmp_path):
    plain, validated = tmp_path / "plain", tmp_path / "validated"
    assert main(tiny_args(plain, 3) + ["--set", "run.eval_every=0"]) == 0
    assert main(tiny_args(validated, 3) + EVERY_ITERATION) == 0
    a = load_file(checkpoints.latest(plain).weights)
    b = load_file(checkpoints.latest(validated).weights)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert checkpoints.best(plain) == [] and len(checkpoints.best(validated)) == 3


@pytest.mark.slow
def test_early_stop_writes_its_reason_and_trains_on_only_with_a_larger_budget(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # any Sharpe reaches -100: the first validation stops the run
    args = tiny_args(run_dir, 4) + EVERY_ITERATION + ["--set", "run.early_stop_target_sharpe=-100"]
    assert main(args) == 0
    assert "early stop at step" in capsys.readouterr().out
    stopped = json.loads((run_dir / STOPPED_FILE).read_text())
    assert stopped["step"] == BATCH and stopped["total_steps"] == 4 * BATCH
    assert "reached run.early_stop_target_sharpe" in stopped["reason"]
    assert stopped["best_step"] == BATCH and checkpoints.latest(run_dir).step == BATCH
    assert scalars(run_dir)["val/mean_sharpe"][0][0] == BATCH

    # the same budget: stays stopped, trains nothing
    assert main(["--resume", str(run_dir)]) == 0
    assert "was stopped early" in capsys.readouterr().out
    assert checkpoints.latest(run_dir).step == BATCH
    # a larger budget (and no target now): trains on to the end, the stop record goes
    assert main(["--resume", str(run_dir), "--total-steps", str(5 * BATCH),
                 "--set", "run.early_stop_target_sharpe=inf"]) == 0
    assert "training on past the early stop" in capsys.readouterr().out
    assert checkpoints.latest(run_dir).step == 5 * BATCH and not (run_dir / STOPPED_FILE).exists()


@pytest.mark.slow
def test_patience_resume_continues_the_count(tmp_path):
    """Evaluations since the last improvement are trainer state: an interrupted run resumed
    stops at the same validation as an uninterrupted one."""
    patience = ["--set", "run.early_stop_patience=2", "--set", "run.early_stop_min_delta=100"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(tiny_args(straight, 6) + EVERY_ITERATION + patience) == 0
    # a gain of more than 100 never comes: validations 2 and 3 are the two without one
    assert json.loads((straight / STOPPED_FILE).read_text())["step"] == 3 * BATCH
    assert main(tiny_args(interrupted, 2) + EVERY_ITERATION + patience) == 0
    assert not (interrupted / STOPPED_FILE).exists()
    assert main(["--resume", str(interrupted), "--total-steps", str(6 * BATCH)]) == 0
    assert json.loads((interrupted / STOPPED_FILE).read_text())["step"] == 3 * BATCH


@pytest.mark.slow
def test_a_symbol_without_validation_bars_is_skipped(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "SPX.parquet").write_bytes((ROOT / "data" / "SPX.parquet").read_bytes())
    googl = pq.read_table(ROOT / "data" / "GOOGL.parquet")
    pq.write_table(googl.slice(0, 800), data / "GOOGL.parquet")  # ends in 2012: no val or test bars
    # given dates (derived ones would move into the period both trade and give GOOGL val bars)
    args = [*tiny_args(tmp_path / "run", 1), *EVERY_ITERATION,
            "--set", "env.split_dates=['2013-01-03', '2015-12-31']"]
    args[args.index("--data-dir") + 1] = str(data)
    config, run_dir, _ = resolve_run(build_parser().parse_args(args))
    session = open_session(config, run_dir)
    try:
        assert session.validator is not None and session.validator.symbols == ["SPX"]
        assert "validation skips GOOGL" in capsys.readouterr().out
        assert train(session) == 0
    finally:
        session.close()
    values = scalars(tmp_path / "run")
    assert "val/SPX/sharpe" in values and not any(tag.startswith("val/GOOGL") for tag in values)
    assert values["val/mean_sharpe"] == values["val/SPX/sharpe"]

