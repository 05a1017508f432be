"""Multi-symbol actor-critic: one shared encoder, every symbol's actor and critic in grouped matmuls.

Batches are symbol-major: N = S * E rows, row n belongs to symbol n // E (envs.layout's
AccountLayout). The encoder runs once over all N rows; the heads see the features as (S, E, D), so
each symbol's rows meet only that symbol's weights.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from envs.layout import AccountLayout
from envs.spec import TradingSpec
from models.encoder import EncoderConfig, FeatureEncoder
from models.heads import ACTIVATIONS, GroupedMLP
from models.init import STRATEGIES, init_actor_, init_critic_
from ppo_core.distributions import entropy_of, masked_logits


@dataclass
class PolicyConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """the shared transformer encoder"""
    actor_hidden: tuple[int, ...] = (256, 128)
    """hidden widths of each symbol's actor: out_dim -> 256 -> 128 -> num_actions"""
    critic_hidden: tuple[int, ...] = (256, 128)
    """hidden widths of each symbol's critic: out_dim -> 256 -> 128 -> 1"""
    activation: str = "tanh"
    """hidden activation of the heads: tanh, relu, gelu or silu"""
    init: str = "orthogonal"
    """head init strategy: xavier_uniform, xavier_normal, he_uniform, he_normal, orthogonal, default"""
    actor_out_gain: float = 0.01
    """gain of the actor's output layer; small so the initial policy is near uniform"""
    critic_out_gain: float = 1.0
    """gain of the critic's output layer"""
    hidden_gain: float = math.sqrt(2.0)
    """gain of the heads' hidden layers"""

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):  # e.g. PolicyConfig(**asdict(config)) or a JSON round trip
            self.encoder = EncoderConfig(**self.encoder)
        self.actor_hidden = tuple(self.actor_hidden)
        self.critic_hidden = tuple(self.critic_hidden)
        for name in ("actor_hidden", "critic_hidden"):
            widths = getattr(self, name)
            if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
                raise ValueError(f"{name}: widths must be positive integers, got {list(widths)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation: unknown {self.activation!r}; "
                             f"choose one of {', '.join(ACTIVATIONS)}")
        if self.init not in STRATEGIES:
            raise ValueError(f"init: unknown strategy {self.init!r}; choose one of {', '.join(STRATEGIES)}")
        for name in ("actor_out_gain", "critic_out_gain", "hidden_gain"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")


class MultiSymbolPolicy(nn.Module):
    """Shared encoder + grouped per-symbol actor and critic + masked categorical distribution.

    Observation shapes and the action count come from `spec` (the env's `trading_spec`).

    Actor and critic are two GroupedMLPs (one baddbmm per layer each) rather than one fused stack:
    `value()` then skips the actor, and bench/heads.py measured no gain from fusing the first layer.
    """

    def __init__(self, symbols: Sequence[str], config: PolicyConfig, spec: TradingSpec) -> None:
        super().__init__()
        symbols = tuple(symbols)
        if not symbols:
            raise ValueError("symbols: at least one symbol is required")
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"symbols: duplicates in {list(symbols)}")
        self.symbols = symbols
        self.config = config
        self.spec = spec
        # Rows per encoder call when no gradient is needed (rollouts) on CPU: thousands of rows'
        # activations leave the cache, and one call was ~1.9x slower than 128-row chunks at
        # 143 x 32 rows. On GPU one large call is best, so chunking is CPU-only. None disables it.
        self.cpu_inference_chunk: int | None = 128
        width = config.encoder.out_dim
        self.encoder = FeatureEncoder(config.encoder, spec.obs_shapes)
        self.actor = GroupedMLP(len(symbols), (width, *config.actor_hidden, spec.num_actions),
                                config.activation)
        self.critic = GroupedMLP(len(symbols), (width, *config.critic_hidden, 1), config.activation)
        self._init_weights()

    def _init_weights(self) -> None:
        # The encoder initialises itself (Xavier-uniform); the heads follow the configured strategy.
        cfg = self.config
        init_actor_(self.actor, cfg.init, cfg.hidden_gain, cfg.actor_out_gain)
        init_critic_(self.critic, cfg.init, cfg.hidden_gain, cfg.critic_out_gain)

    def flops_per_sample(self) -> int:
        """Forward FLOPs (2 per multiply-add, matmuls only) of one observation through the encoder
        and its symbol's actor and critic heads."""
        heads = sum(2 * a * b for mlp in (self.actor, self.critic) for a, b in zip(mlp.dims, mlp.dims[1:]))
        return self.encoder.flops_per_sample() + heads

    @property
    def num_symbols(self) -> int:
        return len(self.symbols)

    def state_dict_for(self, symbols: Sequence[str]) -> dict[str, Tensor]:
        """This policy's state dict for a subset of its `symbols` (any order): the shared encoder as
        it is and each head's groups of those symbols, ready for MultiSymbolPolicy(symbols, ...)."""
        unknown = [s for s in symbols if s not in self.symbols]
        if unknown:
            raise ValueError(f"symbols: {unknown} have no head in this policy (it has {list(self.symbols)})")
        groups = torch.tensor([self.symbols.index(s) for s in symbols],
                              device=next(self.actor.parameters()).device)
        heads = {f"{name}.{key}": value.index_select(0, groups)  # (S', ...) rows of the (S, ...) weights
                 for name, head in (("actor", self.actor), ("critic", self.critic))
                 for key, value in head.state_dict().items()}
        return {**self.state_dict(), **heads}

    def _features(self, obs: dict[str, Tensor]) -> Tensor:
        """Encoded observations grouped by symbol, (S, E, D)."""
        first = next(iter(obs.values()))
        n = first.shape[0]
        layout = AccountLayout.of_batch(n, self.num_symbols)  # ValueError unless n = S x E
        chunk = self.cpu_inference_chunk
        if chunk is None or n <= chunk or torch.is_grad_enabled() or first.device.type != "cpu":
            features = self.encoder(obs)  # (N, D)
        else:  # rows are independent in the encoder, so chunks give the same features
            features = torch.cat([self.encoder({k: v[i:i + chunk] for k, v in obs.items()})
                                  for i in range(0, n, chunk)])  # (N, D)
        return layout.by_symbol(features)  # (S, E, D)

    def _critic(self, features: Tensor) -> Tensor:
        """(S, E, D) -> float32 values (N,)."""
        return _layout(features).flat(self.critic(features)).squeeze(-1).float()

    def _masked_logits(self, features: Tensor, action_mask: Tensor | None) -> Tensor:
        """(S, E, D) -> float32 logits (N, A), masked actions at the most negative float32."""
        return masked_logits(_layout(features).flat(self.actor(features)), action_mask)

    def forward(self, obs: dict[str, Tensor], action_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(masked float32 logits (N, A), float32 values (N,)) for a symbol-major batch."""
        features = self._features(obs)
        return self._masked_logits(features, action_mask), self._critic(features)

    @torch.no_grad()
    def act(self, obs: dict[str, Tensor], action_mask: Tensor | None = None,
            deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Sample (or argmax) actions: (action (N,) long, logprob (N,), value (N,)), all without grad.

        Dropout is active in train mode; the PPO iteration runs rollouts and updates in eval mode,
        so these log-probs match `evaluate` on the same inputs exactly.
        """
        logits, value = self(obs, action_mask)
        log_probs = logits.log_softmax(dim=-1)  # (N, A)
        if deterministic:
            action = log_probs.argmax(dim=-1)
        else:
            # Masked probabilities are exactly 0, so multinomial can never draw them.
            action = torch.multinomial(log_probs.exp(), num_samples=1).squeeze(-1)  # (N,)
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), value

    def log_probs(self, obs: dict[str, Tensor], action_mask: Tensor | None = None) -> Tensor:
        """float32 log-probabilities (N, A) of every action, differentiable (masked ones ~ -inf)."""
        return self(obs, action_mask)[0].log_softmax(dim=-1)

    def evaluate(self, obs: dict[str, Tensor], actions: Tensor,
                 action_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(logprob (N,), entropy over valid actions (N,), value (N,)) of given actions, with grad."""
        logits, value = self(obs, action_mask)
        if actions.shape != value.shape:
            raise ValueError(f"actions: expected shape {tuple(value.shape)} (N,), got {tuple(actions.shape)}")
        log_probs = logits.log_softmax(dim=-1)  # (N, A)
        entropy = entropy_of(log_probs)
        logprob = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        return logprob, entropy, value

    def compile_evaluate(self) -> None:
        """Run `evaluate` (the PPO update's forward, and so its backward) through torch.compile from
        now on (run.compile). Rollouts stay eager. The first update compiles: 30-90 s on a 2-core
        CPU, a few seconds once inductor's cache holds the graphs; on CPU its update measured
        0.8-1.2x eager's (docs/results.md, "The update's speed"), so it is off by default."""
        if "evaluate" not in vars(self):  # once, whoever asks first (the session or a bench)
            self.evaluate = torch.compile(self.evaluate)  # type: ignore[method-assign]

    def value(self, obs: dict[str, Tensor]) -> Tensor:
        """float32 values (N,) without running the actor."""
        return self._critic(self._features(obs))

    def count_parameters(self) -> dict[str, int | float]:
        """Parameter counts, and the saving of one shared encoder vs one encoder per symbol."""
        encoder = sum(p.numel() for p in self.encoder.parameters())
        heads = sum(p.numel() for head in (self.actor, self.critic) for p in head.parameters())
        per_symbol = heads // self.num_symbols
        separate = self.num_symbols * (encoder + per_symbol)
        total = encoder + heads
        return {"encoder": encoder, "heads_per_symbol": per_symbol, "heads": heads, "total": total,
                "one_encoder_per_symbol": separate, "sharing_saving": 1.0 - total / separate}


def _layout(features: Tensor) -> AccountLayout:
    """The layout of grouped features (S, E, ...)."""
    return AccountLayout(features.shape[0], features.shape[1])
