"""Transfer trained weights into a policy of another shape: wider or deeper encoder, wider heads,
added or dropped symbols.

Every tensor is resized axis by axis. An axis either produces units ("out": rows of a Linear, the
output columns of a grouped head weight, biases, norms) or consumes them ("in": the columns that
read a previous layer). A strategy decides what the new entries of a grown axis hold:

- copy_and_extend: the overlap is copied, new entries are random at 10 % of the old tensor's std.
- interpolate: the overlap is copied, new unit k is the midpoint of old units i and i + 1
  (i = k mod (n - 1)), along every grown axis; new encoder blocks are midpoints of adjacent blocks.
- zero_pad: new "out" entries are random as in copy_and_extend, new "in" entries are zero, so the
  new units are computed but read by nobody and the policy's outputs are unchanged; a new block's
  attention and feed-forward output projections are zero, so the block is the identity (pre-LN
  residuals). Random rather than zero "out" entries keep the new units trainable: with both sides
  zero their gradients would stay zero. A grown d_model cannot be zero-padded: LayerNorm would
  average over the new channels and the sinusoidal positions depend on d_model.

The symbol axis of the grouped heads (S, ...) is remapped by name: kept symbols keep their groups
exactly wherever they sit in the new list, dropped ones are removed, new ones start from the mean
of the old groups ("mean") or from the new model's own init ("fresh"). Observation or action
shapes, the head depth and the pooling must match: they change what the input layers mean.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from envs.spec import TradingSpec
from ppo_core.files import atomic_write_bytes
from models.encoder import EncoderConfig
from models.policy import MultiSymbolPolicy, PolicyConfig

TRANSFER_STRATEGIES = ("copy_and_extend", "interpolate", "zero_pad")
NEW_SYMBOL_HEADS = ("mean", "fresh")
EXTEND_SCALE = 0.1
"""std of new random entries relative to the old tensor's std"""
_BLOCK = re.compile(r"encoder\.blocks\.(\d+)\.(.+)")
_HEAD = re.compile(r"(actor|critic)\.(weight|bias)_(\d+)")


class TransferError(ValueError):
    """The checkpoint's weights cannot be moved into the new model; the message says why."""


@dataclass(frozen=True)
class Axis:
    """How one axis of a tensor resizes."""

    role: str
    """"out" (produces units), "in" (reads units) or "fixed" (must not change: symbols, singletons)"""
    chunks: int = 1
    """equal blocks the axis is made of (3 x n_heads for a qkv row axis); each block resizes alike"""


@dataclass(frozen=True)
class TensorTransfer:
    key: str
    action: str
    """copied (same shape, exact), extended (an axis grew), truncated (axes only shrank), new
    (not in the checkpoint) or dropped (not in the model)"""
    old_shape: tuple[int, ...] | None
    new_shape: tuple[int, ...] | None
    note: str = ""


@dataclass
class TransferReport:
    """What a transfer did, tensor by tensor; `lines()` for the log, `write()` for transfer.json."""

    strategy: str
    new_symbol_heads: str
    symbols_kept: list[str]
    symbols_added: list[str]
    symbols_dropped: list[str]
    changes: list[str]
    """one line per architecture or symbol difference"""
    tensors: list[TensorTransfer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = ""

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.action] = counts.get(t.action, 0) + 1
        return counts

    def lines(self) -> list[str]:
        head = (f"transfer ({self.strategy}{', from ' + self.source if self.source else ''}): "
                + ", ".join(f"{n} {action}" for action, n in sorted(self.counts().items())))
        body = [f"  {t.key}: {t.action} {t.old_shape} -> {t.new_shape}" + (f" ({t.note})" if t.note else "")
                for t in self.tensors if t.action != "copied"]
        return [head, *(f"  change: {c}" for c in self.changes), *body, *(f"  note: {n}" for n in self.notes)]

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, path: str | Path) -> None:
        atomic_write_bytes(path, json.dumps(self.to_json(), indent=2).encode())


