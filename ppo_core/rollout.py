"""Collect T steps from a tensor vector env into a RolloutBuffer, bootstrapping truncations."""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from torch import Tensor

from ppo_core.buffer import RolloutBuffer
from ppo_core.learner import ActorCritic


class TensorVecEnv(Protocol):
    """A batch of N environments with tensor I/O on one device and auto-reset inside `step`.

    `step` returns the next episode's first obs for rows that ended, and info["final_obs"]
    (dict of (N, ...) tensors) with the finished episode's last obs in those rows. It may leave
    "final_obs" out on steps where it knows no episode ended (saves a critic forward). Optional:
    `action_masks() -> (N, A) bool` for the current observations.
    """

    num_envs: int

    def reset(self, seed: int | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
        ...

    def step(self, actions: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Any]]:
        """actions (N,) -> obs, reward (N,) float, terminated (N,) bool, truncated (N,) bool, info."""
        ...


class StepData(NamedTuple):
    """What one rollout step executed, passed to the `on_step` hook; tensors (N, ...)."""

    obs: Mapping[str, Tensor]
    """observations the actions were chosen on: read-only views of the buffer's row for this step
    (never the env's reused output memory, which already holds the next observation; a key the
    buffer stores compactly is rebuilt when read); valid until the buffer is refilled by the next
    rollout, so clone what must outlive it"""
    actions: Tensor
    logprobs: Tensor
    values: Tensor
    rewards: Tensor
    """raw env rewards (before the truncation bootstrap)"""
    terminated: Tensor
    truncated: Tensor
    masks: Tensor | None


class RolloutResult(NamedTuple):
    next_obs: dict[str, Tensor]
    """observations to start the next rollout from"""
    last_values: Tensor
    """(N,) critic values of next_obs, for GAE"""
    episode_returns: Tensor
    """(K,) raw returns of the K episodes that finished during this rollout"""
    episode_lengths: Tensor
    """(K,) their lengths in steps"""


def collect_rollout(env: TensorVecEnv, policy: ActorCritic, buffer: RolloutBuffer,
                    next_obs: dict[str, Tensor], gamma: float,
                    on_step: Callable[[int, dict[str, Any], StepData], None] | None = None,
                    reward_scale: Callable[[Tensor, Tensor], Tensor] | None = None) -> RolloutResult:
    """Fill `buffer` with T = buffer.num_steps steps of all N envs, starting from `next_obs`.

    `reward_scale(rewards, dones)` (e.g. a RewardNormalizer) rescales the rewards the learner sees;
    episode returns and `on_step` always get the raw rewards.

    Truncated-but-not-terminated steps get reward + gamma * V(final_obs) so GAE can treat every
    done as a cut. Runs under no_grad and leaves the policy's train/eval mode as the caller set
    it. The only host sync is reading the finished episodes' returns and lengths at the end.
    """
    T, N = buffer.num_steps, buffer.num_envs
    get_masks = getattr(env, "action_masks", None)
    finished_returns = torch.zeros(T, N, device=buffer.device)
    finished_lengths = torch.zeros(T, N, device=buffer.device)
    ended = torch.zeros(T, N, dtype=torch.bool, device=buffer.device)
    obs = next_obs
    with torch.no_grad():
        for t in range(T):
            masks = get_masks() if get_masks is not None else None
            actions, logprobs, values = policy.act(obs, masks)
            # Store before stepping: an env may write its next obs into the tensors it returned last.
            buffer.store_policy(t, obs, actions, logprobs, values, masks)
            obs, rewards, terminated, truncated, info = env.step(actions)
            dones = terminated | truncated

            buffer.episode_returns += rewards
            buffer.episode_lengths += 1
            finished_returns[t] = buffer.episode_returns
            finished_lengths[t] = buffer.episode_lengths
            ended[t] = dones
            buffer.episode_returns.masked_fill_(dones, 0.0)
            buffer.episode_lengths.masked_fill_(dones, 0.0)

            if on_step is not None:
                on_step(t, info, StepData(obs=buffer.step_obs(t), actions=actions, logprobs=logprobs, values=values,
                                          rewards=rewards, terminated=terminated, truncated=truncated,
                                          masks=masks))
            if reward_scale is not None:
                rewards = reward_scale(rewards, dones)
            if "final_obs" in info:
                bootstrap = truncated & ~terminated
                final_values = policy.value(info["final_obs"])
                rewards = torch.where(bootstrap, rewards + gamma * final_values, rewards)
            buffer.store_outcome(t, rewards, dones)
        last_values = policy.value(obs)
    # Host sync point: boolean indexing reads how many episodes ended, once per rollout.
    return RolloutResult(next_obs=obs, last_values=last_values, episode_returns=finished_returns[ended],
                         episode_lengths=finished_lengths[ended])


class GymVecAdapter:
    """A gymnasium.vector env (numpy I/O, autoreset_mode SAME_STEP) as a TensorVecEnv.

    Observations come out as {"obs": float32 (N, *obs_shape)} on `device`.
    """

    def __init__(self, env: gym.vector.VectorEnv, device: torch.device | str) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"GymVecAdapter needs autoreset_mode=AutoresetMode.SAME_STEP (so the final "
                             f"obs of an episode is available for bootstrapping), got {mode}")
        self.env, self.device = env, torch.device(device)
        self.num_envs = env.num_envs
        self.single_observation_space = env.single_observation_space
        self.single_action_space = env.single_action_space

    def _obs(self, obs: np.ndarray) -> dict[str, Tensor]:
        return {"obs": torch.as_tensor(obs, dtype=torch.float32, device=self.device)}

    def reset(self, seed: int | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
        obs, info = self.env.reset(seed=seed)
        return self._obs(obs), info

    def step(self, actions: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        info = dict(info)
        if "final_obs" in info:
            # final_obs is an object array with None in rows that did not end; fill those with 0
            rows = info["final_obs"]
            final = np.stack([row if row is not None else np.zeros_like(obs[i])
                              for i, row in enumerate(rows)])
            info["final_obs"] = self._obs(final)
        to = dict(device=self.device)
        return (self._obs(obs), torch.as_tensor(reward, dtype=torch.float32, **to),
                torch.as_tensor(terminated, **to), torch.as_tensor(truncated, **to), info)

    def close(self) -> None:
        self.env.close()
