"""models.PolicyEnsemble trades the mean of its members' action probabilities (masked actions stay
masked), and `trainers.evaluate --checkpoint ensemble` trades a run's best list as one policy."""
from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_args

from envs.spec import TradingSpec
from envs import EnvConfig
from models import MultiSymbolPolicy, PolicyConfig, PolicyEnsemble
from models.encoder import EncoderConfig
from trainers.evaluate import main as evaluate_main
from trainers.ppo import main as train_main


def small_policy(seed: int) -> MultiSymbolPolicy:
    torch.manual_seed(seed)
    config = PolicyConfig(encoder=EncoderConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, out_dim=16),
                          actor_hidden=(16,), critic_hidden=(16,))
    return MultiSymbolPolicy(["AAA", "BBB"], config, TradingSpec.from_config(EnvConfig())).eval()


def random_obs(spec: TradingSpec, n: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {k: torch.rand(n, *shape, generator=generator) for k, shape in spec.obs_shapes.items()}


def test_the_ensemble_trades_the_mean_of_its_members_probabilities():
    members = [small_policy(1), small_policy(2), small_policy(3)]
    spec = TradingSpec.from_config(EnvConfig())
    obs = random_obs(spec, 8)
    mask = torch.rand(8, spec.num_actions, generator=torch.Generator().manual_seed(1)) > 0.4
    mask[:, spec.hold_id] = True
    ensemble = PolicyEnsemble(members)
    with torch.no_grad():
        expected = torch.stack([m(obs, mask)[0].softmax(-1) for m in members]).mean(0)
        values = torch.stack([m(obs, mask)[1] for m in members]).mean(0)
        logits, value = ensemble(obs, mask)
    torch.testing.assert_close(logits.softmax(-1), expected)
    torch.testing.assert_close(value, values)
    assert (logits.softmax(-1)[~mask] == 0).all()
    action, _, _ = ensemble.act(obs, mask, deterministic=True)
    assert torch.equal(action, expected.argmax(-1)) and mask.gather(1, action[:, None]).all()
    single = PolicyEnsemble(members[:1])
    with torch.no_grad():
        torch.testing.assert_close(single(obs, mask)[0].softmax(-1), members[0](obs, mask)[0].softmax(-1))


@pytest.mark.slow
def test_evaluate_trades_the_best_list_as_one_policy(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert train_main(tiny_args(run_dir, 2) + ["--set", "run.eval_every=1", "--set", "run.keep_best=2"]) == 0
    capsys.readouterr()
    assert evaluate_main(["--run-dir", str(run_dir), "--checkpoint", "ensemble", "--device", "cpu"]) == 0
    assert "ensemble of the 2 best" in capsys.readouterr().out
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert len(report["checkpoint"]["members"]) == 2 and report["checkpoint"]["choice"] == "ensemble"
