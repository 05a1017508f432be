"""Train one PPO policy head per symbol over a shared encoder: `python -m trainers.ppo --symbols SPY,AAPL`.

The loop reads top to bottom: collect a rollout from every account -> GAE -> PPO update -> one
host read for logging -> checkpoint. Setup, resume and signal handling live in trainers.session.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from configs.loader import ConfigError
from ppo_core import EntropyCollapseError, NonFiniteLossError, collect_rollout, compute_gae
from trainers import checkpointing
from trainers.session import Session, StopRequest, open_session

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def train(session: Session, stop: StopRequest | None = None) -> int:
    """Run PPO until `run.total_steps` account-steps; returns a process exit code. `stop` is set
    by SIGINT/SIGTERM (or by a caller) and checked once per iteration."""
    cfg, env, policy, learner, log = session.config, session.env, session.policy, session.learner, session.log
    batch_size = cfg.run.num_steps * env.num_envs  # account-steps per iteration
    num_iterations = math.ceil(cfg.run.total_steps / batch_size)
    stop = stop or StopRequest()
    log.set_total(num_iterations * batch_size)
    obs = session.obs
    log.message(f"{num_iterations} iterations x {batch_size:,} account-steps "
                f"({len(cfg.run.symbols)} symbols x {cfg.run.envs_per_symbol} accounts x "
                f"{cfg.run.num_steps} steps); run dir {session.run_dir}")
    with stop.installed():
        while session.iteration < num_iterations:
            session.iteration += 1
            progress = session.global_step / (num_iterations * batch_size)

            # 1. rollout: every account of every symbol steps together on the device
            policy.eval()
            session.stats.reset()
            with torch.no_grad():
                rollout = collect_rollout(env, policy, session.buffer, obs, cfg.ppo.gamma,
                                          on_step=session.stats.on_step,
                                          reward_scale=session.reward_normalizer)
            obs = rollout.next_obs
            session.global_step += batch_size

            # 2. advantages; truncated episodes were bootstrapped by the collector
            buf = session.buffer
            advantages, returns = compute_gae(buf.rewards, buf.values, buf.dones, rollout.last_values,
                                              cfg.ppo.gamma, cfg.ppo.gae_lambda)

            # 3. PPO update, minibatches drawn per symbol in equal shares
            policy.train()
            ent_coef = session.entropy.coefficient(session.global_step)
            try:
                update = learner.update(buf, advantages, returns, ent_coef=ent_coef, progress=progress,
                                        num_groups=len(cfg.run.symbols), generator=session.generator)
            except NonFiniteLossError as err:
                session.fail(f"iteration {session.iteration}: {err}. Training stopped")
                return EXIT_FAILED

            # 4. log: the iteration's only host reads
            values = session.stats.summary()
            values.update({f"losses/{k}": v for k, v in update.to_dict().items()})
            values["charts/policy_action_entropy_mean"] = values["losses/entropy"]
            try:
                session.entropy.observe(session.global_step, values["losses/entropy"])
            except EntropyCollapseError as err:
                session.obs = obs
                session.save()
                session.fail(str(err))
                return EXIT_FAILED
            values.update({f"entropy/{k}": v for k, v in session.entropy.state().items()})
            values["charts/SPS"] = log.steps_per_second(session.global_step)
            log.iteration(session.iteration, session.global_step, values)

            # 5. checkpoint (every K iterations, at the end, and when asked to stop)
            session.obs = obs
            last = session.iteration == num_iterations
            if last or stop.requested or session.iteration % cfg.run.checkpoint_every == 0:
                session.save()
            if stop.requested:
                log.message(f"{stop.signal_name}: checkpoint saved at step {session.global_step:,}; "
                            f"continue with: python -m trainers.ppo --resume {session.run_dir}",
                            style="bold yellow")
                return EXIT_INTERRUPTED
    log.message(f"done: {session.global_step:,} account-steps; weights in "
                f"{checkpointing.latest(session.run_dir).weights}", style="bold green")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.ppo",
        description="Train a multi-symbol PPO trading agent (one head per symbol, shared encoder).",
        epilog="Any config field can be set with --set section.key=value, e.g. "
               "--set ppo.learning_rate=1e-4 --set env.reward.pnl=1.0. "
               "See configs/default.toml for every field.")
    parser.add_argument("--symbols", help="comma-separated symbols, e.g. SPY,AAPL (default: SPY,AAPL)")
    parser.add_argument("--data-dir", help="folder of <SYMBOL>.parquet files (default: data); "
                        "symbols without a file use a synthetic market")
    parser.add_argument("--config", type=Path, help="TOML config file (default: configs/default.toml)")
    parser.add_argument("--total-steps", type=int, help="account-steps to train for (all accounts count)")
    parser.add_argument("--envs-per-symbol", type=int, help="parallel accounts per symbol")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="auto = CUDA when available")
    parser.add_argument("--amp", choices=["auto", "fp16", "bf16", "off"],
                        help="mixed precision (auto = fp16 on CUDA, off on CPU)")
    parser.add_argument("--seed", type=int, help="seed of every random stream")
    parser.add_argument("--run-dir", type=Path, help="output folder (default: runs/<time>-<symbols>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its latest checkpoint "
                             "(--total-steps may extend it; other settings come from the run)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override any config field (repeatable)")
    return parser


def cli_values(args: argparse.Namespace) -> dict[str, object]:
    """Dotted config keys set by the dedicated flags."""
    mapping = {"run.symbols": [s.strip() for s in args.symbols.split(",")] if args.symbols else None,
               "run.data_dir": args.data_dir, "run.total_steps": args.total_steps,
               "run.envs_per_symbol": args.envs_per_symbol, "run.device": args.device,
               "run.seed": args.seed, "ppo.amp": args.amp}
    return {key: value for key, value in mapping.items() if value is not None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        session = open_session(args, cli_values(args))
    except (ConfigError, checkpointing.ResumeError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return train(session)
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
