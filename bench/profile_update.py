"""Where the PPO update's time goes: the trainer's own update under torch.profiler, by op category.

    python bench/profile_update.py [--symbols SPX,GOOGL] [--envs-per-symbol 16] [--num-steps 128]
                                   [--encoder small|full] [--device auto|cpu|cuda] [--threads 0]
                                   [--top 15] [--compile] [--set section.key=value ...] [--json PATH]

Builds what `python -m trainers.ppo` builds (bench/train_throughput.py's session), runs one
iteration to fill the rollout buffer, then runs `PPOLearner.update` on that rollout three times:
a warm-up, one timed without the profiler, one under it, each running every epoch (KL early
stopping off, so runs compare per epoch). Every op's self CPU time is put in one
category (matmul, attention/softmax, layernorm, elementwise/activation, optimizer, index/gather,
copy/layout, autograd engine, compiled graph (inductor's fused kernels, with --compile), other); `untraced` is the profiled wall time no op accounts for
(Python, the minibatch loop). Shares are of the profiled update's wall time; the profiler adds
some per-op overhead, so the unprofiled update's seconds and GFLOP/s are reported beside them, the GFLOP/s against the
matmul peak of the precision the update runs in (bf16 under ppo.amp = bf16, fp16 under fp16).
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd.profiler_util import FunctionEvent
from torch.profiler import ProfilerActivity, profile

from common import add_session_arguments, device_name, emit, matmul_peak_gflops, session_config
from ppo_core import synchronize
from ppo_core.gae import compute_gae
from trainers.run.build import open_session
from trainers.run.session import Session

# first match wins; names are aten op names (forward and backward) or record_function labels
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("compiled graph", re.compile(r"CompiledFxGraph|Torch-Compiled|CompiledFunction|TorchDynamo")),
    ("attention/softmax", re.compile(r"scaled_dot_product|attention|softmax")),
    ("matmul", re.compile(r"aten::(mm|bmm|addmm|baddbmm|matmul|linear|addbmm|dot|mv)$|mkldnn_matmul")),
    ("layernorm", re.compile(r"layer_norm")),
    ("index/gather", re.compile(r"index|gather|scatter|masked_fill|masked_select|take|embedding|where")),
    ("copy/layout", re.compile(r"aten::(cat|stack|copy_|clone|contiguous|_to_copy|to|empty_like|zeros_like"
                               r"|ones_like|fill_|zero_|empty|empty_strided|as_strided|view|reshape|"
                               r"transpose|permute|expand|t|unsqueeze|squeeze|split|slice|select|flatten|"
                               r"unflatten|narrow|_unsafe_view|detach|alias|resize_)$")),
    ("elementwise/activation", re.compile(r"aten::(add|sub|mul|div|gelu|tanh|relu|silu|exp|log|neg|pow|sqrt|"
                                          r"rsqrt|abs|clamp|max|min|maximum|minimum|sum|mean|std|var|gt|lt|"
                                          r"ge|le|eq|ne|sign|reciprocal|sigmoid|threshold|"
                                          r"isfinite|logical_\w+|bitwise_\w+|norm|linalg_vector_norm|"
                                          r"\w+_backward)_?$")),
    ("autograd engine", re.compile(r"^autograd::|Backward")),
]
OPTIMIZER = re.compile(r"^Optimizer\.|_foreach_|_fused_adam")


def category(event: FunctionEvent) -> str:
    """The event's category; everything under an optimizer step (and the foreach grad clip) is optimizer."""
    parent: FunctionEvent | None = event
    while parent is not None:
        if OPTIMIZER.search(parent.name):
            return "optimizer"
        parent = parent.cpu_parent
    for name, pattern in CATEGORIES:
        if pattern.search(event.name):
            return name
    return "other"


