"""models.export / python -m trainers.export: the exported policy gives the eager policy's masked
logits and values on observations it was not traced with; a run's policy exports from the CLI."""
from __future__ import annotations

import pytest
import torch
from helpers import BATCH, tiny_args

from envs import DEFAULT_SPEC
from models import MultiSymbolPolicy, PolicyConfig
from models.export import export, random_inputs
from trainers.export import main as export_main
from trainers.ppo import main as train_main


def policy() -> MultiSymbolPolicy:
    torch.manual_seed(0)
    return MultiSymbolPolicy(["A", "B", "C"], PolicyConfig(), DEFAULT_SPEC)


def test_torchscript_matches_the_eager_policy_on_new_inputs(tmp_path):
    model = policy()
    diff = export(model, tmp_path / "p.pt", "torchscript", per_symbol=2)
    loaded = torch.jit.load(str(tmp_path / "p.pt"))
    obs, mask = random_inputs(model, 2, torch.Generator().manual_seed(7))
    obs = {k: v * 3.0 for k, v in obs.items()}  # other values than the trace and the check saw
    with torch.no_grad():
        logits, values = model(obs, mask)
        got_logits, got_values = loaded(*obs.values(), mask)
    assert diff < 1e-4
    torch.testing.assert_close(got_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_values, values, rtol=1e-5, atol=1e-5)
    assert (got_logits[~mask] < -1e30).all()  # masked actions stay masked


def test_onnx_matches_the_eager_policy(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason='the export extra (pip install -e ".[export]")')
    model = policy()
    assert export(model, tmp_path / "p.onnx", "onnx") < 1e-4
    obs, mask = random_inputs(model, 1, torch.Generator().manual_seed(3))
    session = onnxruntime.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"])
    feed = {**{k: v.numpy() for k, v in obs.items()}, "mask": mask.numpy()}
    logits, values = session.run(["logits", "values"], feed)
    with torch.no_grad():
        expected = model(obs, mask)
    torch.testing.assert_close(torch.from_numpy(logits), expected[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(values), expected[1], rtol=1e-4, atol=1e-4)


def test_an_unknown_format_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(ValueError, match="format"):
        export(policy(), tmp_path / "p.x", "tflite")
    assert not (tmp_path / "p.x").exists()


@pytest.mark.slow
def test_a_trained_run_exports_from_the_command_line(tmp_path, capsys):
    """The weight average (the default) and the best list exports like any checkpoint; the
    ensemble, several networks at run time, is refused with why and what to export instead."""
    run_dir = tmp_path / "run"
    assert train_main(tiny_args(run_dir, 2) + ["--set", f"run.eval_every={BATCH}", "--set", "run.keep_best=2"]) == 0
    capsys.readouterr()
    assert export_main(["--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "weight average of the 2 best" in out
    assert (run_dir / "policy.pt").is_file() and "max |diff| from the eager policy" in out
    with pytest.raises(SystemExit):
        export_main(["--run-dir", str(run_dir), "--checkpoint", "ensemble"])
    assert "export --checkpoint average" in capsys.readouterr().err
    assert export_main(["--run-dir", str(tmp_path / "missing")]) == 2
