"""Grouped per-symbol heads vs a Python loop over per-symbol MLPs, and the full policy vs the seed.

    python bench/heads.py [--symbols 2,10,143] [--per-symbol 32] [--device auto|cpu|cuda]
                          [--policy-encoder auto|small|full] [--seconds 2] [--json PATH]

heads:  every symbol's actor (256-256-128-7) and critic (256-256-128-1) on its 32 rows.
        grouped = two GroupedMLPs (one baddbmm per layer each, what MultiSymbolPolicy runs);
        fused   = actor and critic first layers concatenated into one baddbmm (the alternative);
        loop    = S x (actor, critic) nn.Sequential stacks with the same weights, one symbol at a time.
policy: MultiSymbolPolicy forward over all S x 32 rows vs the seed's pattern, one agent at a time
        (encoder on that symbol's 32 rows, then its own heads), same weights. On CPU the encoder
        is the small preset by default: the full one would take ~10 s per forward at 143 symbols.
Outputs are checked equal before timing. Rich table to stderr, JSON to stdout (and to --json).

On a CPU both head paths are compute-bound (1.8 GFLOP at 143 x 32 rows), so the grouped heads can
only win by the GEMM efficiency gap (~2-3x here); the per-call overhead that a GPU pays ~1,400
times in the loop is what the grouped form removes there.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from common import device_name, device_or_exit, emit, time_ms
from configs.cli import add_device
from configs.train import resolve
from envs import DEFAULT_SPEC
from models import EncoderConfig, GroupedMLP, MultiSymbolPolicy, PolicyConfig, init_actor_, init_critic_
from ppo_core import masked_logits


def loop_stacks(mlp: GroupedMLP) -> list[nn.Sequential]:
    """The seed's layout: one independent nn.Sequential per symbol, weights copied from `mlp`."""
    stacks = []
    for s in range(mlp.num_groups):
        layers: list[nn.Module] = []
        for i, (weight, bias) in enumerate(mlp.layers()):
            linear = nn.Linear(weight.shape[1], weight.shape[2], device=weight.device)
            with torch.no_grad():
                linear.weight.copy_(weight[s].T)  # (in, out) -> (out, in)
                linear.bias.copy_(bias[s, 0])
            layers += [linear, nn.Tanh()] if i < len(mlp.dims) - 2 else [linear]
        stacks.append(nn.Sequential(*layers))
    return stacks


def fused_heads(actor: GroupedMLP, critic: GroupedMLP):
    """Actor and critic sharing the first layer's baddbmm (weights concatenated along out)."""
    w0 = torch.cat([actor.weight_0, critic.weight_0], dim=2)  # (S, in, h_actor + h_critic)
    b0 = torch.cat([actor.bias_0, critic.bias_0], dim=2)  # (S, 1, h_actor + h_critic)
    split = actor.dims[1]

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        hidden = torch.tanh(torch.baddbmm(b0, x, w0))  # (S, B, h_actor + h_critic)
        outs = []
        for mlp, h in ((actor, hidden[..., :split]), (critic, hidden[..., split:])):
            for i, (weight, bias) in enumerate(mlp.layers()[1:], start=1):
                h = torch.baddbmm(bias, h, weight)  # (S, B, out)
                h = torch.tanh(h) if i < len(mlp.dims) - 2 else h
            outs.append(h)
        return outs[0], outs[1]

    return forward


def bench_heads(num_symbols: int, per_symbol: int, device: torch.device, seconds: float) -> dict:
    torch.manual_seed(0)
    actor = GroupedMLP(num_symbols, (256, 256, 128, DEFAULT_SPEC.num_actions)).to(device)
    critic = GroupedMLP(num_symbols, (256, 256, 128, 1)).to(device)
    init_actor_(actor)
    init_critic_(critic)
    actors, critics = loop_stacks(actor), loop_stacks(critic)
    fused = fused_heads(actor, critic)
    x = torch.randn(num_symbols, per_symbol, 256, device=device)  # (S, E, D)

    def grouped() -> tuple[Tensor, Tensor]:
        return actor(x), critic(x)

    def loop() -> tuple[Tensor, Tensor]:
        logits = [actors[s](x[s]) for s in range(num_symbols)]
        values = [critics[s](x[s]) for s in range(num_symbols)]
        return torch.stack(logits), torch.stack(values)  # (S, E, A), (S, E, 1)

    with torch.inference_mode():
        error = max_error(grouped(), loop(), fused(x))
        ms = {name: median(time_ms(fn, device, seconds)) for name, fn in
              (("grouped", grouped), ("fused", lambda: fused(x)), ("loop", loop))}
    return {"symbols": num_symbols, "rows": num_symbols * per_symbol, "grouped_ms": ms["grouped"],
            "fused_first_layer_ms": ms["fused"], "loop_ms": ms["loop"],
            "loop_over_grouped": ms["loop"] / ms["grouped"],
            "fused_over_grouped": ms["fused"] / ms["grouped"],
            "max_abs_diff": error}


