"""Rollout storage preallocated on the device, time-first (T, N, ...), and minibatch sampling.

An observation key may be stored compactly: a `CompactObservation` gives small integer references
to the env's current observation of that key (e.g. a bar index and a noise offset instead of a
lookback window) and rebuilds the observation from them when a minibatch is drawn, so the buffer's
size does not grow with the window.

Minibatches either shuffle all T x N samples, or keep a group-major layout: the N envs form G
equal consecutive groups (env n belongs to group n // (N / G)), and every minibatch holds an equal
share of every group, laid out group-major so a grouped policy can view it as (G, b, ...) (the
trainer's groups are its symbols: docs/design.md, "Account layout").
"""
from __future__ import annotations

from typing import Iterator, Mapping, NamedTuple, Protocol

import torch
from einops import rearrange
from torch import Tensor


class Minibatch(NamedTuple):
    """One minibatch of B flattened samples; with groups, B = S x b rows laid out group-major."""

    obs: dict[str, Tensor]
    """observations, each (B, *shape)"""
    actions: Tensor
    """(B,) long"""
    logprobs: Tensor
    """(B,) log-probabilities of `actions` under the rollout policy"""
    values: Tensor
    """(B,) critic values at rollout time"""
    advantages: Tensor
    """(B,) GAE advantages"""
    returns: Tensor
    """(B,) value targets (advantages + values)"""
    masks: Tensor | None
    """(B, A) bool action masks, or None when the buffer stores none"""


class CompactObservation(Protocol):
    """One observation key kept as references into data the env already holds."""

    ref_width: int
    """int64 references per sample"""

    def refs(self) -> Tensor:
        """(N, ref_width) int64 references of the env's current observation of this key."""
        ...

    def expand(self, refs: Tensor) -> Tensor:
        """(B, ref_width) references -> (B, *shape) float32 observations, exactly as the env gave them."""
        ...


