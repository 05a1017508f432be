"""models.PolicyEnsemble trades the mean of its members' action probabilities (masked actions stay
masked). `trainers.evaluate --checkpoint ensemble` on a real run: tests/test_candidates.py."""
from __future__ import annotations

import torch

from envs.spec import TradingSpec
from envs import EnvConfig
from models import MultiSymbolPolicy, PolicyConfig, PolicyEnsemble
from models.encoder import EncoderConfig


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