def bench_policy(num_symbols: int, per_symbol: int, encoder: EncoderConfig, device: torch.device,
                 seconds: float) -> dict:
    torch.manual_seed(0)
    policy = MultiSymbolPolicy([f"SYM{s}" for s in range(num_symbols)], PolicyConfig(encoder=encoder),
                               DEFAULT_SPEC)
    policy = policy.to(device).eval()
    actors, critics = loop_stacks(policy.actor), loop_stacks(policy.critic)
    n = num_symbols * per_symbol
    obs = {k: torch.randn(n, *s, device=device) for k, s in DEFAULT_SPEC.obs_shapes.items()}
    mask = torch.rand(n, DEFAULT_SPEC.num_actions, device=device) < 0.7
    mask[:, DEFAULT_SPEC.hold_id] = True

    def grouped() -> tuple[Tensor, Tensor]:
        return policy(obs, mask)

    def one_agent_at_a_time() -> tuple[Tensor, Tensor]:
        logits, values = [], []
        for s in range(num_symbols):
            rows = slice(s * per_symbol, (s + 1) * per_symbol)
            features = policy.encoder({k: v[rows] for k, v in obs.items()})  # (E, D)
            logits.append(masked_logits(actors[s](features), mask[rows]))
            values.append(critics[s](features).float().squeeze(-1))
        return torch.cat(logits), torch.cat(values)

    with torch.inference_mode():
        error = max_error(grouped(), one_agent_at_a_time())
        ms = {name: median(time_ms(fn, device, seconds, warmup=1, min_reps=3)) for name, fn in
              (("grouped", grouped), ("loop", one_agent_at_a_time))}
    return {"symbols": num_symbols, "rows": n, "policy_ms": ms["grouped"],
            "one_agent_at_a_time_ms": ms["loop"],
            "loop_over_grouped": ms["loop"] / ms["grouped"], "max_abs_diff": error}


def max_error(reference: tuple[Tensor, Tensor], *others: tuple[Tensor, Tensor]) -> float:
    """Largest |difference| to the reference outputs; fails loudly beyond fp32 round-off."""
    error = 0.0
    for other in others:
        for a, b in zip(reference, other):
            torch.testing.assert_close(a, b.reshape(a.shape), rtol=1e-4, atol=1e-5)
            error = max(error, (a - b.reshape(a.shape)).abs().max().item())
    return error


def median(times: list[float]) -> float:
    return float(torch.tensor(times).median())


def print_tables(report: dict) -> None:
    console = Console(stderr=True)
    heads = Table(title=f"Heads, {report['per_symbol']} rows per symbol, on {report['device']} (median ms)")
    for column in ("symbols", "grouped", "fused 1st layer", "loop", "loop / grouped"):
        heads.add_column(column, justify="right")
    for r in report["heads"]:
        heads.add_row(str(r["symbols"]), f"{r['grouped_ms']:.2f}", f"{r['fused_first_layer_ms']:.2f}",
                      f"{r['loop_ms']:.2f}", f"{r['loop_over_grouped']:.1f}x")
    console.print(heads)
    policy = Table(title=f"Full policy forward, {report['policy_encoder']} encoder (median ms)")
    for column in ("symbols", "policy", "one agent at a time", "loop / policy"):
        policy.add_column(column, justify="right")
    for r in report["policy"]:
        policy.add_row(str(r["symbols"]), f"{r['policy_ms']:.1f}", f"{r['one_agent_at_a_time_ms']:.1f}",
                       f"{r['loop_over_grouped']:.1f}x")
    console.print(policy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", default="2,10,143", help="comma-separated symbol counts S")
    parser.add_argument("--per-symbol", type=int, default=32, help="observations per symbol (E)")
    add_device(parser)
    parser.add_argument("--policy-encoder", choices=("auto", "small", "full"), default="auto",
                        help="encoder of the full-policy comparison; auto = full on CUDA, small on CPU")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement")
    parser.add_argument("--json", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    device = device_or_exit(args.device)
    # the trainer's own preset resolution (auto = full on CUDA, small on CPU)
    resolved = resolve(None, cli={"run.device": str(device), "run.encoder_preset": args.policy_encoder})
    preset, encoder = resolved.run.encoder_preset, resolved.model.encoder
    symbol_counts = [int(s) for s in args.symbols.split(",") if s.strip()]
    report = {"bench": "heads", "device": device_name(device), "torch": torch.__version__,
              "per_symbol": args.per_symbol, "policy_encoder": preset,
              "heads": [bench_heads(s, args.per_symbol, device, args.seconds) for s in symbol_counts],
              "policy": [bench_policy(s, args.per_symbol, encoder, device, args.seconds)
                         for s in symbol_counts]}
    print_tables(report)
    emit(report, args.json)


if __name__ == "__main__":
    main()
