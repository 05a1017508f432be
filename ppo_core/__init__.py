"""Generic PPO machinery (knows nothing about trading): rollout buffer, GAE, loss, learner,
entropy-coefficient stack, rollout collector and a small MLP actor-critic."""
from ppo_core.anchor import KLAnchor, kl_divergence
from ppo_core.buffer import CompactObservation, Minibatch, RolloutBuffer
from ppo_core.device import (auto_amp, cpu_has_native_bf16, cpu_threads, resolve_device, set_cpu_threads,
                             synchronize)
from ppo_core.distributions import entropy_of, masked_log_probs, masked_logits
from ppo_core.entropy import (AdaptiveEntropyConfig, EntropyCollapseError, EntropyConfig,
                              EntropyController, EntropyGuardConfig, EntropyScheduleConfig, EntropyState)
from ppo_core.gae import compute_gae
from ppo_core.learner import (ActorCritic, NonFiniteLossError, PPOConfig, PPOLearner, StepMetrics,
                              UpdateStats, resolve_amp)
from ppo_core.loss import LossMetrics, explained_variance, ppo_loss
from ppo_core.iteration import IterationResult, PPOParts, ppo_iteration
from ppo_core.mlp_policy import MLPActorCritic
from ppo_core.normalize import RewardNormalizer
from ppo_core.rollout import GymVecAdapter, RolloutResult, StepData, TensorVecEnv, collect_rollout
from ppo_core.schedules import scheduled

__all__ = [
    "ActorCritic", "AdaptiveEntropyConfig", "CompactObservation", "EntropyCollapseError", "EntropyConfig", "EntropyController",
    "auto_amp", "cpu_has_native_bf16", "cpu_threads", "set_cpu_threads",
    "EntropyGuardConfig", "EntropyScheduleConfig", "EntropyState", "GymVecAdapter", "IterationResult", "KLAnchor", "LossMetrics",
    "MLPActorCritic",
    "Minibatch", "NonFiniteLossError", "PPOConfig", "PPOLearner", "PPOParts", "RewardNormalizer", "RolloutBuffer",
    "RolloutResult",
    "StepData", "TensorVecEnv", "StepMetrics", "UpdateStats", "collect_rollout", "compute_gae", "explained_variance", "kl_divergence",
    "entropy_of", "masked_log_probs", "masked_logits", "ppo_iteration", "ppo_loss", "resolve_amp",
    "resolve_device", "scheduled", "synchronize",
]