def architecture_changes(old: PolicyConfig, old_symbols: Sequence[str], new: PolicyConfig,
                         new_symbols: Sequence[str]) -> tuple[list[str], bool]:
    """(one line per difference, whether a dimension grew) between two policies; growth is where
    the strategy matters, symbol and shrink changes transfer the same under every strategy."""
    changes, grown = [], False
    pairs = [(f"encoder.{name}", getattr(old.encoder, name), getattr(new.encoder, name))
             for name in ("n_layers", "d_model", "n_heads", "d_ff", "out_dim", "pool")]
    pairs += [(name, getattr(old, name), getattr(new, name)) for name in ("actor_hidden", "critic_hidden")]
    for name, before, after in pairs:
        if before != after:
            changes.append(f"model.{name}: {before!r} -> {after!r}")
            if isinstance(before, int) and isinstance(after, int):
                grown |= after > before
            elif isinstance(before, tuple) and len(before) == len(after):
                grown |= any(b > a for a, b in zip(before, after))
    added = [s for s in new_symbols if s not in old_symbols]
    dropped = [s for s in old_symbols if s not in new_symbols]
    if added or dropped:
        changes.append(f"symbols: added {added}, dropped {dropped}")
    elif list(old_symbols) != list(new_symbols):
        changes.append(f"symbols reordered: {list(old_symbols)} -> {list(new_symbols)}")
    return changes, grown


def check_compatible(old: PolicyConfig, old_obs_shapes: Mapping[str, tuple[int, ...]], old_num_actions: int,
                     new: PolicyConfig, spec: TradingSpec, strategy: str) -> None:
    """TransferError for differences no strategy can bridge, or that `strategy` cannot."""
    if strategy not in TRANSFER_STRATEGIES:
        raise TransferError(f"transfer strategy: unknown {strategy!r}; choose one of "
                            f"{', '.join(TRANSFER_STRATEGIES)}")
    old_shapes = {k: tuple(v) for k, v in old_obs_shapes.items()}
    if old_shapes != dict(spec.obs_shapes) or old_num_actions != spec.num_actions:
        diff = [f"{k}: {old_shapes.get(k)} -> {spec.obs_shapes.get(k)}"
                for k in {**old_shapes, **spec.obs_shapes} if old_shapes.get(k) != spec.obs_shapes.get(k)]
        if old_num_actions != spec.num_actions:
            diff.append(f"actions: {old_num_actions} -> {spec.num_actions}")
        raise TransferError("observation or action shapes differ (" + "; ".join(diff) + "): the input "
                            "projections and the position table read a fixed window of fixed features, and the "
                            "heads' last layer one logit per action, so trained weights have no meaning for "
                            "another shape. Keep env.lookback, the features and the actions of the source run")
    for name in ("actor_hidden", "critic_hidden"):
        if len(getattr(old, name)) != len(getattr(new, name)):
            raise TransferError(f"model.{name}: {list(getattr(old, name))} -> {list(getattr(new, name))} changes "
                                "the number of head layers; only their widths can change")
    if old.encoder.pool != new.encoder.pool:
        raise TransferError(f"model.encoder.pool: {old.encoder.pool!r} -> {new.encoder.pool!r} changes what "
                            "the encoder's output layer reads; keep the pooling")
    if old.activation != new.activation:
        raise TransferError(f"model.activation: {old.activation!r} -> {new.activation!r}; the heads' weights "
                            "were trained for their activation, keep it")
    width_changed = old.encoder.d_model != new.encoder.d_model
    if width_changed and old.encoder.n_heads != new.encoder.n_heads:
        raise TransferError("model.encoder.d_model and n_heads both changed; change one at a time (each head's "
                            "channels grow in place only when the head count stays)")
    if strategy == "zero_pad" and width_changed:
        raise TransferError(f"zero_pad cannot grow model.encoder.d_model ({old.encoder.d_model} -> "
                            f"{new.encoder.d_model}) without changing the policy: every LayerNorm would average "
                            "over the new channels and the sinusoidal positions depend on d_model; use "
                            "copy_and_extend or interpolate")
    if strategy == "zero_pad" and old.encoder.n_heads != new.encoder.n_heads:
        raise TransferError(f"zero_pad cannot change model.encoder.n_heads ({old.encoder.n_heads} -> "
                            f"{new.encoder.n_heads}) without changing the policy: attention regroups the channels")


