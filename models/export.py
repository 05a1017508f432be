"""A trained policy as a file other programs can run: TorchScript (always) or ONNX (with the
`export` extra). The exported function takes the observation dict and the action mask of a batch
of N = S x E accounts (symbol-major, E fixed at export) and returns the masked float32 logits
(N, A) and the values (N,), exactly what MultiSymbolPolicy.forward returns; it is checked against
the eager policy on fresh random observations before it is written."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from models.policy import MultiSymbolPolicy
from ppo_core.files import atomic_write_bytes

FORMATS = ("torchscript", "onnx")


class _Forward(nn.Module):
    """forward(obs, mask) with the observation keys in a fixed order (ONNX takes positional inputs)."""

    def __init__(self, policy: MultiSymbolPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.keys = tuple(policy.spec.obs_shapes)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        *values, mask = inputs
        return self.policy(dict(zip(self.keys, values)), mask)


def random_inputs(policy: MultiSymbolPolicy, per_symbol: int, generator: torch.Generator
                  ) -> tuple[dict[str, Tensor], Tensor]:
    """Standard-normal observations of every key and a random mask with HOLD always valid, for
    N = S x `per_symbol` accounts: ({key: (N, *shape)}, (N, A) bool)."""
    n = len(policy.symbols) * per_symbol
    obs = {key: torch.randn(n, *shape, generator=generator) for key, shape in policy.spec.obs_shapes.items()}
    mask = torch.rand(n, policy.spec.num_actions, generator=generator) < 0.7
    mask[:, list(policy.spec.ids("hold"))] = True
    return obs, mask


def export(policy: MultiSymbolPolicy, path: Path, fmt: str, per_symbol: int = 1, seed: int = 0) -> float:
    """Write `policy` (on the CPU, eval mode) to `path` as `fmt` for batches of S x `per_symbol`
    accounts; the max |difference| of logits and values from the eager policy on fresh random
    inputs, checked before writing (ValueError above 1e-4, nothing written)."""
    if fmt not in FORMATS:
        raise ValueError(f"format: one of {', '.join(FORMATS)}, got {fmt!r}")
    policy = policy.cpu().eval()
    chunk, policy.cpu_inference_chunk = policy.cpu_inference_chunk, None  # one traced graph, no chunk loop
    try:
        generator = torch.Generator().manual_seed(seed)
        wrapped = _Forward(policy).eval()
        example = random_inputs(policy, per_symbol, generator)
        with torch.no_grad(), warnings.catch_warnings():
            # the shape checks become constants of the trace: the file serves batches of this N only
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            data, run = _torchscript(wrapped, example) if fmt == "torchscript" else _onnx(wrapped, example)
            check = random_inputs(policy, per_symbol, generator)
            expected = policy(*check)
            got = run(check)
        diff = max(float((a - b).abs().max()) for a, b in zip(expected, got))
    finally:
        policy.cpu_inference_chunk = chunk
    if not diff <= 1e-4:
        raise ValueError(f"the exported {fmt} policy differs from the eager one by {diff:.3g} on random inputs")
    atomic_write_bytes(path, data)
    return diff


def _positional(obs: dict[str, Tensor], mask: Tensor) -> tuple[Tensor, ...]:
    return (*obs.values(), mask)


def _torchscript(wrapped: _Forward, example: tuple[dict[str, Tensor], Tensor]):
    traced = torch.jit.trace(wrapped, _positional(*example), check_trace=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    loaded = torch.jit.load(io.BytesIO(buffer.getvalue()))  # check what a user will load
    return buffer.getvalue(), lambda inputs: loaded(*_positional(*inputs))


def _onnx(wrapped: _Forward, example: tuple[dict[str, Tensor], Tensor]):
    try:
        import onnxruntime
    except ImportError:
        raise ValueError('ONNX export needs the export extra: pip install -e ".[export]"') from None
    names = [*wrapped.keys, "mask"]
    buffer = io.BytesIO()
    torch.onnx.export(wrapped, _positional(*example), buffer, input_names=names,
                      output_names=["logits", "values"], dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])

    def run(inputs: tuple[dict[str, Tensor], Tensor]) -> tuple[Tensor, ...]:
        feed = {name: value.numpy() for name, value in zip(names, _positional(*inputs))}
        return tuple(torch.from_numpy(out) for out in session.run(["logits", "values"], feed))
    return buffer.getvalue(), run