def run_update(session: Session, advantages: torch.Tensor, returns: torch.Tensor) -> tuple[float, int]:
    """One `PPOLearner.update` of the session's filled buffer: (wall seconds, epochs run)."""
    synchronize(session.device)
    start = time.perf_counter()
    stats = session.learner.update(session.buffer, advantages, returns, ent_coef=0.01, progress=0.0,
                                   num_groups=len(session.config.run.symbols), generator=session.generator)
    stats.read()  # host sync point, as in ppo_iteration
    synchronize(session.device)
    return time.perf_counter() - start, stats.epochs_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_session_arguments(parser)
    parser.add_argument("--top", type=int, default=15, help="ops listed by self CPU time")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, as trainers.ppo's --set (e.g. ppo.num_minibatches=8)")
    args = parser.parse_args()
    config = session_config(args, [*args.set, "ppo.target_kl=0"], **{"run.eval_every": 0})
    with tempfile.TemporaryDirectory() as run_dir:
        with contextlib.redirect_stdout(sys.stderr):  # the trainer's messages; stdout is the JSON
            session = open_session(config, Path(run_dir) / "run")
            try:
                result = session.iterate()  # fills the buffer (and warms up the rollout path)
                buffer, gamma = session.buffer, config.ppo.gamma
                advantages, returns = compute_gae(buffer.rewards, buffer.values, buffer.dones,
                                                  result.rollout.last_values, gamma, config.ppo.gae_lambda)
                warmup_seconds, _ = run_update(session, advantages, returns)  # with compilation, if any
                seconds, epochs = run_update(session, advantages, returns)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    profiled_seconds, profiled_epochs = run_update(session, advantages, returns)
            finally:
                session.close()

    by_category: dict[str, float] = defaultdict(float)
    by_op: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])  # (op, category) -> [s, calls]
    for event in prof.events():
        self_s, cat = event.self_cpu_time_total * 1e-6, category(event)
        by_category[cat] += self_s
        by_op[event.name, cat][0] += self_s
        by_op[event.name, cat][1] += 1
    by_category["untraced"] = max(profiled_seconds - sum(by_category.values()), 0.0)
    share = {name: round(s / profiled_seconds, 3)
             for name, s in sorted(by_category.items(), key=lambda kv: -kv[1])}
    top = sorted(by_op.items(), key=lambda kv: -kv[1][0])[:args.top]
    flops = 3 * session.policy.flops_per_sample() * session.batch_size * epochs  # forward + backward
    precision = session.learner.amp_dtype or torch.float32
    gflops, peak = flops / seconds / 1e9, matmul_peak_gflops(session.device, dtype=precision)
    enc = config.model.encoder
    emit({
        "bench": "profile_update", "device": device_name(session.device), "torch": torch.__version__,
        "symbols": list(config.run.symbols), "accounts": session.env.num_envs, "num_steps": args.num_steps,
        "encoder": f"{config.run.encoder_preset} ({enc.n_layers}x{enc.d_model})",
        "minibatches_per_epoch": session.learner.minibatches_per_epoch(session.batch_size, len(config.run.symbols)),
        "overrides": args.set, "compile": config.run.compile, "warmup_update_seconds": round(warmup_seconds, 3),
        "amp": config.ppo.amp, "update_seconds": round(seconds, 3), "epochs_run": epochs,
        "seconds_per_epoch": round(seconds / epochs, 3),
        "update_gflops": round(gflops, 1), "matmul_peak_gflops": round(peak, 1),
        "peak_precision": str(precision).removeprefix("torch."),
        "update_fraction_of_peak": round(gflops / peak, 3),
        "profiled_update_seconds": round(profiled_seconds, 3), "profiled_epochs_run": profiled_epochs,
        "category_share": share,
        "top_ops": [{"op": name, "category": cat, "self_ms": round(s * 1e3, 1),
                     "share": round(s / profiled_seconds, 3), "calls": calls}
                    for (name, cat), (s, calls) in top],
    }, args.json)


if __name__ == "__main__":
    main()
