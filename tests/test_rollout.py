"""collect_rollout on a scripted tensor env: truncation bootstrap, masks, episode tallies."""
import gymnasium as gym
import pytest
import torch
from gymnasium.vector import AutoresetMode
from torch import nn

from ppo_core import GymVecAdapter, MLPActorCritic, RolloutBuffer, collect_rollout

N, A, T, GAMMA = 4, 3, 3, 0.9
# per step: which envs terminate / truncate (env 0 truncates only, env 1 both, env 2 terminates)
TERMINATED = [[False] * N, [False, True, True, False], [False] * N]
TRUNCATED = [[False] * N, [True, True, False, False], [False] * N]


class ScriptedEnv:
    """Obs row n at step t is (10 t + n, 0); reward t + 1; final obs rows (100 + n, 0).

    It writes each new obs into the tensor it returned last time, as an allocation-free env may.
    """

    num_envs = N

    def __init__(self):
        self.t = 0
        self.obs = {"obs": torch.zeros(N, 2)}

    def _fill(self):
        self.obs["obs"][:, 0] = 10 * self.t + torch.arange(N)
        return self.obs

    def reset(self, seed=None):
        self.t = 0
        return self._fill(), {}

    def action_masks(self):
        return torch.arange(A)[None, :] <= (self.t + torch.arange(N)[:, None]) % A

    def step(self, actions):
        info = {"final_obs": {"obs": torch.stack([100.0 + torch.arange(N), torch.zeros(N)], 1)}}
        term, trunc = torch.tensor(TERMINATED[self.t]), torch.tensor(TRUNCATED[self.t])
        reward = torch.full((N,), float(self.t + 1))
        self.t += 1
        return self._fill(), reward, term, trunc, info


class ValueIsFirstFeature(nn.Module):
    """A policy whose value is obs[:, 0], so bootstraps are easy to compute by hand."""

    def __init__(self):
        super().__init__()
        self.seen_masks = []

    def act(self, obs, action_mask=None):
        self.seen_masks.append(action_mask.clone())
        x = obs["obs"][:, 0]
        return torch.zeros(N, dtype=torch.long), torch.full((N,), -0.5), x.clone()

    def value(self, obs):
        return obs["obs"][:, 0].clone()


def run_scripted():
    env, policy = ScriptedEnv(), ValueIsFirstFeature()
    buf = RolloutBuffer(T, N, {"obs": (2,)}, "cpu", A)
    calls = []
    result = collect_rollout(env, policy, buf, env.reset()[0], GAMMA,
                             on_step=lambda t, info, step: calls.append((t, step.rewards.clone())))
    return buf, result, policy, calls


def test_truncation_bootstrap_only_for_truncated_not_terminated():
    buf, _, _, _ = run_scripted()
    expected = torch.full((T, N), 1.0) + torch.arange(T)[:, None]
    expected[1, 0] += GAMMA * 100.0  # env 0: truncated only -> + gamma * V(final_obs) = 0.9 * 100
    torch.testing.assert_close(buf.rewards, expected)
    torch.testing.assert_close(buf.dones, torch.tensor([[0.0] * N, [1.0, 1.0, 1.0, 0.0], [0.0] * N]))


def test_obs_masks_and_policy_outputs_are_stored_per_step():
    buf, result, policy, calls = run_scripted()
    for t in range(T):
        torch.testing.assert_close(buf.obs["obs"][t, :, 0], 10.0 * t + torch.arange(N))
        assert torch.equal(buf.masks[t], policy.seen_masks[t])
    assert not torch.equal(buf.masks[0], buf.masks[1])
    assert buf.logprobs.eq(-0.5).all()
    torch.testing.assert_close(result.last_values, 30.0 + torch.arange(N))
    # the hook sees raw rewards, before the bootstrap
    assert [t for t, _ in calls] == [0, 1, 2] and calls[1][1][0].item() == 2.0


def test_episode_returns_recorded_and_carried_across_rollouts():
    buf, result, _, _ = run_scripted()
    # envs 0, 1, 2 ended after step 1 with raw return 1 + 2 over 2 steps
    assert sorted(result.episode_returns.tolist()) == [3.0, 3.0, 3.0]
    assert result.episode_lengths.tolist() == [2.0, 2.0, 2.0]
    torch.testing.assert_close(buf.episode_returns, torch.tensor([3.0, 3.0, 3.0, 6.0]))
    torch.testing.assert_close(buf.episode_lengths, torch.tensor([1.0, 1.0, 1.0, 3.0]))


def cartpole(mode=AutoresetMode.SAME_STEP):
    return gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": mode})


def test_gym_adapter_runs_a_rollout_with_final_obs():
    torch.manual_seed(0)
    env = GymVecAdapter(cartpole(), "cpu")
    policy = MLPActorCritic(4, 2)
    buf = RolloutBuffer(64, 2, {"obs": (4,)}, "cpu")
    finals = []
    hook = lambda t, info, step: finals.append(info["final_obs"]["obs"]) if "final_obs" in info else None
    result = collect_rollout(env, policy, buf, env.reset(seed=0)[0], 0.99, on_step=hook)
    assert len(result.episode_returns) >= 1 and finals
    # CartPole's reward is 1 per step, so each episode's return equals its length
    torch.testing.assert_close(result.episode_returns, result.episode_lengths)
    assert all(f.shape == (2, 4) and f.dtype == torch.float32 for f in finals)
    assert result.last_values.shape == (2,)


def test_gym_adapter_rejects_next_step_autoreset():
    with pytest.raises(ValueError, match="SAME_STEP"):
        GymVecAdapter(cartpole(AutoresetMode.NEXT_STEP), "cpu")


def test_hooks_see_the_observation_acted_on_not_the_envs_reused_memory():
    """ScriptedEnv overwrites its last obs tensor in place on every step; the hook must still get
    the observation each step's action was chosen on (the buffer's stored row)."""
    env, policy = ScriptedEnv(), ValueIsFirstFeature()
    buffer = RolloutBuffer(T, N, {"obs": (2,)}, "cpu", A)
    seen = []
    obs, _ = env.reset()
    collect_rollout(env, policy, buffer, obs, GAMMA,
                    on_step=lambda t, info, data: seen.append(data.obs["obs"][:, 0].clone()))
    for t, first_feature in enumerate(seen):
        torch.testing.assert_close(first_feature, 10.0 * t + torch.arange(N))
