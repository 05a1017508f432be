"""Models: shared transformer encoder, grouped per-symbol heads, policy, init and checkpoints."""
from models.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    CheckpointMeta,
    CheckpointMismatchError,
    atomic_write_bytes,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from models.ensemble import PolicyEnsemble
from models.encoder import EncoderConfig, FeatureEncoder, count_tokens, sinusoidal_positions
from models.heads import ACTIVATIONS, GroupedMLP
from models.init import (
    STRATEGIES,
    init_actor_,
    init_critic_,
    init_encoder_,
    init_grouped_mlp_,
    init_linear_,
    init_matrix_,
    weight_stats,
)
from models.policy import MultiSymbolPolicy, PolicyConfig

__all__ = [
    "ACTIVATIONS", "FORMAT_VERSION", "STRATEGIES",
    "CheckpointError", "CheckpointMeta", "CheckpointMismatchError", "EncoderConfig", "FeatureEncoder",
    "GroupedMLP", "MultiSymbolPolicy", "PolicyConfig", "PolicyEnsemble",
    "atomic_write_bytes", "count_tokens", "init_actor_", "init_critic_", "init_encoder_", "init_grouped_mlp_",
    "init_linear_", "init_matrix_", "load_checkpoint", "read_checkpoint_meta", "save_checkpoint",
    "sinusoidal_positions", "weight_stats",
]
