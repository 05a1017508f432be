"""The PPO update: epochs x minibatches with AMP, gradient clipping and KL early stopping."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, NamedTuple, Protocol

import torch
from torch import Tensor, nn

from ppo_core.anchor import KLAnchor
from ppo_core.buffer import Minibatch, RolloutBuffer
from ppo_core.device import auto_amp
from ppo_core.loss import explained_variance, ppo_loss
from ppo_core.schedules import scheduled


class NonFiniteLossError(RuntimeError):
    """The PPO loss (or an unscaled gradient norm) became NaN or infinite during an update."""


@dataclass
class PPOConfig:
    """The PPO update. The defaults are the trading trainer's, measured with bench/learning.py;
    "guide:" gives the training guide's Stage 5 value where it differs (configs/seed_stage5.toml;
    docs/design.md, "The seed and the training guide").
    Generic users pass their own: bench/cartpole.py's presets hold CleanRL's and RL Zoo's."""

    learning_rate: float = 1e-3
    """Adam learning rate at the start of training (guide: 3e-4 constant; 1e-3 annealed learns in
    300k steps)"""
    lr_schedule: Literal["constant", "linear"] = "linear"
    """constant, or linear annealing to 0 at the end of training (CleanRL)"""
    num_minibatches: int = 16
    """minibatches per epoch; must divide the rollout (and each group's share of it) (guide:
    minibatches of 64 samples per agent; the default run's 2 x 16 x 128 samples make 16 of 256)"""
    minibatch_size: int = 0
    """samples per group (the trainer's symbol) in each minibatch; > 0 replaces num_minibatches by the group's
    share of the rollout / minibatch_size (the seed sizes minibatches per agent: 64)"""
    update_epochs: int = 4
    """passes over the rollout per update (fewer when KL early stopping fires) (guide: 10, with
    2048-step rollouts)"""
    clip_coef: float = 0.2
    """PPO ratio clip range epsilon; also the value-change clip range when clip_vloss is on"""
    clip_schedule: Literal["constant", "linear"] = "constant"
    """constant, or linear annealing of clip_coef to 0 at the end of training"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values (CleanRL / PPO2 style)"""
    vf_coef: float = 0.5
    """weight of the value loss in the total loss"""
    max_grad_norm: float = 0.5
    """global L2 norm gradients are clipped to before each optimizer step"""
    target_kl: float = 0.015
    """stop the epoch loop once an epoch's mean approx KL exceeds this; <= 0 disables"""
    norm_adv: bool = True
    """standardise advantages within each minibatch"""
    norm_adv_per_group: bool = True
    """with norm_adv and grouped minibatches: standardise each group's advantages on its
    own, so one group's reward scale (a symbol's, in the trainer) does not set another's step size;
    minibatches with a single sample per group are standardised whole (guide: false, one
    standardisation per minibatch; per symbol, the lowest seed's share of the oracle rose on the
    weak generated markets, docs/results.md, Seed robustness)"""
    gamma: float = 0.5
    """discount factor (guide: 0.99; the edge in a bar lasts a bar or two, longer horizons add
    noise)"""
    gae_lambda: float = 0.9
    """GAE lambda: 0 = one-step TD, 1 = Monte Carlo (guide: 0.95)"""
    adam_eps: float = 1e-5
    """Adam epsilon (CleanRL's 1e-5 rather than PyTorch's 1e-8)"""
    weight_decay: float = 0.5
    """decoupled (AdamW-style) weight decay on every parameter: each optimizer step shrinks the
    weights by learning rate x weight_decay; 0 = plain Adam (guide: 0, plain Adam; without it
    validation peaked early and fell as the policy memorised the training bars, and which seed
    generalised was luck: docs/results.md, Seed robustness)"""
    decay: Literal["all", "matrices"] = "all"
    """which parameters weight_decay shrinks: all of them, or only weight matrices (2-D and up:
    linear and attention weights, embeddings), leaving biases and LayerNorm gains alone as nanoGPT
    and most transformer recipes do; all is the default because here the decay regularises against
    memorising the training bars (docs/design.md, Departures)"""
    amp: Literal["auto", "fp16", "bf16", "off"] = "auto"
    """mixed precision of the update: auto = fp16 (with GradScaler) on CUDA, bf16 on a CPU with
    native bf16 (AVX512-BF16 or AMX), off elsewhere; bf16 needs no scaler. With either, the old
    log-probabilities are recomputed at the update's precision before its first step"""
    normalize_rewards: bool = True
    """divide rewards by the running std of the discounted return (ppo_core.RewardNormalizer)
    (guide: off)"""
    kl_anchor: float = 0.0
    """experimental: add kl_anchor x KL(initial policy || current policy) to the loss, the weight
    decaying linearly to 0 over kl_anchor_steps env steps (ppo_core.anchor); 0 = off. While on,
    each minibatch runs the reference policy and the current one's full distribution (about 2x
    the update's forward cost)"""
    kl_anchor_steps: int = 0
    """env steps (account-steps) over which the KL anchor decays to 0; needed when kl_anchor > 0"""

    def __post_init__(self) -> None:
        positive = ("learning_rate", "clip_coef", "max_grad_norm", "adam_eps")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("num_minibatches", "update_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {getattr(self, name)}")
        if self.minibatch_size < 0:
            raise ValueError(f"minibatch_size: must be >= 0 (0 = use num_minibatches), "
                             f"got {self.minibatch_size}")
        for name in ("vf_coef", "weight_decay"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        choices = {"lr_schedule": ("constant", "linear"), "clip_schedule": ("constant", "linear"),
                   "amp": ("auto", "fp16", "bf16", "off"), "decay": ("all", "matrices")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: must be one of {allowed}, got {getattr(self, name)!r}")
        if not self.kl_anchor >= 0:
            raise ValueError(f"kl_anchor: must be >= 0 (0 = off), got {self.kl_anchor}")
        if self.kl_anchor > 0 and self.kl_anchor_steps < 1:
            raise ValueError(f"kl_anchor_steps: must be >= 1 env steps when kl_anchor > 0, got {self.kl_anchor_steps}")
        if math.isnan(self.target_kl):
            raise ValueError("target_kl: must be a number (<= 0 disables early stopping), got nan")


class ActorCritic(Protocol):
    """What the collector and learner need from a policy (an nn.Module); outputs are (B,)."""

    def act(self, obs: dict[str, Tensor], action_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Sample actions: (action long, logprob, value)."""
        ...

    def evaluate(self, obs: dict[str, Tensor], actions: Tensor,
                 action_mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(logprob of `actions`, entropy, value), differentiable."""
        ...

    def value(self, obs: dict[str, Tensor]) -> Tensor:
        """Critic values."""
        ...

    def log_probs(self, obs: dict[str, Tensor], action_mask: Tensor | None) -> Tensor:
        """(B, A) log-probabilities of every action, differentiable (only the KL anchor calls it)."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        ...


class StepMetrics(NamedTuple):
    """What one optimizer step measures: `PPOLearner._step` returns them as device scalars (0-d
    tensors), `update` stacks each step's once, sums them and reports each field's mean over the
    steps that ran (logged as `losses/<field>`). A new metric is one field here and its value in
    `_step`; `read` returns the same record with floats."""

    policy_loss: Tensor | float
    value_loss: Tensor | float
    entropy: Tensor | float
    """mean policy entropy (nats): what the entropy stack observes"""
    approx_kl: Tensor | float
    clip_fraction: Tensor | float
    grad_norm: Tensor | float
    """pre-clip global gradient norm; its mean is over the steps with finite gradients"""
    clipped_share: Tensor | float
    """1 when the gradient norm exceeded max_grad_norm: its mean is the share of such steps"""
    finite_share: Tensor | float
    """1 when the step's gradients were finite (0: the fp16 GradScaler skipped the step)"""
    anchor_kl: Tensor | float
    """KL(initial policy || current) while the KL anchor is on, else 0"""


class UpdateStats(NamedTuple):
    """One update's metrics: device tensors until `read()`, which returns the same record with
    host floats (one sync for all of them)."""

    steps: StepMetrics
    """means over the optimizer steps that ran"""
    explained_variance: Tensor | float
    """of the rollout's values against the GAE returns"""
    skipped_steps: Tensor | float
    """optimizer steps the fp16 GradScaler skipped for inf/NaN gradients"""
    epochs_run: int
    stopped_early: bool
    """True when KL early stopping skipped the epochs after `epochs_run`"""
    learning_rate: float
    clip_coef: float
    anchor_coef: float
    """the KL anchor's weight in this update (0 when off or decayed)"""

    def read(self) -> UpdateStats:
        """This record with host floats. A host sync point (one read for all tensors)."""
        tensors = [*self.steps, self.explained_variance, self.skipped_steps]
        values = torch.stack([torch.as_tensor(t).float() for t in tensors]).tolist()
        width = len(StepMetrics._fields)
        return self._replace(steps=StepMetrics(*values[:width]), explained_variance=values[width],
                             skipped_steps=values[width + 1])

    def scalars(self) -> dict[str, float]:
        """`losses/<name>` floats for TensorBoard, of a record that was `read()`."""
        flat = {**self.steps._asdict(), **{k: v for k, v in self._asdict().items() if k != "steps"}}
        return {f"losses/{name}": float(value) for name, value in flat.items()}


_CHECKED = ("policy_loss", "value_loss", "entropy", "grad_norm")
_CHECKED_ROWS = [StepMetrics._fields.index(name) for name in _CHECKED]
_KL = StepMetrics._fields.index("approx_kl")


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device`, or None for full precision."""
    if amp == "auto":
        amp = auto_amp(device)
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "off": None}[amp]


def fused_adam_supported(device: torch.device) -> bool:
    """Whether torch has a fused Adam kernel for `device` (CPU and CUDA do)."""
    return device.type in ("cpu", "cuda")


def parameter_groups(params: list[nn.Parameter], config: PPOConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one, decayed by config.weight_decay, or with decay =
    "matrices" the 2-D and larger tensors decayed and the rest (biases, norm gains) not."""
    if config.decay == "all":
        return [{"params": params}]
    return [{"params": [p for p in params if p.dim() >= 2]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def average_gradients(params: list[nn.Parameter], sync: Callable[[Tensor], None]) -> None:
    """Average the gradients over processes with one `sync` of their concatenation. Under fp16
    they are still scaled: every process has the same GradScaler scale and an inf anywhere reaches
    all of them, so all skip the same steps. A missing gradient counts as zeros, so a parameter that
    one process did not use still steps the same everywhere."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])  # (sum of parameter sizes,)
    sync(flat)
    for param, chunk in zip(params, flat.split([g.numel() for g in grads])):
        param.grad = chunk.view_as(param)


class PPOLearner:
    """Owns the optimizer and GradScaler and runs PPO updates on a filled RolloutBuffer.

    `sync`, for data-parallel training, averages a tensor in place over the processes (e.g.
    a data-parallel World's mean_). With it each minibatch's gradients are averaged before
    clipping, and each epoch's metrics before the KL early-stop decision and the non-finite check,
    so every process takes the same steps and stops at the same epoch; None: a single process.
    """

    def __init__(self, policy: ActorCritic, config: PPOConfig, device: torch.device | str,
                 sync: Callable[[Tensor], None] | None = None,
                 recompute_old_logprobs: bool | None = None) -> None:
        self.policy, self.config, self.device = policy, config, torch.device(device)
        self.sync = sync
        self.amp_dtype = resolve_amp(config.amp, self.device)
        self.recompute_old_logprobs = self.amp_dtype is not None if recompute_old_logprobs is None \
            else recompute_old_logprobs
        """recompute the rollout's log-probabilities with the update's own forward before its first
        step, so that the first minibatch's ratio is exactly 1: on by default under AMP (the rollout
        ran in float32); the trainer also turns it on when the update's forward is compiled"""
        self.params = [p for p in policy.parameters() if p.requires_grad]
        # fused: one kernel for every parameter, and under fp16 the GradScaler hands it found_inf
        # as a tensor (the step skips itself on device) instead of reading it on the host each step
        self.optimizer = torch.optim.Adam(parameter_groups(self.params, config), lr=config.learning_rate,
                                          eps=config.adam_eps, weight_decay=config.weight_decay,
                                          decoupled_weight_decay=True, fused=fused_adam_supported(self.device))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.anchor = KLAnchor(config.kl_anchor, config.kl_anchor_steps) if config.kl_anchor > 0 else None
        """set when config.kl_anchor > 0; its reference is captured by the caller once the starting
        weights are in place (`anchor.capture(policy)`) or restored by load_state_dict"""

    def update(self, buffer: RolloutBuffer, advantages: Tensor, returns: Tensor, *, ent_coef: float,
               progress: float, num_groups: int | None = None,
               generator: torch.Generator | None = None, anchor_coef: float = 0.0) -> UpdateStats:
        """Run up to `update_epochs` epochs of minibatch PPO on the buffer's (T, N) rollout.

        `progress` in [0, 1] drives the lr and clip schedules. After each epoch the epoch's mean
        approx KL is read once (with the non-finite check); the loop stops when it exceeds
        target_kl. `anchor_coef` > 0 adds that x the KL anchor's divergence to every minibatch's
        loss (needs `self.anchor` captured). Raises NonFiniteLossError naming the non-finite quantity; the policy may then
        hold non-finite weights, so the caller should fall back to its last checkpoint.
        """
        cfg = self.config
        lr = scheduled(cfg.learning_rate, cfg.lr_schedule, progress)
        clip_coef = scheduled(cfg.clip_coef, cfg.clip_schedule, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        totals = torch.zeros(len(StepMetrics._fields), device=self.device)
        per_epoch = self.minibatches_per_epoch(buffer.batch_size, num_groups)
        num_minibatches, epochs_run, stopped_early = 0, 0, False
        for epoch in range(cfg.update_epochs):
            epoch_totals = torch.zeros_like(totals)
            if epoch == 0 and self.recompute_old_logprobs:
                minibatches = self._with_current_logprobs(
                    lambda: buffer.minibatches(advantages, returns, per_epoch, num_groups, generator), generator)
            else:
                minibatches = buffer.minibatches(advantages, returns, per_epoch, num_groups, generator)
            for mb in minibatches:
                epoch_totals += torch.stack(self._step(mb, ent_coef, clip_coef, num_groups, anchor_coef))
            if self.sync is not None:
                self.sync(epoch_totals)  # every process reads the same KL and stops together
            totals += epoch_totals
            num_minibatches += per_epoch
            epochs_run += 1
            checks = torch.cat([epoch_totals[_KL:_KL + 1] / per_epoch,
                                epoch_totals[_CHECKED_ROWS].isfinite().float()])
            kl, *finite = checks.tolist()  # host sync point, once per epoch: NaN check + KL stop
            self._raise_if_non_finite(finite, epoch)
            if cfg.target_kl > 0 and kl > cfg.target_kl:
                stopped_early = epoch + 1 < cfg.update_epochs
                break
        sums = StepMetrics(*totals)
        finite_steps = sums.finite_share
        means = StepMetrics(*(totals / num_minibatches))._replace(grad_norm=sums.grad_norm / finite_steps.clamp(min=1))
        ev = explained_variance(buffer.values, returns)
        if self.sync is not None:
            self.sync(ev)
        return UpdateStats(steps=means, explained_variance=ev, skipped_steps=num_minibatches - finite_steps,
                           epochs_run=epochs_run, stopped_early=stopped_early, learning_rate=lr,
                           clip_coef=clip_coef, anchor_coef=anchor_coef)

    def minibatches_per_epoch(self, batch_size: int, num_groups: int | None) -> int:
        """num_minibatches, or each group's share of `batch_size` samples / minibatch_size."""
        size = self.config.minibatch_size
        if not size:
            return self.config.num_minibatches
        share = batch_size // (num_groups or 1)
        if share % size:
            raise ValueError(f"ppo.minibatch_size ({size}) must divide each group's share of the rollout "
                             f"({share} samples = num_steps x envs per group)")
        return share // size

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None)

    def _with_current_logprobs(self, minibatches: Callable[[], Iterator[Minibatch]],
                               generator: torch.Generator | None) -> Iterator[Minibatch]:
        """The first epoch's minibatches with their old log-probabilities replaced by what the
        update's own forward (same rows, precision, grad mode and compiled graph) gives before any
        step: the first minibatch then sees a ratio of exactly 1, the rest the true ratio to the
        policy that collected the rollout, at the update's precision. One extra forward pass; the
        shuffle is drawn twice from the same generator state, so both passes see the same rows."""
        generator = generator if generator is not None else torch.default_generator
        state = generator.get_state()
        fresh = []
        for mb in minibatches():
            with self._autocast():
                fresh.append(self.policy.evaluate(mb.obs, mb.actions, mb.masks)[0].detach().float())  # (B,)
        generator.set_state(state)
        return (mb._replace(logprobs=logprob) for mb, logprob in zip(minibatches(), fresh))

    def _step(self, mb: Minibatch, ent_coef: float, clip_coef: float, num_groups: int | None = None,
              anchor_coef: float = 0.0) -> StepMetrics:
        """One optimizer step on a minibatch and what it measured (float32 device scalars). No host
        sync: under fp16 the fused optimizer skips non-finite steps on the device."""
        cfg = self.config
        with self._autocast():
            logprob, entropy, value = self.policy.evaluate(mb.obs, mb.actions, mb.masks)
            loss, m = ppo_loss(logprob, mb.logprobs, mb.advantages, value, mb.values, mb.returns,
                               entropy, clip_coef=clip_coef, vf_coef=cfg.vf_coef, ent_coef=ent_coef,
                               clip_vloss=cfg.clip_vloss, norm_adv=cfg.norm_adv,
                               adv_groups=(num_groups or 1) if cfg.norm_adv_per_group else 1)
            anchor_kl = torch.zeros((), device=self.device)
            if anchor_coef > 0:
                if self.anchor is None:
                    raise RuntimeError("anchor_coef > 0 needs a learner built with config.kl_anchor > 0")
                anchor_kl = self.anchor.divergence(self.policy, mb.obs, mb.masks)
                loss = loss + anchor_coef * anchor_kl
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.sync is not None:
            average_gradients(self.params, self.sync)
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        grad_norm = nn.utils.clip_grad_norm_(self.params, cfg.max_grad_norm)
        finite_grad = grad_norm.isfinite()
        if self.scaler.is_enabled():
            # fp16 overflow is routine: the scaler skips the step and lowers the scale, so only
            # the loss is checked for non-finite values on this path.
            checked_norm = torch.where(finite_grad, grad_norm, 0.0)
        else:
            checked_norm = grad_norm
        # with fp16 the fused optimizer receives found_inf as a tensor; a no-op wrapper otherwise
        self.scaler.step(self.optimizer)
        self.scaler.update()
        measured = StepMetrics(policy_loss=m.policy_loss, value_loss=m.value_loss, entropy=m.entropy,
                               approx_kl=m.approx_kl, clip_fraction=m.clip_fraction, grad_norm=checked_norm,
                               clipped_share=finite_grad & (grad_norm > cfg.max_grad_norm),
                               finite_share=finite_grad, anchor_kl=anchor_kl.detach())
        return StepMetrics(*(value.float() for value in measured))

    @staticmethod
    def _raise_if_non_finite(finite: list[float], epoch: int) -> None:
        bad = [name for name, ok in zip(_CHECKED, finite) if not ok]
        if bad:
            raise NonFiniteLossError(f"non-finite {', '.join(bad)} in PPO update epoch {epoch + 1}")

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and GradScaler state, and the KL anchor's reference weights when it has one
        (the policy's weights are checkpointed separately)."""
        state = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}
        if self.anchor is not None:
            state["anchor"] = self.anchor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        if self.anchor is not None and "anchor" in state:
            self.anchor.load_state_dict(state["anchor"], self.policy)