def axes_of(key: str, encoder: EncoderConfig) -> tuple[Axis, ...]:
    """How each axis of policy tensor `key` resizes (nn.Linear weights are (out, in))."""
    out, inp, fixed = Axis("out"), Axis("in"), Axis("fixed")
    head = _HEAD.fullmatch(key)
    if head:  # weight (S, in, out), bias (S, 1, out)
        return (fixed, inp, out) if head.group(2) == "weight" else (fixed, fixed, out)
    is_weight = key.endswith(".weight")
    if key.startswith("encoder.proj."):  # (D, F): F is an observation shape, checked to be equal
        return (out, fixed) if is_weight else (out,)
    if key.endswith("attn.qkv.weight"):  # (3D, D): q, k, v, each n_heads blocks of head size
        return (Axis("out", 3 * encoder.n_heads), inp)
    if key.endswith("attn.qkv.bias"):
        return (Axis("out", 3 * encoder.n_heads),)
    if key.endswith("attn.proj.weight"):  # (D, D) reading the heads' concatenated outputs
        return (out, Axis("in", encoder.n_heads))
    if key == "encoder.out.weight":  # (out_dim, D or 2D with mean_last)
        return (out, Axis("in", 2 if encoder.pool == "mean_last" else 1))
    return (out, inp) if is_weight and not _is_norm(key) else (out,)


def transfer_weights(old_state: Mapping[str, Tensor], old_symbols: Sequence[str], old_config: PolicyConfig,
                     old_obs_shapes: Mapping[str, tuple[int, ...]], old_num_actions: int,
                     model: MultiSymbolPolicy, strategy: str, new_symbol_heads: str = "mean",
                     seed: int = 0) -> TransferReport:
    """Load `old_state` (a checkpoint of a policy over `old_symbols` built with `old_config`) into
    `model` in place, resizing as the strategy says; tensors new to the model keep its own init."""
    check_compatible(old_config, old_obs_shapes, old_num_actions, model.config, model.spec, strategy)
    if new_symbol_heads not in NEW_SYMBOL_HEADS:
        raise TransferError(f"new_symbol_heads: unknown {new_symbol_heads!r}; choose one of "
                            f"{', '.join(NEW_SYMBOL_HEADS)}")
    old_symbols, new_symbols = list(old_symbols), list(model.symbols)
    changes, _ = architecture_changes(old_config, old_symbols, model.config, new_symbols)
    report = TransferReport(strategy, new_symbol_heads, [s for s in new_symbols if s in old_symbols],
                            [s for s in new_symbols if s not in old_symbols],
                            [s for s in old_symbols if s not in new_symbols], changes)
    if old_config.encoder.n_heads != model.config.encoder.n_heads:
        report.notes.append("n_heads changed at the same d_model: weights copied, attention regroups them")
    generator = torch.Generator().manual_seed(seed)
    target = {k: v.detach().clone() for k, v in model.state_dict().items()}
    result: dict[str, Tensor] = {}
    encoder = model.config.encoder
    for key, new in target.items():
        if key not in old_state:
            continue
        old, head = old_state[key].to(new.dtype), bool(_HEAD.fullmatch(key))
        if head and old.shape[0] != len(old_symbols):
            raise TransferError(f"{key}: {old.shape[0]} head groups for {len(old_symbols)} symbols in the checkpoint")
        axes = axes_of(key, encoder)
        # heads resize per group (the symbol axis is remapped by name below)
        resized, action = _resize(old, tuple(new.shape[1:]) if head else tuple(new.shape),
                                  axes[1:] if head else axes, strategy, key, generator, head)
        note = ""
        if head:
            resized, note = _remap_symbols(resized, old_symbols, new_symbols, new, new_symbol_heads)
            if action == "copied" and report.symbols_added:
                action = "extended"
            elif action == "copied" and report.symbols_dropped:
                action = "truncated"
        result[key] = resized
        report.tensors.append(TensorTransfer(key, action, tuple(old.shape), tuple(new.shape), note))
    _new_blocks(target, result, old_config.encoder.n_layers, strategy, report)
    for key in sorted(set(old_state) - set(target)):
        report.tensors.append(TensorTransfer(key, "dropped", tuple(old_state[key].shape), None))
    model.load_state_dict({**target, **result})
    return report


SL_ENCODER_KIND = "sl_encoder"
"""the `kind` metadata of a supervised encoder checkpoint (trainers.pretrain's encoder.safetensors)"""