class RolloutBuffer:
    """Fixed-size (T, N, ...) storage for one rollout; every write is an in-place `copy_`.

    `compact` maps observation keys to `CompactObservation`s: those keys are stored as (T, N, W)
    int64 references read from the env when a step is stored (so `store_policy` must be called
    with the env's current observation) and rebuilt in `minibatches` and `step_obs`.
    """

    def __init__(self, num_steps: int, num_envs: int, obs_shapes: dict[str, tuple[int, ...]],
                 device: torch.device | str, num_actions: int | None = None,
                 compact: dict[str, CompactObservation] | None = None) -> None:
        if num_steps < 1 or num_envs < 1:
            raise ValueError(f"num_steps and num_envs must be >= 1, got {num_steps} and {num_envs}")
        if not obs_shapes:
            raise ValueError("obs_shapes: at least one observation key is required")
        self.compact = dict(compact or {})
        unknown = sorted(set(self.compact) - set(obs_shapes))
        if unknown:
            raise KeyError(f"compact: {unknown} are not observation keys ({sorted(obs_shapes)})")
        self.num_steps, self.num_envs = num_steps, num_envs
        self.device = torch.device(device)
        self.obs_keys = tuple(obs_shapes)
        shape = (num_steps, num_envs)
        self.obs = {key: torch.zeros(shape + tuple(s), device=self.device)
                    for key, s in obs_shapes.items() if key not in self.compact}
        self.refs = {key: torch.zeros(shape + (codec.ref_width,), dtype=torch.long, device=self.device)
                     for key, codec in self.compact.items()}
        self.actions = torch.zeros(shape, dtype=torch.long, device=self.device)
        self.logprobs = torch.zeros(shape, device=self.device)
        self.values = torch.zeros(shape, device=self.device)
        self.rewards = torch.zeros(shape, device=self.device)
        self.dones = torch.zeros(shape, device=self.device)
        self.masks = (torch.ones(shape + (num_actions,), dtype=torch.bool, device=self.device)
                      if num_actions is not None else None)
        # Running raw return and length of each account's current episode. Episodes outlive a
        # rollout, so these carry over from one `collect_rollout` call to the next.
        self.episode_returns = torch.zeros(num_envs, device=self.device)
        self.episode_lengths = torch.zeros(num_envs, device=self.device)

    @property
    def batch_size(self) -> int:
        """T x N samples per rollout."""
        return self.num_steps * self.num_envs

    def insert(self, step: int, obs: dict[str, Tensor], actions: Tensor, logprobs: Tensor,
               values: Tensor, rewards: Tensor, dones: Tensor, masks: Tensor | None = None) -> None:
        """Copy one step's data into row `step`: obs values (N, *shape), the rest (N,), masks (N, A)."""
        self.store_policy(step, obs, actions, logprobs, values, masks)
        self.store_outcome(step, rewards, dones)

    def store_policy(self, step: int, obs: dict[str, Tensor], actions: Tensor, logprobs: Tensor,
                     values: Tensor, masks: Tensor | None = None) -> None:
        """The half of `insert` known before the env steps: obs, actions, log-probs, values, masks."""
        if obs.keys() != set(self.obs_keys):
            raise KeyError(f"obs keys {sorted(obs)} differ from the buffer's {sorted(self.obs_keys)}")
        for key, stored in self.obs.items():
            stored[step].copy_(obs[key])
        for key, codec in self.compact.items():
            self.refs[key][step].copy_(codec.refs())
        self.actions[step].copy_(actions)
        self.logprobs[step].copy_(logprobs)
        self.values[step].copy_(values)
        if masks is not None:
            if self.masks is None:
                raise ValueError("masks given but the buffer was built without num_actions")
            self.masks[step].copy_(masks)

    def store_outcome(self, step: int, rewards: Tensor, dones: Tensor) -> None:
        """The half of `insert` known after the env steps: rewards (N,) and dones (N,)."""
        self.rewards[step].copy_(rewards)
        self.dones[step].copy_(dones)

    def step_obs(self, step: int) -> Mapping[str, Tensor]:
        """Row `step`'s observations (N, *shape): views of stored keys; compact keys are rebuilt
        when read, so a reader that never touches them pays nothing."""
        return _StepObs(self, step)

    def nbytes(self) -> int:
        """Bytes of rollout storage (observations or their references, and the per-step vectors)."""
        tensors = [*self.obs.values(), *self.refs.values(), self.actions, self.logprobs, self.values,
                   self.rewards, self.dones, *([self.masks] if self.masks is not None else [])]
        return sum(t.numel() * t.element_size() for t in tensors)

    def minibatches(self, advantages: Tensor, returns: Tensor, num_minibatches: int,
                    num_groups: int | None = None,
                    generator: torch.Generator | None = None) -> Iterator[Minibatch]:
        """Yield `num_minibatches` minibatches covering every (T, N) sample exactly once.

        advantages, returns: (T, N). With `num_groups` = S, each minibatch holds B / S samples of
        every group, group 0's rows first. `generator` drives the shuffle (its own device).
        """
        expected = (self.num_steps, self.num_envs)
        for name, tensor in (("advantages", advantages), ("returns", returns)):
            if tuple(tensor.shape) != expected:
                raise ValueError(f"{name}: expected shape {expected} (T, N), got {tuple(tensor.shape)}")
        indices = self._shuffled_indices(num_minibatches, num_groups, generator)  # (M, B)
        b_obs = {key: value.flatten(0, 1) for key, value in self.obs.items()}  # (T*N, ...) views
        b_refs = {key: value.flatten(0, 1) for key, value in self.refs.items()}
        b_masks = self.masks.flatten(0, 1) if self.masks is not None else None
        flat = [t.flatten() for t in (self.actions, self.logprobs, self.values, advantages, returns)]
        for mb_inds in indices:
            actions, logprobs, values, mb_advantages, mb_returns = (t.index_select(0, mb_inds) for t in flat)
            obs = {key: value.index_select(0, mb_inds) for key, value in b_obs.items()}
            obs.update({key: self.compact[key].expand(refs.index_select(0, mb_inds))
                        for key, refs in b_refs.items()})
            yield Minibatch(
                obs={key: obs[key] for key in self.obs_keys},
                actions=actions, logprobs=logprobs, values=values, advantages=mb_advantages,
                returns=mb_returns,
                masks=b_masks.index_select(0, mb_inds) if b_masks is not None else None,
            )

    def _shuffled_indices(self, num_minibatches: int, num_groups: int | None,
                          generator: torch.Generator | None) -> Tensor:
        """(M, B) flat sample indices t * N + n; one row per minibatch."""
        T, N = self.num_steps, self.num_envs
        if num_minibatches < 1:
            raise ValueError(f"num_minibatches: must be >= 1, got {num_minibatches}")
        rng_device = generator.device if generator is not None else torch.device("cpu")
        if num_groups is None:
            if (T * N) % num_minibatches:
                raise ValueError(f"num_minibatches ({num_minibatches}) must divide the batch "
                                 f"T x N = {T} x {N} = {T * N}")
            perm = torch.randperm(T * N, generator=generator, device=rng_device)
            return perm.to(self.device).view(num_minibatches, -1)
        if num_groups < 1 or N % num_groups:
            raise ValueError(f"num_groups ({num_groups}) must divide the number of accounts N = {N} "
                             "(envs are group-major: N = G x E)")
        E = N // num_groups
        if (T * E) % num_minibatches:
            raise ValueError(f"num_minibatches ({num_minibatches}) must divide each group's share "
                             f"T x E = {T} x {E} = {T * E} so every minibatch holds equal shares")
        flat = torch.arange(T * N, device=self.device)
        per_group = rearrange(flat, "(t s e) -> s (t e)", s=num_groups, e=E)  # (S, T*E)
        # argsort of i.i.d. keys is an independent permutation per group in one op
        keys = torch.rand(per_group.shape, generator=generator, device=rng_device)
        order = keys.argsort(dim=1).to(self.device)
        shuffled = per_group.gather(1, order)  # (S, T*E)
        return rearrange(shuffled, "s (m b) -> m (s b)", m=num_minibatches)  # (M, S*b), group-major


class _StepObs(Mapping[str, Tensor]):
    """The observations of one stored step, compact keys rebuilt on access."""

    def __init__(self, buffer: RolloutBuffer, step: int) -> None:
        self._buffer, self._step = buffer, step

    def __getitem__(self, key: str) -> Tensor:
        buffer = self._buffer
        if key in buffer.compact:
            return buffer.compact[key].expand(buffer.refs[key][self._step])
        return buffer.obs[key][self._step]

    def __iter__(self) -> Iterator[str]:
        return iter(self._buffer.obs_keys)

    def __len__(self) -> int:
        return len(self._buffer.obs_keys)
