"""A single-account `gymnasium.Env` over VecTradingEnv, with numpy in and out, for users who bring
their own tooling (SB3-style masks: `info["action_mask"]`, or `env.action_masks()`)."""
from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.bars import Bars
from envs.config import EnvConfig
from envs.trading_env import VecTradingEnv


class SingleAccountEnv(gym.Env):
    """One account trading `symbol`. An ended episode returns its last observation; call reset().

    At an episode end `info["episode"]` is {"r": return, "l": steps, "t": seconds since its start},
    as gymnasium and SB3 expect; the env's own statistics go in `info["episode_stats"]`.
    """

    metadata = {"render_modes": []}

    def __init__(self, symbol: str = "SPX", config: EnvConfig | None = None, *, data_dir: str = "data",
                 split: str = "train", markets: dict[str, Bars] | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.vec = VecTradingEnv([symbol], 1, config, device, data_dir=data_dir, split=split,
                                 markets=markets, seed=0)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self._start_episode()

    def _start_episode(self) -> None:
        self._episode_return, self._episode_length, self._episode_start = 0.0, 0, time.perf_counter()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        # the vector env's generator follows np_random, so reset(seed=s) always gives the same start
        obs, _ = self.vec.reset(seed=int(self.np_random.integers(2**62)))
        self._start_episode()
        return _numpy(obs), {"action_mask": self.action_masks()}

    def step(self, action: int | np.integer
             ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action: expected an int in [0, {self.action_space.n}), got {action!r}")
        obs, reward, terminated, truncated, info = self.vec.step(torch.tensor([int(action)]))
        ended = bool(terminated[0] | truncated[0])
        self._episode_return += float(reward[0])
        self._episode_length += 1
        out = {
            "action_mask": self.action_masks(),
            "executed_action": int(info["executed_action"][0]),
            "mask_violation": bool(info["mask_violation"][0]),
            "repeat_limited": bool(info["repeat_limited"][0]),
            "equity": float(info["equity"][0]), "cost": float(info["cost"][0]),
            "reward_components": {k: float(v[0]) for k, v in info["reward_components"].items()},
        }
        if ended:
            out["episode"] = {"r": self._episode_return, "l": self._episode_length,
                              "t": round(time.perf_counter() - self._episode_start, 6)}
            out["episode_stats"] = {k: float(v[0]) for k, v in info["episode"].items()}
            # the vector env auto-resets: a caller that keeps stepping starts counting a new episode
            self._start_episode()
        return (_numpy(info["final_obs"] if ended else obs), float(reward[0]), bool(terminated[0]),
                bool(truncated[0]), out)

    def action_masks(self) -> np.ndarray:
        """Valid actions (A,) bool for the current observation."""
        return self.vec.action_masks()[0].cpu().numpy()


def _numpy(obs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: value[0].cpu().numpy().copy() for key, value in obs.items()}  # env reuses obs memory