def map_sl_encoder(tensors: Mapping[str, Tensor], model: MultiSymbolPolicy, source: str = "") -> TransferReport:
    """Map a supervised encoder checkpoint onto `model`'s encoder, key by key: `encoder.K` -> the
    policy's `encoder.K`, shapes equal (no resizing: a supervised encoder of another size is
    refused, not stretched). The supervised prediction head (`head.*`) and anything else outside
    `encoder.` is dropped. TransferError listing every key the policy's encoder needs but the
    checkpoint lacks and every shape that differs; the report lists what mapped (apply it with
    blend_encoder)."""
    wanted = {f"encoder.{k}": v for k, v in model.encoder.state_dict().items()}
    missing = [k for k in wanted if k not in tensors]
    mismatched = [f"{k}: checkpoint {tuple(tensors[k].shape)}, policy {tuple(v.shape)}"
                  for k, v in wanted.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or mismatched:
        raise TransferError(
            f"{source or 'the supervised encoder'} does not fit this policy's encoder (train it with the same "
            "model.encoder settings and observation keys as the run):\n  "
            + "\n  ".join([*(f"{k}: missing from the checkpoint" for k in missing), *mismatched]))
    entries = [TensorTransfer(k, "copied", tuple(v.shape), tuple(v.shape), "mapped from the supervised encoder")
               for k, v in wanted.items()]
    entries += [TensorTransfer(k, "dropped", tuple(v.shape), None, "not part of the policy's encoder")
                for k, v in tensors.items() if k not in wanted]
    dropped = [k for k in tensors if k not in wanted]
    return TransferReport(strategy="sl_encoder key mapping", new_symbol_heads="fresh", symbols_kept=[],
                          symbols_added=list(model.symbols), symbols_dropped=[], changes=[], tensors=entries,
                          source=source,
                          notes=[f"mapped all {len(wanted)} encoder tensors one to one (encoder.* -> encoder.*)",
                                 f"dropped {len(dropped)}: {', '.join(dropped) or 'none'}"])


def is_sl_encoder(path: str | Path) -> bool:
    """Whether `path` is a supervised encoder checkpoint (metadata kind = SL_ENCODER_KIND)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("kind") == SL_ENCODER_KIND
    except Exception:  # not a safetensors file: the caller's own loader names the problem
        return False


def blend_encoder(model: MultiSymbolPolicy, transferred: Mapping[str, Tensor], alpha: float) -> None:
    """Experimental: encoder <- alpha * transferred + (1 - alpha) * the model's own (fresh) encoder,
    tensor by tensor; `transferred` holds `encoder.*` tensors of this model's shapes."""
    if not 0.0 <= alpha <= 1.0:
        raise TransferError(f"encoder blend alpha: must be in [0, 1], got {alpha!r}")
    with torch.no_grad():
        for key, fresh in model.encoder.state_dict().items():
            source = transferred[f"encoder.{key}"].to(fresh)
            if source.shape != fresh.shape:
                raise TransferError(f"encoder.{key}: transferred shape {tuple(source.shape)}, model "
                                    f"{tuple(fresh.shape)}")
            # lerp at exactly 0 and 1 returns either end bit for bit
            fresh.copy_(source if alpha == 1.0 else fresh if alpha == 0.0 else torch.lerp(fresh, source, alpha))


def _is_norm(key: str) -> bool:
    return ".ln_" in key or key.startswith("encoder.ln_f")


def _resize(old: Tensor, shape: tuple[int, ...], axes: Sequence[Axis], strategy: str, key: str,
            generator: torch.Generator, head: bool) -> tuple[Tensor, str]:
    """`old` resized axis by axis to `shape` (after a leading symbol axis when `head`), and the action."""
    lead = 1 if head else 0
    if len(axes) != old.dim() - lead or len(shape) != old.dim() - lead:
        raise TransferError(f"{key}: rank {old.dim()} in the checkpoint, {len(shape) + lead} in the model")
    old_shape = tuple(old.shape[lead:])
    if old_shape == shape:
        return old.clone(), "copied"
    scale = EXTEND_SCALE * (float(old.float().std()) if old.numel() > 1 else 0.0)
    grew = False
    x = old
    for i, (axis, size) in enumerate(zip(axes, shape)):
        dim, n = i + lead, x.shape[i + lead]
        if n == size:
            continue
        if axis.role == "fixed":
            raise TransferError(f"{key}: axis {i} is {n} in the checkpoint, {size} in the model, and cannot change")
        if n % axis.chunks or size % axis.chunks:
            raise TransferError(f"{key}: axis {i} ({n} -> {size}) is not {axis.chunks} equal blocks")
        grew |= size > n
        # (..., n, ...) -> (..., c, n / c, ...): every block (head, q/k/v) resizes the same way
        blocks = x.unflatten(dim, (axis.chunks, n // axis.chunks))
        blocks = _resize_axis(blocks, dim + 1, size // axis.chunks, axis.role, strategy, scale, key, generator)
        x = blocks.flatten(dim, dim + 1)
    return x, "extended" if grew else "truncated"


def _resize_axis(x: Tensor, dim: int, size: int, role: str, strategy: str, scale: float, key: str,
                 generator: torch.Generator) -> Tensor:
    n = x.shape[dim]
    if size <= n:
        return x.narrow(dim, 0, size).clone()
    extra_shape = list(x.shape)
    extra_shape[dim] = size - n
    if strategy == "interpolate":
        left = torch.arange(size - n) % max(n - 1, 1)
        right = (left + 1).clamp_max(n - 1)
        extra = 0.5 * (x.index_select(dim, left) + x.index_select(dim, right))
    elif strategy == "zero_pad" and role == "in":
        extra = x.new_zeros(extra_shape)
    elif _is_norm(key) and key.endswith(".weight"):
        extra = x.new_ones(extra_shape)  # a fresh LayerNorm's gain: new channels pass through unscaled
    else:
        extra = torch.randn(extra_shape, generator=generator).to(x) * scale
    return torch.cat([x, extra], dim=dim)


def _remap_symbols(groups: Tensor, old_symbols: list[str], new_symbols: list[str], fresh: Tensor,
                   new_symbol_heads: str) -> tuple[Tensor, str]:
    """(S_old, ...) head groups -> (S_new, ...) by symbol name; `fresh` is the model's own (S_new, ...)."""
    rows = []
    for s, symbol in enumerate(new_symbols):
        if symbol in old_symbols:
            rows.append(groups[old_symbols.index(symbol)])
        elif new_symbol_heads == "mean":
            rows.append(groups.mean(dim=0))
        else:
            rows.append(fresh[s])
    added = [s for s in new_symbols if s not in old_symbols]
    dropped = [s for s in old_symbols if s not in new_symbols]
    note = "; ".join(part for part in (f"new symbols {added} from {new_symbol_heads}" if added else "",
                                        f"dropped {dropped}" if dropped else "") if part)
    if not note and new_symbols != old_symbols:
        note = "symbols reordered"
    return torch.stack(rows), note


def _new_blocks(target: dict[str, Tensor], result: dict[str, Tensor], old_layers: int, strategy: str,
                report: TransferReport) -> None:
    """Fill the encoder blocks the checkpoint lacks: zero_pad makes each the identity, interpolate
    averages adjacent transferred blocks, copy_and_extend keeps the model's own init."""
    for key, fresh in target.items():
        match = _BLOCK.fullmatch(key)
        if key in result or match is None:
            continue
        index, rest = int(match.group(1)), match.group(2)
        note = "model init"
        if strategy == "zero_pad" and rest in ("attn.proj.weight", "attn.proj.bias", "mlp.proj.weight",
                                               "mlp.proj.bias"):
            result[key] = torch.zeros_like(fresh)  # residual branch adds zero: the block is the identity
            note = "zero: residual branch outputs nothing"
        elif strategy == "interpolate":
            left = (index - old_layers) % max(old_layers - 1, 1)
            right = min(left + 1, old_layers - 1)
            result[key] = 0.5 * (result[f"encoder.blocks.{left}.{rest}"] + result[f"encoder.blocks.{right}.{rest}"])
            note = f"midpoint of blocks {left} and {right}"
        else:
            result[key] = fresh
        report.tensors.append(TensorTransfer(key, "new", None, tuple(fresh.shape), note))
    if any(t.action == "new" and _BLOCK.fullmatch(t.key) for t in report.tensors):
        report.notes.append(f"encoder blocks from {old_layers} on are new ({strategy})")
